"""The fusers: XGBoost and Random Forest over the hybrid's probability, the anomaly score and raw features.

:func:`fit_fusers` is the fuser step of :func:`edgebot.train.fit.train_run`: it trains on
validation rows (out-of-sample scores of the base models), builds the XGBoost fuser from the
flow-level XGBoost where that wins on validation, and records its choice. The edge side of the
XGBoost fuser (its inputs, computed identically on both sides) is :mod:`edgebot.fusion`; the
bundle's ``fuser.json`` is one XGBoost booster over those inputs, whichever candidate won.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional, Sequence

import numpy as np

from edgebot.errors import DataError
from edgebot.features import FeatureProfile
from edgebot.fusion import FUSER_RAW_FEATURES, fuser_inputs, raw_feature_index
from edgebot.train.data import PartArrays
from edgebot.train.metrics import binary_metrics, threshold_for_fpr

log = logging.getLogger(__name__)

#: Monotone constraints of the XGBoost fuser over FUSER_INPUT_NAMES: +1 on the hybrid's
#: probability and the anomaly score, free on the raw features.
FUSER_MONOTONE = (1, 1) + (0,) * len(FUSER_RAW_FEATURES)


def fuser_monotone(profile: FeatureProfile) -> tuple[int, ...]:
    """:data:`FUSER_MONOTONE` for a feature profile's fuser inputs."""
    return (1, 1) + (0,) * len(profile.fuser_raw_features)


def _rf_classifier(trees: int, depth: Optional[int], seed: int, threads: int, min_leaf: int = 1):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=trees, max_depth=depth, min_samples_leaf=min_leaf,
                                  random_state=seed, n_jobs=threads)


def _fit_with_bar(model, X: np.ndarray, y: np.ndarray, name: str, progress: bool):
    from tqdm.auto import tqdm

    with tqdm(total=1, desc=f"training {name}", unit="model", disable=not progress, leave=False) as bar:
        model.fit(X, y)
        bar.update(1)
    return model


def _proba(model, X: np.ndarray) -> np.ndarray:
    if len(X) == 0:
        return np.zeros(0, dtype=np.float32)
    return model.predict_proba(X)[:, 1].astype(np.float32)


def stratified_folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number ``(n,) int`` per row, each class spread evenly over ``k`` folds."""
    folds = np.zeros(len(y), dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        folds[idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % k
    return folds


def stacked_scores(make_model, X: np.ndarray, y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Out-of-fold scores of a stacker on its own training rows (for an honest threshold)."""
    fold = stratified_folds(y, folds, rng)
    oof = np.zeros(len(y), dtype=np.float32)
    for k in range(folds):
        held = fold == k
        if not held.any():
            continue
        model = make_model()
        model.fit(X[~held], y[~held])
        oof[held] = _proba(model, X[held])
    return oof


def fuser_raw_features(profile: FeatureProfile, all_features: bool) -> tuple[str, ...]:
    """The raw features the fuser sees: every feature of the profile, or only its short list."""
    return tuple(profile.feature_names) if all_features else tuple(profile.fuser_raw_features)


def shifted_booster(booster: Any, offset: int, n_inputs: int) -> Any:
    """A copy of ``booster`` that reads feature ``j`` from input column ``j + offset`` of ``n_inputs``.

    The flow-level XGBoost (trained on a flow's features) becomes a model over the fuser's inputs
    (hybrid probability, anomaly score, then every feature) that scores exactly as before.
    """
    import xgboost as xgb

    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    learner["learner_model_param"]["num_feature"] = str(n_inputs)
    learner["feature_names"], learner["feature_types"] = [], []
    for tree in learner["gradient_booster"]["model"]["trees"]:
        tree["tree_param"]["num_feature"] = str(n_inputs)
        tree["split_indices"] = [int(i) + offset for i in tree["split_indices"]]
    return xgb.Booster(model_file=bytearray(json.dumps(model).encode("utf-8")))


def booster_bytes(booster: Any) -> int:
    """Size of a booster as the bundle stores it (XGBoost JSON)."""
    return len(bytes(booster.save_raw("json")))


