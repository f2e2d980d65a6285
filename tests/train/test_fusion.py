"""The XGBoost fuser: never below the flow XGBoost on the validation it chose on, the edge scores it
exactly as the trainer did (JSON round trip, TensorFlow blocked), same seed, same fuser.

One quick real training (the session's ``quick_run``) plus fuser-only refits on its saved scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import numpy as np
import pytest


pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _load(run):
    spec = json.loads((run / "spec.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    return spec, metrics


def test_fused_never_below_the_flow_xgboost_on_validation(quick_run):
    run, result, _ = quick_run
    spec, metrics = _load(run)
    choice = metrics["fuser_choice"]
    assert choice == spec["fuser_choice"]
    assert choice["chosen"] in choice["validation_f1"]
    # the fused model's validation F1 is the chosen candidate's, the best of the candidates
    val = metrics["validation"]
    assert val["fused"]["f1"] == pytest.approx(choice["validation_f1"][choice["chosen"]], abs=1e-12)
    assert val["fused"]["f1"] == max(choice["validation_f1"].values())
    # the quick flow XGBoost fits in the fuser whole, so its candidate is the baseline itself
    assert choice["candidates"]["xgboost"]["trees"] == metrics["config"]["xgb_trees"]
    assert choice["validation_f1"]["xgboost"] == pytest.approx(val["xgboost"]["f1"], abs=1e-12)
    assert val["fused"]["f1"] >= val["xgboost"]["f1"]
    assert choice["test_f1"][choice["chosen"]] == pytest.approx(metrics["models"]["fused"]["f1"], abs=1e-12)


def test_the_shifted_flow_model_scores_exactly_as_the_baseline(quick_run):
    import xgboost as xgb

    from edgebot.fusion import fuser_inputs, raw_feature_index
    from edgebot.train.fuser import predict_booster, shifted_booster

    run, _, _ = quick_run
    spec, _ = _load(run)
    flow = xgb.Booster(model_file=str(run / "xgboost_flow.json"))
    with np.load(run / "data.npz") as data, np.load(run / "test_scores.npz") as scores:
        last = data["test_windows"][:, -1, :]
        hybrid, anomaly, expected = scores["cnn_lstm"], scores["autoencoder"] / spec["ae_threshold"], scores["xgboost"]
    names = spec["featurizer"]["feature_names"]
    X = fuser_inputs(hybrid, anomaly, last, raw_feature_index(names, names))
    shifted = shifted_booster(flow, 2, X.shape[1])
    assert shifted.num_features() == 2 + len(names)
    assert np.allclose(predict_booster(shifted, X), expected, atol=1e-6)
    # the hybrid and anomaly columns mean nothing to it
    X2 = X.copy()
    X2[:, :2] = 1.0 - X2[:, :2]
    assert np.array_equal(predict_booster(shifted, X2), predict_booster(shifted, X))


EDGE = textwrap.dedent("""
    import json, sys
    for name in ("tensorflow", "keras", "sklearn", "pandas"):
        sys.modules[name] = None
    from pathlib import Path
    import numpy as np
    from edgebot.bundle import load_booster
    from edgebot.fusion import fuser_inputs, raw_feature_index
    run = Path(sys.argv[1])
    spec = json.loads((run / "spec.json").read_text())
    booster = load_booster(run / "fuser.json", 2 + len(spec["fuser_raw_features"]))
    with np.load(run / "data.npz") as data, np.load(run / "test_scores.npz") as s:
        last = data["test_windows"][:, -1, :]
        X = fuser_inputs(s["cnn_lstm"], (s["autoencoder"] / np.float32(spec["ae_threshold"])).astype(np.float32),
                         last, raw_feature_index(spec["featurizer"]["feature_names"], spec["fuser_raw_features"]))
        fused, trained = booster.inplace_predict(X), s["fused"]
    heavy = sorted(k for k in sys.modules if k.split(".")[0] in ("tensorflow", "keras", "sklearn", "pandas")
                   and sys.modules[k] is not None)
    print(json.dumps({"max_diff": float(np.max(np.abs(fused - trained))), "n": len(trained), "heavy": heavy}))
""")


def test_edge_scores_the_fuser_json_as_the_trainer_did(quick_run):
    """fuser.json read by the edge loader (TensorFlow, Keras, scikit-learn blocked) gives the trainer's scores."""
    run, _, _ = quick_run
    proc = subprocess.run([sys.executable, "-c", EDGE, str(run)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [] and out["n"] > 1000
    assert out["max_diff"] <= 1e-6


@dataclass
class _State:
    """The part of the trainer's state the fuser step reads and writes."""

    models: dict
    val_scores: dict
    test_scores: dict
    ae_threshold: float
    timings: dict = field(default_factory=dict)
    fuser_choice: dict = field(default_factory=dict)

    def lap(self, name, since):
        return since


def _refit(run, seed):
    """fit_fusers on the run's saved test scores, its first half as validation, the rest as test."""
    import xgboost as xgb

    from edgebot.features import get_profile
    from edgebot.train.data import PartArrays
    from edgebot.train.fit import TrainConfig
    from edgebot.train.fuser import fit_fusers

    spec, _ = _load(run)
    with np.load(run / "data.npz") as data, np.load(run / "test_scores.npz") as s:
        W, y, caps = data["test_windows"], data["test_labels"], data["test_scenarios"]
        scores = {k: s[k] for k in ("cnn_lstm", "autoencoder")}
    half = len(y) // 2
    parts = []
    for rows in (slice(0, half), slice(half, None)):
        parts.append(PartArrays(W[rows], W[rows, -1, :], y[rows], caps[rows], caps[rows], caps[rows],
                                np.zeros(len(y[rows]))))
    flow = xgb.XGBClassifier()
    flow.load_model(str(run / "xgboost_flow.json"))
    ae = spec["ae_threshold"]
    state = _State({"xgboost": flow}, {k: v[:half] for k, v in scores.items()},
                   {k: v[half:] for k, v in scores.items()}, ae)
    cfg = TrainConfig.quick()
    fit_fusers(state, parts[0], parts[1], cfg, seed, False, 0.0, get_profile(spec["featurizer"]["profile"]))
    return bytes(state.models["fused"].save_raw("json")), state.fuser_choice, state.test_scores["fused"]


def test_same_seed_same_fuser(quick_run):
    run, _, _ = quick_run
    a, choice_a, scores_a = _refit(run, seed=3)
    b, choice_b, scores_b = _refit(run, seed=3)
    assert a == b and choice_a == choice_b and np.array_equal(scores_a, scores_b)
    assert choice_a["validation_f1"][choice_a["chosen"]] >= choice_a["validation_f1"]["xgboost"]
