"""The fuser's trees in numpy (edgebot.trees) score as xgboost does; anything it cannot evaluate is refused."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebot.errors import BundleError
from edgebot.trees import TreeEnsemble, load_trees

REPO = Path(__file__).resolve().parents[2]
SHIPPED_FUSER = REPO / "edgebot" / "default_bundle" / "fuser.json"

xgb = pytest.importorskip("xgboost", reason="the cross-check needs xgboost (the edge extra)")


def _rows(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.random((n, k), dtype=np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values follow default_left
    X[: n // 4] = np.round(X[: n // 4] * 10) / 10  # values on and around split points
    return X


def _trained(tmp_path: Path, depth: int, trees: int, seed: int) -> Path:
    X = _rows(3000, 7, seed)
    y = ((np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 3]) * 0.5) > 0.7).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed,
                         "tree_method": "hist", "nthread": 1}, xgb.DMatrix(X, label=y), num_boost_round=trees)
    path = tmp_path / f"fuser-{depth}-{trees}.json"
    booster.save_model(str(path))
    return path


def _agree(path: Path, n_inputs: int, seed: int) -> tuple[float, float]:
    from edgebot.fusion import fused_probability, margin_kind

    trees = load_trees(path, n_inputs)
    booster = xgb.Booster(model_file=str(path))
    X = _rows(4000, n_inputs, seed)
    kind = margin_kind(trees)
    if kind:
        X[:, 0] = np.nan_to_num(X[:, 0])  # the hybrid's probability, never missing
    ours, theirs = fused_probability(trees, X, kind), fused_probability(booster, X, kind)
    return float(np.max(np.abs(ours - theirs))), float(np.mean(ours == theirs))


@pytest.mark.parametrize("depth,n_trees", [(1, 5), (3, 60), (6, 200)])
def test_trees_score_as_xgboost_on_trained_models(tmp_path, depth, n_trees):
    diff, exact = _agree(_trained(tmp_path, depth, n_trees, seed=depth), 7, seed=10 + depth)
    assert diff <= 1.2e-7  # at most one float32 ulp at these magnitudes
    assert exact >= 0.99


def test_trees_score_as_xgboost_on_the_shipped_fuser():
    n = json.loads(SHIPPED_FUSER.read_text())["learner"]["learner_model_param"]["num_feature"]
    diff, exact = _agree(SHIPPED_FUSER, int(n), seed=3)
    assert diff <= 1.2e-7 and exact >= 0.99


def test_decisions_at_the_bundle_threshold_are_xgboosts(int8_bundle):
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    n = 2 + len(manifest["fuser"]["raw_features"])
    trees, booster = load_trees(int8_bundle / "fuser.json", n), xgb.Booster(model_file=str(int8_bundle / "fuser.json"))
    X = _rows(20000, n, seed=5)
    th = manifest["thresholds"]["fused"]
    assert np.array_equal(trees.inplace_predict(X) >= th, booster.inplace_predict(X) >= th)


def test_trees_started_from_the_hybrid_score_as_xgboost(tmp_path):
    """A fuser trained on the hybrid's logit (base_margin) scores the same in numpy and in xgboost."""
    from edgebot.fusion import BASE_MARGIN_ATTR, HYBRID_LOGIT, base_margin, fused_probability, margin_kind

    X = np.nan_to_num(_rows(3000, 7, seed=4))
    y = ((X[:, 0] + X[:, 3] * 0.5) > 0.7).astype(np.float32)
    dtrain = xgb.DMatrix(X, label=y, base_margin=base_margin(HYBRID_LOGIT, X))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 0, "tree_method": "hist",
                         "nthread": 1}, dtrain, num_boost_round=40)
    booster.set_attr(**{BASE_MARGIN_ATTR: HYBRID_LOGIT})
    path = tmp_path / "fuser.json"
    booster.save_model(str(path))
    trees = load_trees(path, 7)
    assert margin_kind(trees) == HYBRID_LOGIT
    rows = _rows(4000, 7, seed=6)
    rows[:, 0] = np.nan_to_num(rows[:, 0])  # the hybrid's probability is never missing
    rows[:50, 0] = [0.0, 1.0] * 25  # int8 outputs reach the ends: the logit is clipped, not infinite
    ours = fused_probability(trees, rows, HYBRID_LOGIT)
    theirs = fused_probability(xgb.Booster(model_file=str(path)), rows, HYBRID_LOGIT)
    assert np.all(np.isfinite(ours)) and float(np.max(np.abs(ours - theirs))) <= 1.2e-7
    # started from the hybrid, the fused score follows it where the trees have little to add
    assert np.corrcoef(ours, rows[:, 0])[0, 1] > 0.5
    # and the start matters: the same trees from base_score give other scores
    assert float(np.max(np.abs(trees.inplace_predict(rows) - ours))) > 0.05


def test_an_unknown_start_is_refused_in_one_line(tmp_path):
    from edgebot.bundle import load_booster
    from edgebot.fusion import BASE_MARGIN_ATTR

    model = _model(tmp_path)
    model["learner"]["attributes"] = {BASE_MARGIN_ATTR: "logit(something_newer)"}
    path = tmp_path / "fuser.json"
    path.write_text(json.dumps(model))
    for load in (load_trees, load_booster):
        with pytest.raises(BundleError) as err:
            load(path, 7)
        assert "something_newer" in str(err.value) and "\n" not in str(err.value)


def _model(tmp_path: Path) -> dict:
    return json.loads(_trained(tmp_path, 2, 3, seed=0).read_text())


@pytest.mark.parametrize("breakage,message", [
    (lambda m: m["learner"]["objective"].update(name="reg:squarederror"), "binary:logistic only"),
    (lambda m: m["learner"]["gradient_booster"].update(name="gblinear"), "gbtree only"),
    (lambda m: m["learner"]["learner_model_param"].update(num_class="3"), "multi-class"),
    (lambda m: m["learner"]["gradient_booster"]["model"]["trees"][0].update(
        split_type=[1] * len(m["learner"]["gradient_booster"]["model"]["trees"][0]["split_type"])), "categorical"),
    (lambda m: m["learner"]["gradient_booster"]["model"]["trees"][1]["left_children"].__setitem__(0, 999),
     "not a tree"),
    (lambda m: m["learner"]["gradient_booster"]["model"]["trees"][2]["split_indices"].__setitem__(0, 99),
     "outside"),
    (lambda m: m["learner"]["gradient_booster"]["model"].update(trees=[]), "no trees"),
    (lambda m: m["learner"].pop("learner_model_param"), "not an XGBoost JSON model"),
])
def test_what_the_trees_cannot_evaluate_is_refused_in_one_line(tmp_path, breakage, message):
    model = copy.deepcopy(_model(tmp_path))
    breakage(model)
    with pytest.raises(BundleError) as err:
        TreeEnsemble(model, Path("fuser.json"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_wrong_input_count_and_unreadable_file_are_refused(tmp_path):
    path = _trained(tmp_path, 2, 3, seed=1)
    with pytest.raises(BundleError, match="takes 7 inputs but the fusion layer gives 9"):
        load_trees(path, 9)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        load_trees(path, 7)


def test_the_gateway_path_imports_neither_xgboost_nor_scipy():
    code = (
        "import sys, numpy as np\n"
        "from edgebot.bundle import load_bundle\n"
        f"b = load_bundle({str(REPO / 'edgebot' / 'default_bundle')!r})\n"
        "w = np.zeros((4, b.window, b.n_features), np.float32)\n"
        "b.score_components(w)\n"
        "print(sorted(m for m in ('xgboost', 'scipy', 'sklearn', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