def predict_booster(booster: Any, X: np.ndarray) -> np.ndarray:
    """Scores ``(n,) float32`` exactly as the edge computes them (``inplace_predict`` on float32 inputs)."""
    if len(X) == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(booster.inplace_predict(np.asarray(X, dtype=np.float32)), dtype=np.float32).reshape(len(X))


def _boost_on(base: Optional[Any], X: np.ndarray, y: np.ndarray, cfg: Any, seed: int, monotone: tuple) -> Any:
    """XGBoost trees fitted on ``(X, y)``; with ``base`` they continue it (``base`` is not changed)."""
    import xgboost as xgb

    params = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": cfg.fuser_max_depth,
              "eta": 0.1, "subsample": 0.9, "colsample_bytree": 0.9, "tree_method": "hist", "seed": seed,
              "nthread": cfg.threads}
    if cfg.fuser_monotone:
        params["monotone_constraints"] = "(" + ",".join(str(int(c)) for c in monotone) + ")"
    start = None if base is None else base.copy()
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=cfg.fuser_trees, xgb_model=start)


def _first_trees(flow: Any, budget: int) -> Any:
    """The flow model's first trees, as many as fit in ``budget`` bytes (all of them if they fit)."""
    n_trees, size = flow.num_boosted_rounds(), booster_bytes(flow)
    keep, kept = n_trees, flow
    while size > budget and keep > 1:  # trees differ in size: shrink until the JSON fits
        keep = max(1, min(keep - 1, int(keep * budget / size)))
        kept = flow[:keep]
        size = booster_bytes(kept)
    if keep < n_trees:
        log.info("the fuser keeps the flow XGBoost's first %d of %d trees (%d bytes)", keep, n_trees, size)
    return kept


