"""The default bundle shipped in the package (edgebot/default_bundle/, `make bundle`).

Robust to a rebuilt bundle: figures are compared with benchmarks/model_card.json (written by
benchmarks/model_card.py from the same bundle), never with numbers written here. The tolerance
of the flow metrics is model_card.TOLERANCE (0.01 absolute: another TFLite or XGBoost build may
move a borderline score); incident hosts on the bundled pcaps must match exactly.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgebot import datasets
from edgebot.bundle import load_manifest, sha256_file
from edgebot.cli import main
from edgebot.shipped import DEFAULT_BUNDLE, default_bundle, training_files_relative

REPO = Path(__file__).resolve().parents[2]
CARD_JSON = REPO / "benchmarks" / "model_card.json"
HEAVY = ("tensorflow", "keras", "tf_keras", "sklearn", "pandas")
MIRAI_HOST = "192.168.1.195"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model_card_module():
    spec = importlib.util.spec_from_file_location("model_card", REPO / "benchmarks" / "model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_bundle_was_trained_on_the_repos_default_training_set():
    training = load_manifest(default_bundle()).data["training"]
    recorded = {e["path"]: e["sha256"] for e in training["data"]}
    files = datasets.default_training()
    assert sorted(recorded) == sorted(p.name for p in files)
    changed = [p.name for p in files if sha256_file(p) != recorded[p.name]]
    assert not changed, f"data changed since the bundle was built (run `make bundle`): {changed}"


def test_the_manifest_records_the_full_training_command():
    command = load_manifest(default_bundle()).data["training"]["command"]
    assert command.startswith("edgebot train ")
    args = command.split()
    assert "--quick" not in args and "--split" in args and args[args.index("--split") + 1] == "temporal"
    for rel in training_files_relative():
        assert rel in args
    assert not any(a.startswith("/") for a in args), "the command names paths of the build machine"


def test_the_manifest_refuses_a_bad_training_section():
    from edgebot.errors import BundleError
    from edgebot.manifest import Manifest

    data = dict(load_manifest(default_bundle()).data)
    bad = {**data["training"], "data": [{"path": "x.log", "sha256": "nothex"}]}
    with pytest.raises(BundleError, match=r"training.data\[0\].sha256 must be 64 lowercase hex digits"):
        Manifest.validate({**data, "training": bad})
    with pytest.raises(BundleError, match="training.command must be a non-empty string"):
        Manifest.validate({**data, "training": {**data["training"], "command": 3}})


def test_run_with_no_option_uses_the_shipped_bundle_on_the_edge_path_and_reports_mirai(tmp_path):
    """`edgebot run --pcap <Mirai 34-1>` and nothing else, where the training stack cannot be imported."""
    pcap = datasets.data_root() / datasets.PCAPS["mirai_34_1"]
    code = (
        "import sys\n"
        f"for m in {HEAVY!r}:\n"
        "    sys.modules[m] = None\n"
        "from edgebot.cli import main\n"
        "try:\n"
        f"    main(['run', '--pcap', {str(pcap)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn', 'pandas')"
        " and sys.modules[m] is not None]\n"
        "print('LOADED', loaded)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "STATE_DIRECTORY": str(tmp_path), "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "LOADED []" in res.stdout
    assert "running the default bundle shipped with edgebot" in res.stderr
    messages = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert any(m.get("type") == "new" and m["host"] == MIRAI_HOST for m in messages)


@pytest.mark.parametrize("role", ["hue_4_1", "hue_2018_09_14"])
def test_the_bundled_benign_pcaps_raise_no_incident(model_card_module, card, role):
    replay = model_card_module.replay_pcap(datasets.data_root() / datasets.PCAPS[role])
    assert sorted(replay["flagged_hosts"]) == card["pcaps"][role]["incident_hosts"] == []
    assert replay["incidents"].get("new", 0) == 0


def test_the_card_says_what_the_mirai_replay_does(card):
    assert card["pcaps"]["mirai_34_1"]["incident_hosts"] == [MIRAI_HOST]


def _compare(got: dict, card: dict) -> None:
    tol = card["tolerance"]
    for name, have in got.items():
        want = card["captures"][name]
        assert have["flows"] == want["flows"], name
        for key in ("precision", "recall", "f1", "fpr", "false_incidents_per_device_per_day"):
            assert have[key] == pytest.approx(want[key], abs=tol), f"{name} {key}"
        assert abs(have["false_incidents"] - want["false_incidents"]) <= max(1, tol * want["false_incidents"]), name
        assert have["infected_detected"] == want["infected_detected"], name


def test_the_card_measures_every_capture_set(model_card_module, card):
    assert card["bundle"]["bundle_id"] == load_manifest(default_bundle()).bundle_id, \
        "model_card.json was measured on another bundle: run `make model-card`"
    assert set(card["captures"]) == set(model_card_module.capture_sets())


def test_figures_on_the_held_out_capture_and_benign_devices_match_the_model_card(model_card_module, card):
    names = ("held_out_mirai_44_1", "benign_devices", "benign_devices_learning")
    _compare(model_card_module.capture_figures(default_bundle(), only=names), card)


@pytest.mark.slow
def test_figures_on_the_stratosphere_captures_match_the_model_card(model_card_module, card):
    _compare(model_card_module.capture_figures(default_bundle(), only=("windows_hosts", "windows_hosts_learning")), card)


def test_bundle_verify_passes_on_the_shipped_bundle_and_fails_on_a_tampered_copy(tmp_path):
    res = CliRunner().invoke(main, ["bundle", "verify", str(DEFAULT_BUNDLE)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert not any("FAILED" in line for line in lines)
    for check in ("manifest integrity", "manifest fields", "file fuser.json", "featurizer", "model hybrid",
                  "model autoencoder", "fuser"):
        assert any(line.startswith(check) and " ok " in line for line in lines), check

    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    with open(copy / "hybrid.tflite", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    res = CliRunner().invoke(main, ["bundle", "verify", str(copy)])
    assert res.exit_code == 2
    failed = [line for line in res.output.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("file hybrid.tflite") and "sha256" in failed[0]
    assert any(line.startswith("model hybrid") and "skipped" in line for line in res.output.splitlines())


def test_bundle_verify_of_no_bundle_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path / "nothing")])
    assert res.exit_code == 2
    assert res.output.splitlines()[0].startswith("bundle directory") and "FAILED" in res.output.splitlines()[0]


def test_bundle_info_summarizes_the_shipped_bundle(card):
    res = CliRunner().invoke(main, ["bundle", "info"])
    assert res.exit_code == 0, res.output
    assert card["bundle"]["bundle_id"] in res.output
    assert "the default bundle shipped with edgebot" in res.output
    assert f"{card['training_data']['files']} training files" in res.output
    res = CliRunner().invoke(main, ["bundle", "info", "--json"])
    info = json.loads(res.output)
    assert info["size_bytes"] == card["bundle"]["size_bytes"] and info["default"] is True


def test_eval_without_a_bundle_uses_the_shipped_one(card):
    held_out = [str(p) for p in datasets.resolve(datasets.IOT23_EVAL)]
    res = CliRunner().invoke(main, ["eval", *held_out, "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert card["bundle"]["bundle_id"].startswith(result["bundle"]["id"])
    assert result["f1"] == pytest.approx(card["captures"]["held_out_mirai_44_1"]["f1"], abs=card["tolerance"])


def test_site_status_says_a_new_bundle_restarts_learning(tmp_path):
    from edgebot.site import PROFILE_FILE

    (tmp_path / PROFILE_FILE).write_text(json.dumps({"bundle_id": "0" * 64, "devices": {}, "saved": 0}))
    res = CliRunner().invoke(main, ["site", "status", "--state-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "restarts learning" in res.output
    assert "not the shipped default bundle" in res.output
