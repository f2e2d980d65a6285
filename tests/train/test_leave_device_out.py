"""Leave-device-out: folds by physical device, the incident adapter, and one real quick run (K=2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgebot import datasets
from edgebot.cli import main
from edgebot.errors import DataError
from edgebot.flow import FlowRecord
from edgebot.train.data import device_folds
from edgebot.train.leave_device_out import THRESHOLD_SWEEP, _count_false_incidents, parse_leave_device_out

# ------------------------------------------------------------------------------------------ fast checks


def test_split_names():
    assert parse_leave_device_out("leave-device-out") == 5
    assert parse_leave_device_out("Leave-Device-Out:3") == 3
    assert parse_leave_device_out("temporal") is None and parse_leave_device_out("leave-out:8-1") is None
    with pytest.raises(DataError, match="whole number of folds"):
        parse_leave_device_out("leave-device-out:x")
    with pytest.raises(DataError, match="at least 2 folds"):
        parse_leave_device_out("leave-device-out:1")


def test_folds_are_a_deterministic_partition_of_the_groups():
    groups = [f"g{i}" for i in range(11)] + ["g0"]  # a duplicate group counts once
    folds = device_folds(groups, k=3, seed=7)
    assert folds == device_folds(list(reversed(groups)), k=3, seed=7)
    assert sorted(g for fold in folds for g in fold) == sorted(set(groups))
    assert sorted(len(f) for f in folds) == [3, 4, 4]
    assert device_folds(groups, k=3, seed=8) != folds
    with pytest.raises(DataError, match="needs at least 12 devices, the data hold 11"):
        device_folds(groups, k=12)


def test_devices_sharing_a_mac_share_a_fold():
    registry = datasets.benign_devices()
    folds = device_folds([d.group for d in registry.values()], k=5, seed=0)
    fold_of = {g: i for i, fold in enumerate(folds) for g in fold}
    assert len(folds) == 5 and sum(map(len, folds)) == 42  # 44 devices, 42 physical hosts
    for a, b in (("D-LinkDoorSensor", "D-LinkHomeHub"), ("HueBridge", "HueSwitch")):
        assert fold_of[registry[f"iot-sentinel/{a}"].group] == fold_of[registry[f"iot-sentinel/{b}"].group]


def _flow(host: str, ts: float) -> FlowRecord:
    return FlowRecord(ts, host, 40000, "198.51.100.7", 443, "tcp", duration=0.5)


def test_the_incident_adapter_uses_the_agents_evidence_rule():
    # host a: 3 confident flows to one peer within the window -> one incident; 3 more after 20 min -> another
    # host b: only 2 -> none; host c: many borderline flows (0.6 against 0.5) -> none, but at a 0.3 threshold
    # they are confident (0.6 >= 0.3 + 0.9 * 0.7? no: 0.93) -> still none: borderline evidence never opens one
    flows = [_flow("a", t) for t in (0, 10, 20, 1200, 1210, 1220)] + [_flow("b", t) for t in (5, 15)]
    flows += [_flow("c", t) for t in range(0, 100, 5)]
    flows.sort(key=lambda f: f.ts)
    scores = np.array([0.6 if f.orig_h == "c" else 0.99 for f in flows], dtype=np.float32)
    assert _count_false_incidents(flows, scores, threshold=0.5) == {"a": 2}
    assert _count_false_incidents(flows, scores, threshold=0.3) == {"a": 2}
    # with learning (the device new to the gateway) ordinary evidence is held back: no incident at all
    assert _count_false_incidents(flows, scores, threshold=0.5, learn_s=6 * 3600) == {}


def test_cli_refuses_a_bad_k_and_data_without_devices_in_one_line(tmp_path):
    res = CliRunner().invoke(main, ["train", str(datasets.iot23_training()[2]), "--out", str(tmp_path / "r"),
                                    "--split", "leave-device-out:zero"])
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        "Error: leave-device-out:zero - K must be a whole number of folds, e.g. leave-device-out:5"]
    res = CliRunner().invoke(main, ["train", *map(str, datasets.iot23_training()), "--out", str(tmp_path / "r"),
                                    "--split", "leave-device-out"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "none of the given files is a registered device" in res.output
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------- one real run (K=2)

SUBSET = ("iot-sentinel/HueBridge", "iot-sentinel/HueSwitch", "iot-sentinel/D-LinkCam", "iotls/wink-hub2",
          "nku/xiaodu-plug")


@pytest.fixture(scope="module")
def ldo_run(tmp_path_factory):
    pytest.importorskip("tensorflow", reason="leave-device-out trains models (pip install 'edgebot[train]')")
    registry = datasets.benign_devices()
    files = list(datasets.iot23_training()[1:3]) + [f for name in SUBSET for f in registry[name].files]  # 8-1, 4-1
    out = tmp_path_factory.mktemp("ldo") / "run"
    res = CliRunner().invoke(main, ["train", *map(str, files), "--out", str(out), "--split", "leave-device-out:2",
                                    "--quick", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    return out, files, res.output


@pytest.mark.tf
@pytest.mark.slow
def test_every_device_is_held_out_once_and_never_trained_on(ldo_run):
    out, files, printed = ldo_run
    result = json.loads((out / "leave_device_out.json").read_text())
    registry = datasets.benign_devices()
    assert result["split"] == "leave-device-out:2" and result["configuration"] == "quick"
    assert list(result["devices"]) == [name for name in registry if name in SUBSET]  # registry order
    held = [name for fold in result["folds"] for name in fold["devices"]]
    assert sorted(held) == sorted(SUBSET)  # each device in exactly one fold
    assert result["devices"]["iot-sentinel/HueBridge"]["fold"] == result["devices"]["iot-sentinel/HueSwitch"]["fold"]
    for fold in result["folds"]:
        mine = {f.name for name in fold["devices"] for f in registry[name].files}
        assert set(fold["held_out_files"]) == mine
        assert not mine & set(fold["train_files"])
        assert set(fold["train_files"]) | mine == {f.name for f in files}
        spec = json.loads((out / fold["run"] / "spec.json").read_text())  # what the fold's model really read
        assert {d["path"] for d in spec["data"]} == set(fold["train_files"])
        assert (out / fold["bundle"] / "manifest.json").is_file()
        assert 0.0 < fold["threshold"] < 1.0 and 0.5 < fold["fused_f1"] <= 1.0
    assert set(result["always_trained"]) == {f.name for f in datasets.iot23_training()[1:3]}
    assert "devices with a false incident:" in printed and str(out) in printed


@pytest.mark.tf
@pytest.mark.slow
def test_per_device_figures_add_up_and_match_edgebot_eval(ldo_run):
    from edgebot.evaluate import evaluate_bundle

    out, _, _ = ldo_run
    result = json.loads((out / "leave_device_out.json").read_text())
    registry = datasets.benign_devices()
    for name, d in result["devices"].items():
        dev = registry[name]
        assert d["flows"] == dev.flows and d["device_flows"] == dev.device_flows
        assert 0 <= d["device_flagged_flows"] <= d["flagged_flows"] <= d["flows"]
        assert d["false_incidents"] == sum(n for h, n in d["incident_hosts"].items() if h in dev.addresses)
        assert d["false_incidents"] <= d["device_flagged_flows"] // 3  # today's rule needs 3 flagged flows
        assert d["capture_hours"] == pytest.approx(dev.capture_hours)
        # the same bundle through edgebot eval (an independent path over the same file) gives the same scores
        fold = result["folds"][d["fold"]]
        evaluated = evaluate_bundle(out / fold["bundle"], dev.files)
        device_hosts = [h for key, h in evaluated["hosts"].items() if key.split("|", 1)[1] in dev.addresses]
        if device_hosts:
            assert d["max_score"] == pytest.approx(max(h["max_score"] for h in device_hosts), abs=1e-6)
            assert d["device_flagged_flows"] == sum(h["alerts"] for h in device_hosts)
    t = result["totals"]
    with_incident = [n for n, d in result["devices"].items() if d["false_incidents"] > 0]
    assert t["devices_with_false_incident_list"] == with_incident
    sweep = [f"{x:g}" for x in THRESHOLD_SWEEP]
    assert all(list(d["false_incidents_at"]) == sweep for d in result["devices"].values())
    assert t["devices_with_false_incident_at"] == {
        x: sum(d["false_incidents_at"][x] > 0 for d in result["devices"].values()) for x in sweep}
    for fold in result["folds"]:  # recall of the fold's malicious test flows can only fall as the threshold rises
        recall = [fold["recall_at"][x] for x in sweep]
        assert recall == sorted(recall, reverse=True) and 0.0 <= recall[-1] <= recall[0] <= 1.0
    assert t["devices"] == len(SUBSET) and t["target_met"] is None  # a subset: the 44-device target is not judged
    report = (out / "report.md").read_text()
    assert "Per device (never trained on)" in report and all(name in report for name in SUBSET)
    assert "<table>" in (out / "report.html").read_text()


@pytest.mark.tf
@pytest.mark.slow
def test_force_replaces_only_a_leave_device_out_run(ldo_run, tmp_path):
    out, files, _ = ldo_run
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(main, ["train", *map(str, files), "--out", str(other), "--split", "leave-device-out:2",
                                    "--force"])
    assert res.exit_code == 2 and "not a leave-device-out run dir" in res.output
    assert (other / "notes.txt").read_text() == "keep me"
    res = CliRunner().invoke(main, ["train", *map(str, files), "--out", str(out), "--split", "leave-device-out:2"])
    assert res.exit_code == 2 and "pass --force" in res.output