def _oof(fit_rows, X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold scores of ``fit_rows(X_fit, y_fit) -> booster`` on its own rows."""
    fold = stratified_folds(y, folds, np.random.default_rng(seed))
    oof = np.zeros(len(y), dtype=np.float32)
    for k in range(folds):
        held = fold == k
        if held.any():
            oof[held] = predict_booster(fit_rows(X[~held], y[~held]), X[held])
    return oof


#: Candidates of the XGBoost fuser, in order of preference when their validation F1 ties.
FUSER_CANDIDATES = ("stacked", "xgboost")


def fit_fusers(state: Any, va: PartArrays, te: PartArrays, cfg: Any, seed: int, progress: bool,
               t: float, profile: FeatureProfile, fpr_budget: float = 0.01) -> float:
    """The XGBoost fuser (the bundle's ``fuser.json``) and the Random Forest fuser.

    Both learn on validation rows only, where the base models' scores are out-of-sample (the
    networks and the flow XGBoost never trained on them; the networks only early-stopped on
    them). The XGBoost fuser is one booster over :func:`edgebot.fusion.fuser_inputs` with every
    raw feature, the better on validation of two candidates:

    ``stacked``
        the flow-level XGBoost (trained on the training rows, its columns shifted behind the two
        model outputs) continued by ``fuser_trees`` trees fitted on validation rows: they
        correct the flow model with the hybrid's probability, the anomaly score and the features;
    ``xgboost``
        the flow-level XGBoost itself (scores exactly as the ``xgboost`` baseline).

    ``stacked`` is scored out-of-fold on validation (``fuser_folds`` folds), ``xgboost`` never saw
    those rows; each is thresholded like every model (:func:`edgebot.train.metrics.threshold_for_fpr`)
    and ``xgboost`` is chosen only when its validation F1 is higher, so the fused output is never
    below the flow XGBoost on validation. Without ``fuser_all_features`` (the profile's short raw
    list) the fuser is trained on validation rows alone, as before. If the flow model would make
    the fuser JSON larger than ``fuser_max_bytes`` only its first trees are kept (logged, and the
    candidates' tree counts are in the record). The choice lands in ``state.fuser_choice``
    (spec.json, metrics.json, the bundle's manifest).
    """
    raw_names = fuser_raw_features(profile, cfg.fuser_all_features)
    raw_index = raw_feature_index(profile.feature_names, raw_names)
    if len(raw_index) != len(raw_names):
        missing = sorted(set(raw_names) - set(profile.feature_names))
        raise DataError(f"the featurizer lacks the fuser's raw features {missing}; update edgebot.fusion")
    inputs = {
        part: fuser_inputs(scores["cnn_lstm"], scores["autoencoder"] / state.ae_threshold, arrays.last, raw_index)
        for part, scores, arrays in (("val", state.val_scores, va), ("test", state.test_scores, te))
    }
    n_inputs = inputs["val"].shape[1]
    monotone = (1, 1) + (0,) * len(raw_names)
    boosters: dict[str, Any] = {}
    oof: dict[str, np.ndarray] = {}
    if cfg.fuser_all_features:
        flow = shifted_booster(state.models["xgboost"].get_booster(), 2, n_inputs)
        boosters["xgboost"] = _first_trees(flow, cfg.fuser_max_bytes)
        oof["xgboost"] = predict_booster(boosters["xgboost"], inputs["val"])
        base = boosters["xgboost"]
        stacked = _boost_on(base, inputs["val"], va.y, cfg, seed, monotone)
        extra = booster_bytes(stacked) - booster_bytes(base)  # the correction trees' share
        if booster_bytes(stacked) > cfg.fuser_max_bytes:  # make room for them
            base = _first_trees(base, cfg.fuser_max_bytes - extra)
            stacked = _boost_on(base, inputs["val"], va.y, cfg, seed, monotone)
        boosters["stacked"] = stacked
        oof["stacked"] = _oof(lambda X, y: _boost_on(base, X, y, cfg, seed, monotone), inputs["val"], va.y,
                              cfg.fuser_folds, seed)
    else:
        boosters["stacked"] = _boost_on(None, inputs["val"], va.y, cfg, seed, monotone)
        oof["stacked"] = _oof(lambda X, y: _boost_on(None, X, y, cfg, seed, monotone), inputs["val"], va.y,
                              cfg.fuser_folds, seed)

    benign = va.y == 0
    groups = va.captures[benign] if cfg.fpr_per_capture else None
    val_f1, test_f1 = {}, {}
    for name in (n for n in FUSER_CANDIDATES if n in boosters):
        threshold = threshold_for_fpr(oof[name][benign], fpr_budget, groups)
        val_f1[name] = float(binary_metrics(va.y, oof[name], threshold)["f1"])
        test_f1[name] = float(binary_metrics(te.y, predict_booster(boosters[name], inputs["test"]), threshold)["f1"])
    chosen = max(val_f1, key=lambda n: (val_f1[n], -FUSER_CANDIDATES.index(n)))
    state.models["fused"] = boosters[chosen]
    state.val_scores["fused"] = oof[chosen]
    state.test_scores["fused"] = predict_booster(boosters[chosen], inputs["test"])
    state.fuser_choice = {
        "chosen": chosen,
        "validation_f1": val_f1,
        "test_f1": test_f1,
        "candidates": {name: {"trees": int(b.num_boosted_rounds()), "bytes": booster_bytes(b)}
                       for name, b in boosters.items()},
        "raw_features": list(raw_names),
        "policy": "the candidate with the best validation F1 (stacked: out-of-fold) at its own validation "
                  f"threshold (ties: {', '.join(FUSER_CANDIDATES)}); test_f1 is reported, never used to choose",
    }
    log.info("fuser: %s chosen (validation F1 %s)", chosen, {k: round(v, 4) for k, v in val_f1.items()})

    make_rf = lambda: _rf_classifier(cfg.fuser_rf_trees, 8, seed, cfg.threads, min_leaf=2)  # noqa: E731
    state.val_scores["fused_rf"] = stacked_scores(make_rf, inputs["val"], va.y, cfg.fuser_folds,
                                                  np.random.default_rng(seed))
    state.models["fused_rf"] = _fit_with_bar(make_rf(), inputs["val"], va.y, "fused_rf", progress)
    state.test_scores["fused_rf"] = _proba(state.models["fused_rf"], inputs["test"])
    return state.lap("fusers", t)


def fuser_importance(booster: Any, names: Sequence[str]) -> dict[str, float]:
    """Gain of each fuser input (0 for inputs no tree splits on), keyed by ``names``."""
    gain = booster.get_score(importance_type="gain")
    return {name: float(gain.get(f"f{i}", 0.0)) for i, name in enumerate(names)}
