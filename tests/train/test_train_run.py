"""One quick training run on the bundled IoT-23 data, checked from every side (TensorFlow needed)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from edgebot.features import N_FEATURES
from edgebot.fusion import FUSER_RAW_FEATURES


pytestmark = [pytest.mark.tf, pytest.mark.slow]

MODELS = ["random_forest", "xgboost", "cnn", "lstm", "cnn_lstm", "autoencoder", "fused", "fused_rf"]
KEYS = ["accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "fpr", "threshold", "confusion"]


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_metrics_json_keys_are_stable(quick_run):
    run, result, _ = quick_run
    m = _metrics(run)
    assert {k: v for k, v in result.items() if k != "summary"} == m
    assert list(m)[:2] == ["split", "models"]
    assert m["split"]["name"] == "temporal" and m["split"]["leaky"] is False
    assert set(m["split"]["sizes"]) == {"train", "val", "test"}
    assert set(m["split"]["sizes"]["test"]) == {"flows", "benign", "malicious"}
    assert list(m["models"]) == MODELS
    n_test = m["split"]["sizes"]["test"]["flows"]
    for name, entry in m["models"].items():
        assert list(entry) == KEYS, name
        assert sum(map(sum, entry["confusion"])) == n_test
        for key in ("accuracy", "precision", "recall", "f1", "fpr", "roc_auc", "pr_auc"):
            assert 0.0 <= entry[key] <= 1.0, (name, key)
    assert "leave_out" not in m


def test_metrics_match_the_saved_scores_and_thresholds(quick_run):
    from edgebot.train.metrics import binary_metrics

    run, _, _ = quick_run
    m = _metrics(run)
    spec = json.loads((run / "spec.json").read_text())
    with np.load(run / "test_scores.npz") as scores:
        labels = scores["labels"]
        for name in MODELS:
            saved = m["models"][name]
            again = binary_metrics(labels, scores[name], saved["threshold"])
            assert again["confusion"] == saved["confusion"], name
            for key in KEYS[:-1]:
                assert again[key] == pytest.approx(saved[key]), (name, key)
    assert spec["fused_threshold"] == m["models"]["fused"]["threshold"]
    assert spec["ae_threshold"] == m["models"]["autoencoder"]["threshold"]


def test_quick_run_is_fast_and_the_fuser_is_strong(quick_run):
    _, result, seconds = quick_run
    assert seconds < 180, f"--quick took {seconds:.0f} s, the budget is 3 minutes"
    models = result["models"]
    assert models["fused"]["f1"] >= 0.98
    assert models["fused"]["f1"] > 0.95  # the paper's CNN-LSTM F1
    assert "fused F1" in result["summary"] and "split temporal" in result["summary"]


def test_run_dir_follows_the_contract(quick_run):
    import keras

    run, _, _ = quick_run
    for name in ("cnn_lstm.keras", "cnn.keras", "lstm.keras", "autoencoder.keras", "fuser.json", "fuser_rf.joblib",
                 "random_forest.joblib", "xgboost_flow.json", "spec.json", "data.npz", "metrics.json",
                 "history.json", "report.md", "report.html"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert not list(run.parent.glob(".run.tmp-*"))
    spec = json.loads((run / "spec.json").read_text())
    T = spec["window"]
    assert spec["fuser_raw_features"] == list(FUSER_RAW_FEATURES)
    assert spec["featurizer"]["n_features"] == N_FEATURES and len(spec["scaler"]["min"]) == N_FEATURES
    assert spec["label_mode"] == "binary" and set(spec["versions"]) >= {"tensorflow", "xgboost", "numpy"}
    with np.load(run / "data.npz", allow_pickle=False) as data:
        assert data["calib_windows"].shape[1:] == (T, N_FEATURES) and 0 < len(data["calib_windows"]) <= 2000
        n = len(data["test_labels"])
        assert data["test_windows"].shape == (n, T, N_FEATURES) and data["test_windows"].dtype == np.float32
        assert set(np.unique(data["test_labels"])) <= {0, 1}
        assert len(data["test_families"]) == len(data["test_hosts"]) == len(data["test_scenarios"]) == n
    hybrid = keras.models.load_model(run / "cnn_lstm.keras")
    assert hybrid.input_shape == (None, T, N_FEATURES) and hybrid.output_shape == (None, 1)
    assert hybrid.get_layer("lstm").get_config()["unroll"] is True
    ae = keras.models.load_model(run / "autoencoder.keras")
    assert ae.input_shape == (None, N_FEATURES) and ae.output_shape == (None, N_FEATURES)
    history = json.loads((run / "history.json").read_text())
    assert set(history) == {"cnn", "lstm", "cnn_lstm", "autoencoder"}
    assert len(history["cnn_lstm"]["val_loss"]) >= 1


def test_saved_models_reproduce_the_fused_scores(quick_run):
    """What the converter does: keras models + fuser.json on data.npz give the run's fused scores."""
    import keras
    import xgboost as xgb

    from edgebot.features import FEATURE_NAMES
    from edgebot.fusion import (BASE_MARGIN_ATTR, HYBRID_LOGIT, fuser_inputs, hybrid_logit, raw_feature_index,
                                reconstruction_error)

    run, _, _ = quick_run
    spec = json.loads((run / "spec.json").read_text())
    booster = xgb.Booster()
    booster.load_model(str(run / "fuser.json"))
    assert booster.num_features() == 2 + len(FUSER_RAW_FEATURES)
    with np.load(run / "data.npz") as data, np.load(run / "test_scores.npz") as scores:
        windows = data["test_windows"][:3000]
        expected = scores["fused"][:3000]
    last = windows[:, -1, :]
    prob = keras.models.load_model(run / "cnn_lstm.keras").predict(windows, verbose=0)[:, 0]
    recon = keras.models.load_model(run / "autoencoder.keras").predict(last, verbose=0)
    anomaly = reconstruction_error(last, recon) / spec["ae_threshold"]
    inputs = fuser_inputs(prob, anomaly, last, raw_feature_index(FEATURE_NAMES, spec["fuser_raw_features"]))
    # the trees add to the hybrid's logit, and the file says so (the gateway reads it there)
    assert booster.attr(BASE_MARGIN_ATTR) == HYBRID_LOGIT
    fused = booster.predict(xgb.DMatrix(inputs, base_margin=hybrid_logit(prob)))
    assert np.allclose(fused, expected, atol=1e-5)
    # without that start the same trees give other scores: the attribute is not decoration
    assert not np.allclose(booster.predict(xgb.DMatrix(inputs)), expected, atol=1e-3)


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_report_files_and_figures(quick_run):
    import matplotlib.image

    run, _, _ = quick_run
    figures = sorted(p.name for p in (run / "figures").glob("*.png"))
    assert figures == ["bars.png", "confusion.png", "importance.png", "pr.png", "roc.png", "training.png"]
    for name in figures:
        path = run / "figures" / name
        width, height = _png_size(path)
        assert width >= 400 and height >= 300, name
        pixels = matplotlib.image.imread(path)
        assert pixels.std() > 0.01, f"{name} is blank"
    md = (run / "report.md").read_text()
    assert "Table 1" in md and "95.0" in md and "CNN-LSTM" in md and "figures/roc.png" in md
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "<table>" in html


def test_same_seed_same_metrics_and_leave_out_reports_recall(tiny_runs):
    (run_a, a), (run_b, b) = tiny_runs
    assert (run_a / "metrics.json").read_text() == (run_b / "metrics.json").read_text()
    assert a["split"]["name"] == "leave-out:Hakai"
    lo = a["leave_out"]
    assert lo["name"] == "Hakai" and lo["captures"] == ["8-1"] and lo["matched"] == "family"
    assert lo["recall"] == a["models"]["fused"]["recall"] and lo["fpr_budget"] == 0.01
    assert set(lo["recall_by_model"]) == set(MODELS)
    assert a["split"]["test_captures"] == ["8-1"]
    assert "Leave-out" in (run_a / "report.md").read_text()
