"""The fusers: XGBoost and Random Forest over the hybrid's probability, the anomaly score and raw features.

:func:`fit_fusers` is the fuser step of :func:`edgebot.train.fit.train_run`. The edge side of the
XGBoost fuser (its inputs, computed identically on both sides) is :mod:`edgebot.fusion`.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgebot.errors import DataError
from edgebot.features import FeatureProfile
from edgebot.fusion import FUSER_RAW_FEATURES, fuser_inputs, raw_feature_index
from edgebot.train.data import PartArrays

#: Monotone constraints of the XGBoost fuser over FUSER_INPUT_NAMES: +1 on the hybrid's
#: probability and the anomaly score, free on the raw features.
FUSER_MONOTONE = (1, 1) + (0,) * len(FUSER_RAW_FEATURES)


def fuser_monotone(profile: FeatureProfile) -> tuple[int, ...]:
    """:data:`FUSER_MONOTONE` for a feature profile's fuser inputs."""
    return (1, 1) + (0,) * len(profile.fuser_raw_features)


def _xgb_classifier(trees: int, depth: int, seed: int, threads: int, monotone: Optional[tuple] = None):
    import xgboost as xgb

    extra = {"monotone_constraints": "(" + ",".join(str(int(c)) for c in monotone) + ")"} if monotone else {}
    return xgb.XGBClassifier(
        n_estimators=trees, max_depth=depth, learning_rate=0.1, subsample=0.9, colsample_bytree=0.9,
        tree_method="hist", objective="binary:logistic", eval_metric="logloss", random_state=seed,
        n_jobs=threads, **extra,
    )


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


def fit_fusers(state: Any, va: PartArrays, te: PartArrays, cfg: Any, seed: int, progress: bool,
               t: float, profile: FeatureProfile) -> float:
    """XGBoost and Random Forest fusers, trained on validation rows (never seen by the base models).

    Their validation scores are out-of-fold, so the thresholds set on them are honest.
    """
    raw_index = raw_feature_index(profile.feature_names, profile.fuser_raw_features)
    if len(raw_index) != len(profile.fuser_raw_features):
        missing = sorted(set(profile.fuser_raw_features) - set(profile.feature_names))
        raise DataError(f"the featurizer lacks the fuser's raw features {missing}; update edgebot.fusion")
    inputs = {
        part: fuser_inputs(scores["cnn_lstm"], scores["autoencoder"] / state.ae_threshold, arrays.last, raw_index)
        for part, scores, arrays in (("val", state.val_scores, va), ("test", state.test_scores, te))
    }
    makers = {
        "fused": lambda: _xgb_classifier(cfg.fuser_trees, cfg.fuser_max_depth, seed, cfg.threads,
                                         monotone=fuser_monotone(profile) if cfg.fuser_monotone else None),
        "fused_rf": lambda: _rf_classifier(cfg.fuser_rf_trees, 8, seed, cfg.threads, min_leaf=2),
    }
    for name, make in makers.items():
        state.val_scores[name] = stacked_scores(make, inputs["val"], va.y, cfg.fuser_folds,
                                                np.random.default_rng(seed))
        state.models[name] = _fit_with_bar(make(), inputs["val"], va.y, name, progress)
        state.test_scores[name] = _proba(state.models[name], inputs["test"])
    return state.lap("fusers", t)
