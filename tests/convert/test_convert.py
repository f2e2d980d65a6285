"""``edgebot convert``: the bundle it writes, its verification, and every refusal (exit codes included)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner


from edgebot import datasets
from edgebot.bundle import MANIFEST, SCHEMA_VERSION, load_bundle, sha256_file
from edgebot.manifest import manifest_digest
from edgebot.cli import main
from edgebot.convert import bundle_writer
from edgebot.convert.bundle_writer import convert_run, format_verification, read_run_dir, run_worker
from edgebot.errors import BundleError, CheckFailed
from edgebot.features import FEATURIZER_HASH, N_FEATURES

BUDGET = 300 * 1024


def _one_line(exc) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg
    return msg


# ---------------------------------------------------------------------------- the session's bundle


@pytest.mark.tf
def test_bundle_files_and_manifest(int8_bundle):
    names = sorted(p.name for p in int8_bundle.iterdir())
    assert names == ["autoencoder.tflite", "fuser.json", "hybrid.tflite", "manifest.json", "verification.json"]
    m = json.loads((int8_bundle / MANIFEST).read_text())
    assert m["schema_version"] == SCHEMA_VERSION
    assert m["featurizer"]["hash"] == FEATURIZER_HASH and m["featurizer"]["n_features"] == N_FEATURES
    assert len(m["featurizer"]["feature_names"]) == N_FEATURES
    assert len(m["scaler"]["min"]) == N_FEATURES == len(m["scaler"]["max"])
    assert m["window"] == 4
    assert m["models"]["hybrid"]["input"]["shape"] == [-1, 4, N_FEATURES]
    assert m["models"]["autoencoder"]["output"]["shape"] == [-1, N_FEATURES]
    for key in ("hybrid", "autoencoder"):
        for side in ("input", "output"):
            q = m["models"][key][side]
            assert q["dtype"] == "int8" and q["scale"] > 0 and -128 <= q["zero_point"] <= 127
        assert not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in m["models"][key]["ops"])
    assert set(m["thresholds"]) == {"fused", "hybrid", "autoencoder"}
    for key in ("tensorflow", "xgboost", "converter_tensorflow", "fuser_xgboost"):
        assert m["versions"][key]
    assert "fused" in m["training"]["metrics"]
    assert set(m["files"]) == {"hybrid.tflite", "autoencoder.tflite", "fuser.json", "verification.json"}
    assert m["bundle_id"] == manifest_digest(m) and load_bundle(int8_bundle).digest == m["bundle_id"]
    for name, entry in m["files"].items():
        assert entry["sha256"] == sha256_file(int8_bundle / name)
        assert entry["bytes"] == (int8_bundle / name).stat().st_size
    assert m["verification"]["passed"] is True


@pytest.mark.tf
def test_verification_json(int8_bundle, int8_run_dir):
    v = json.loads((int8_bundle / "verification.json").read_text())
    for side in ("float", "int8"):
        for key in ("f1", "precision", "recall", "fpr"):
            assert 0.0 <= v[side][key] <= 1.0
    assert v["f1_drop"] == pytest.approx(v["float"]["f1"] - v["int8"]["f1"])
    assert v["f1_drop"] <= v["max_f1_drop"]
    sizes = v["sizes"]
    assert set(sizes) == {"hybrid.tflite", "autoencoder.tflite", "fuser.json", "total"}
    assert sizes["total"] == sum(sizes[k] for k in ("hybrid.tflite", "autoencoder.tflite", "fuser.json"))
    assert sizes["total"] < BUDGET
    # the float path is the training path: the same F1 as the run's own metrics
    assert v["float"]["f1"] == pytest.approx(v["training_f1"], abs=1e-9)
    assert v["test_windows"] == sum(v["float"]["confusion"][0]) + sum(v["float"]["confusion"][1])


@pytest.mark.tf
def test_format_verification(int8_bundle):
    v = json.loads((int8_bundle / "verification.json").read_text())
    v.update(bundle=str(int8_bundle), bundle_id="abc123abc123", seconds=12.0)
    text = format_verification(v)
    assert "float" in text and "int8" in text and "F1 drop" in text and "KB" in text


# ------------------------------------------------------------------------------ converting again


@pytest.mark.tf
def test_f1_drop_over_the_limit_fails_and_writes_nothing(int8_run_dir, tmp_path, monkeypatch):
    real_verify = bundle_writer.verify

    def worse(*args, **kwargs):
        result = real_verify(*args, **kwargs)
        result["int8"]["f1"] = result["float"]["f1"] - 0.02
        result["f1_drop"] = 0.02
        return result

    monkeypatch.setattr(bundle_writer, "verify", worse)
    out = tmp_path / "bundle"
    with pytest.raises(CheckFailed) as info:
        convert_run(int8_run_dir, out, max_f1_drop=0.005)
    assert info.value.exit_code == 1
    assert "0.0200 below float" in _one_line(info.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left either


@pytest.mark.tf
def test_cli_convert_and_force(int8_bundle, int8_run_dir, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(int8_bundle, out)
    old_id = sha256_file(out / MANIFEST)
    runner = CliRunner()
    res = runner.invoke(main, ["convert", str(int8_run_dir), "--out", str(out)])
    assert res.exit_code == 2 and "pass --force" in res.output
    from edgebot.signing import generate_key

    res = runner.invoke(main, ["convert", str(int8_run_dir), "--out", str(out), "--force", "--sign",
                               str(tmp_path / "none.key")])
    assert res.exit_code == 2 and "cannot read the signing key" in res.output  # refused before converting
    (tmp_path / "keys").mkdir()
    _, public, key_id = generate_key(tmp_path / "keys" / "k")
    res = runner.invoke(main, ["convert", str(int8_run_dir), "--out", str(out), "--force", "--max-f1-drop", "0.05",
                               "--sign", str(tmp_path / "keys" / "k")])
    assert res.exit_code == 0, res.output
    assert "written to" in res.output and "F1 drop" in res.output and f"signed with key {key_id}" in res.output
    assert sha256_file(out / MANIFEST) != old_id  # rewritten (its creation time differs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "keys"]  # no temporary or old directory left
    assert "signature.json" in {p.name for p in out.iterdir()}
    assert load_bundle(out, trust=public).signed_by == key_id
    load_bundle(out)


MAKE_UNROLLED_FALSE = textwrap.dedent("""
    import sys, keras
    T, F, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    inputs = keras.Input((T, F))
    x = keras.layers.Conv1D(4, 3, padding="same")(inputs)
    x = keras.layers.LSTM(4)(x)  # not unrolled: the TFLite converter cannot lower it to int8 builtins
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)).save(out)
""")


@pytest.mark.tf
@pytest.mark.slow
def test_lstm_without_unroll_gives_a_clear_error(int8_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(int8_run_dir, run)
    proc = subprocess.run([sys.executable, "-c", MAKE_UNROLLED_FALSE, "4", str(N_FEATURES), str(run / "cnn_lstm.keras")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with pytest.raises(BundleError) as info:
        convert_run(run, tmp_path / "bundle")
    msg = _one_line(info.value)
    assert "unroll=True" in msg and "hybrid" in msg
    assert not (tmp_path / "bundle").exists()


# ------------------------------------------------------------------- refusals (no TensorFlow needed)


def _fake_run(tmp_path: Path, int8=False) -> Path:
    """A run dir with every file present but placeholder contents."""
    import numpy as np

    from edgebot.features import featurizer_info

    run = tmp_path / "run"
    run.mkdir()
    for name in ("cnn_lstm.keras", "autoencoder.keras", "fuser.json"):
        (run / name).write_bytes(b"placeholder")
    spec = {"featurizer": featurizer_info(), "scaler": {"min": [0.0] * N_FEATURES, "max": [1.0] * N_FEATURES},
            "window": 3, "fuser_raw_features": [], "ae_threshold": 0.1, "fused_threshold": 0.5,
            "hybrid_threshold": 0.5, "versions": {}, "label_mode": "binary"}
    (run / "spec.json").write_text(json.dumps(spec))
    W = np.zeros((5, 3, N_FEATURES), np.float32)
    np.savez(run / "data.npz", calib_windows=W, test_windows=W, test_labels=np.zeros(5, np.int8))
    return run


def test_run_dir_without_a_model_is_refused(tmp_path):
    run = _fake_run(tmp_path)
    (run / "cnn_lstm.keras").unlink()
    with pytest.raises(BundleError) as info:
        convert_run(run, tmp_path / "bundle")
    assert info.value.exit_code == 2
    assert "has no cnn_lstm.keras (model missing)" in _one_line(info.value)
    assert not (tmp_path / "bundle").exists()


def test_cli_run_dir_without_a_model_exits_2(tmp_path):
    run = _fake_run(tmp_path)
    (run / "autoencoder.keras").unlink()
    res = CliRunner().invoke(main, ["convert", str(run), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2
    assert res.output.startswith("Error: ") and "autoencoder.keras" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_run_dir_with_another_featurizer_is_refused(tmp_path):
    run = _fake_run(tmp_path)
    spec = json.loads((run / "spec.json").read_text())
    spec["featurizer"]["hash"] = "ffffffffffffffff"
    (run / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(BundleError, match="featurizer hash ffffffffffffffff"):
        read_run_dir(run)


def test_run_dir_with_wrong_window_arrays_is_refused(tmp_path):
    run = _fake_run(tmp_path)
    spec = json.loads((run / "spec.json").read_text())
    spec["window"] = 8
    (run / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(BundleError, match=r"calib_windows has shape \(5, 3, "):
        read_run_dir(run)


@pytest.mark.tf
def test_unreadable_keras_model_is_a_clear_error(tmp_path):
    """The worker starts TensorFlow, fails to load the placeholder model, and says so in one line."""
    run = _fake_run(tmp_path)
    with pytest.raises(BundleError) as info:
        convert_run(run, tmp_path / "bundle")
    assert "cannot load cnn_lstm.keras" in _one_line(info.value)


CRASHING_WORKER = textwrap.dedent("""
    import os, signal, sys
    sys.stderr.write("edgebot-worker stage: converting hybrid to int8 TFLite\\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV)
""")


def test_converter_crash_becomes_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "crashing_worker.py").write_text(CRASHING_WORKER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(BundleError) as info:
        run_worker(tmp_path, work, module="crashing_worker")
    msg = _one_line(info.value)
    assert "crashed (SIGSEGV) while converting hybrid to int8 TFLite" in msg
    assert "unroll=True" in msg


def test_out_that_is_not_a_bundle_is_refused_even_with_force(tmp_path):
    run = _fake_run(tmp_path)
    out = tmp_path / "important"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="is not a bundle"):
        convert_run(run, out, force=True)
    assert (out / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------- the real trainer, end to end


@pytest.mark.tf
@pytest.mark.slow
def test_real_trainer_run_converts_within_half_a_point(tmp_path):
    """`edgebot train --quick` on the bundled IoT-23 data, then `edgebot convert` with the default gate."""
    data = sorted(str(p) for p in datasets.path("iot23").glob("*.xz"))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "edgebot.cli", "train", *data, "--out", str(run), "--quick"],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip("the trainer is not available")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = convert_run(run, tmp_path / "bundle")  # default --max-f1-drop 0.005
    assert result["passed"] and result["f1_drop"] <= 0.005
    assert result["sizes"]["total"] < BUDGET
    metrics = json.loads((run / "metrics.json").read_text())
    assert result["float"]["f1"] == pytest.approx(metrics["models"]["fused"]["f1"], abs=1e-9)
