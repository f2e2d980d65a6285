"""The bundle loader and int8 runtime: every refusal, scoring, batching, and no TensorFlow on the edge path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from conftest_bundle import edit_manifest
from edgebot.bundle import SCHEMA_VERSION, load_bundle, read_manifest
from edgebot.errors import BundleError, RuntimeMissingError
from edgebot.features import N_FEATURES
from edgebot.runtime import QuantParams, batch_bucket, dequantize, find_interpreter, quantize

ROOT = Path(__file__).resolve().parents[2]


def _refused(path, *fragments, exc=BundleError):
    with pytest.raises(exc) as info:
        load_bundle(path)
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert info.value.exit_code == 2
    return msg


# ------------------------------------------------------------------------ refusals (no TensorFlow)


def test_refuses_a_directory_without_manifest(tmp_path):
    _refused(tmp_path, "no manifest.json", "edgebot convert")


def test_refuses_a_missing_directory(tmp_path):
    _refused(tmp_path / "nope", "not a directory")


def test_refuses_a_manifest_that_is_not_json(fake_bundle):
    (fake_bundle / "manifest.json").write_text("{not json")
    _refused(fake_bundle, "not valid JSON")


def test_refuses_a_newer_schema(fake_bundle):
    edit_manifest(fake_bundle, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    _refused(fake_bundle, f"schema {SCHEMA_VERSION + 1} is newer", "upgrade edgebot")


def test_refuses_a_manifest_without_schema_version(fake_bundle):
    edit_manifest(fake_bundle, lambda m: m.pop("schema_version"))
    _refused(fake_bundle, "schema_version")


def test_refuses_a_manifest_missing_a_key(fake_bundle):
    edit_manifest(fake_bundle, lambda m: m.pop("scaler"))
    _refused(fake_bundle, "lacks scaler")


def test_refuses_a_missing_file(fake_bundle):
    (fake_bundle / "autoencoder.tflite").unlink()
    _refused(fake_bundle, "autoencoder.tflite is missing")


def test_refuses_a_tampered_file(fake_bundle):
    with open(fake_bundle / "fuser.json", "ab") as fh:
        fh.write(b" ")
    _refused(fake_bundle, "fuser.json does not match its sha256")


def _with_features(m: dict, n: int) -> None:
    """A consistent manifest of another feature count (what another featurizer version would write)."""
    names = [f"feature_{i}" for i in range(n)]
    m["featurizer"].update(n_features=n, feature_names=names)
    m["scaler"] = {"min": [0.0] * n, "max": [1.0] * n}
    m["models"]["hybrid"]["input"]["shape"] = [-1, m["window"], n]
    m["models"]["autoencoder"]["input"]["shape"] = [-1, n]
    m["models"]["autoencoder"]["output"]["shape"] = [-1, n]
    m["fuser"].update(raw_features=names[:2], inputs=["hybrid_prob", "anomaly_score"] + names[:2])


def test_refuses_another_feature_count(fake_bundle):
    edit_manifest(fake_bundle, lambda m: _with_features(m, 24))
    _refused(fake_bundle, f"bundle expects 24 features per flow, featurizer gives {N_FEATURES}")


def test_refuses_another_featurizer_hash(fake_bundle):
    edit_manifest(fake_bundle, lambda m: m["featurizer"].update(hash="0123456789abcdef"))
    _refused(fake_bundle, "hash 0123456789abcdef", "retrain")


def test_refuses_a_scaler_of_the_wrong_length(fake_bundle):
    edit_manifest(fake_bundle, lambda m: m["scaler"].update(min=[0.0] * 3))
    _refused(fake_bundle, "scaler")


def test_refuses_when_no_interpreter_is_installed(fake_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    msg = _refused(fake_bundle, "pip install ai-edge-litert", exc=RuntimeMissingError)
    assert "tensorflow" not in msg.lower().replace("tensorflow is never used", "")


def test_refuses_a_placeholder_model(fake_bundle):
    _refused(fake_bundle, "hybrid.tflite is not a TFLite model")


def test_read_manifest_returns_the_dict(fake_bundle):
    assert read_manifest(fake_bundle)["window"] == 4


# ------------------------------------------------------------------------------- runtime helpers


def test_quantize_round_trip_and_clipping():
    qp = QuantParams(1 / 255, -128)
    x = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], dtype=np.float32)
    q = quantize(x, qp)
    assert q.dtype == np.int8
    assert q.tolist() == [[-128, 0, 127, 127, -128]]
    back = dequantize(q, qp)
    assert np.allclose(back[0, :3], [0.0, 128 / 255, 1.0], atol=1e-6)


def test_batch_buckets():
    assert [batch_bucket(n, 256) for n in (1, 2, 3, 5, 17, 32, 33, 65, 256, 300)] == \
        [1, 4, 4, 16, 64, 64, 64, 256, 256, 256]
    assert batch_bucket(100, 96) == 96  # never above max_batch


def test_find_interpreter_prefers_ai_edge_litert():
    cls, name = find_interpreter()
    assert name == "ai_edge_litert"


def test_find_interpreter_rejects_unknown_and_missing(monkeypatch):
    with pytest.raises(RuntimeMissingError, match="unknown TFLite runtime"):
        find_interpreter("tensorflow")
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(RuntimeMissingError, match="pip install tflite-runtime"):
        find_interpreter("tflite_runtime")


# -------------------------------------------------------------------- the real bundle (TensorFlow)


@pytest.mark.tf
def test_loads_and_describes_itself(int8_bundle):
    b = load_bundle(int8_bundle)
    assert b.window == 4 and b.n_features == N_FEATURES
    assert b.runtime == "ai_edge_litert"
    assert len(b.bundle_id) == 12
    assert b.version == b.manifest["edgebot_version"]
    assert b.threshold == b.manifest["thresholds"]["fused"]
    assert "Bundle(" in repr(b)


@pytest.mark.tf
def test_scores_are_probabilities_and_decisions_follow_the_threshold(int8_bundle, int8_run_dir):
    b = load_bundle(int8_bundle)
    with np.load(int8_run_dir / "data.npz") as d:
        W = d["test_windows"][:300]
    comps = b.score_components(W)
    assert set(comps) == {"hybrid", "anomaly", "fused"}
    for v in comps.values():
        assert v.shape == (300,) and v.dtype == np.float32
    assert np.all((comps["fused"] >= 0) & (comps["fused"] <= 1))
    assert np.all(comps["anomaly"] >= 0)
    np.testing.assert_array_equal(b.score(W), comps["fused"])
    np.testing.assert_array_equal(b.decide(comps["fused"]), comps["fused"].astype(np.float64) >= b.threshold)


@pytest.mark.tf
def test_batching_gives_the_same_scores_as_one_by_one(int8_bundle, int8_run_dir):
    b = load_bundle(int8_bundle, max_batch=64)
    with np.load(int8_run_dir / "data.npz") as d:
        W = d["test_windows"][:150]
    whole = b.score_components(W)
    single = [b.score_components(W[i:i + 1]) for i in range(0, 150, 7)]
    for key in whole:
        np.testing.assert_array_equal(whole[key][::7], np.concatenate([s[key] for s in single]))
    for n in (1, 3, 33, 64, 65, 150):  # bucket padding and chunking leave rows unchanged
        np.testing.assert_array_equal(b.score(W[:n]), whole["fused"][:n])


@pytest.mark.tf
def test_empty_batch_and_wrong_shapes(int8_bundle):
    b = load_bundle(int8_bundle)
    assert b.score(np.zeros((0, b.window, b.n_features), np.float32)).shape == (0,)
    with pytest.raises(BundleError, match=r"expects \(n, 4, "):
        b.score(np.zeros((2, b.window + 1, b.n_features), np.float32))
    with pytest.raises(BundleError, match="X has 3 features"):
        b.scale(np.zeros((2, 3), np.float32))
    scaled = b.scale(np.zeros((2, b.n_features), np.float32))
    assert scaled.shape == (2, b.n_features) and scaled.dtype == np.float32


@pytest.mark.tf
def test_refuses_a_tampered_model(bundle_copy):
    data = bytearray((bundle_copy / "hybrid.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle_copy / "hybrid.tflite").write_bytes(bytes(data))
    _refused(bundle_copy, "hybrid.tflite does not match its sha256")


@pytest.mark.tf
def test_refuses_quantization_that_disagrees_with_the_manifest(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m["models"]["hybrid"]["input"].update(zero_point=0))
    _refused(bundle_copy, "quantization parameters differ")


@pytest.mark.tf
def test_refuses_a_window_that_disagrees_with_the_model(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.update(window=6))  # the manifest disagrees with itself
    _refused(bundle_copy, "manifest field models.hybrid.input.shape must be [-1, 6, ")

    def consistent(m):  # a consistent manifest whose model was not built for it
        m.update(window=6)
        m["models"]["hybrid"]["input"]["shape"][1] = 6
    edit_manifest(bundle_copy, consistent)
    _refused(bundle_copy, "hybrid.tflite input shape")


@pytest.mark.tf
def test_falls_back_to_tflite_runtime(int8_bundle, monkeypatch):
    """With ai_edge_litert absent, the loader takes tflite_runtime (faked here by the same class)."""
    from ai_edge_litert.interpreter import Interpreter

    fake_pkg = types.ModuleType("tflite_runtime")
    fake_mod = types.ModuleType("tflite_runtime.interpreter")
    fake_mod.Interpreter = Interpreter
    fake_pkg.interpreter = fake_mod
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", fake_pkg)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake_mod)
    b = load_bundle(int8_bundle)
    assert b.runtime == "tflite_runtime"
    assert b.score(np.zeros((2, b.window, b.n_features), np.float32)).shape == (2,)


NO_TF = textwrap.dedent("""
    import json, sys
    for name in ("tensorflow", "keras", "sklearn", "pandas", "tflite_runtime"):
        sys.modules[name] = None
    import numpy as np
    from edgebot.bundle import load_bundle
    from edgebot.evaluate import binary_rates
    bundle = load_bundle(sys.argv[1])
    with np.load(sys.argv[2]) as d:
        W, y = d["test_windows"], d["test_labels"]
    m = binary_rates(y, bundle.decide(bundle.score(W)))
    heavy = sorted(k for k in sys.modules if k.split(".")[0] in ("tensorflow", "keras", "sklearn", "pandas")
                   and sys.modules[k] is not None)
    print(json.dumps({"f1": m["f1"], "runtime": bundle.runtime, "heavy": heavy}))
""")


@pytest.mark.tf
def test_loads_and_scores_with_tensorflow_blocked(int8_bundle, int8_run_dir):
    """The gateway path: TensorFlow, Keras, scikit-learn and pandas cannot be imported at all."""
    proc = subprocess.run([sys.executable, "-c", NO_TF, str(int8_bundle), str(int8_run_dir / "data.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runtime"] == "ai_edge_litert" and out["heavy"] == []
    verification = json.loads((int8_bundle / "verification.json").read_text())
    assert out["f1"] == pytest.approx(verification["int8"]["f1"], abs=1e-12)


@pytest.mark.tf
def test_warns_when_another_edgebot_converted_it(bundle_copy, caplog):
    edit_manifest(bundle_copy, lambda m: m.update(edgebot_version="0.0.1"))
    with caplog.at_level("WARNING", logger="edgebot.bundle"):
        load_bundle(bundle_copy)
    assert "converted by edgebot 0.0.1" in caplog.text
