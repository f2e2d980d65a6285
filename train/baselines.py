"""The baseline models of a run: Random Forest and XGBoost on single flows (each window's last flow).

They set the bar the networks and the fuser must clear, and their makers and fitting helpers are
the ones every tree model of a run uses (the fusers too): seeded, ``threads`` jobs, a progress
bar, scores as the probability of the malicious class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from edgebot.train.data import PartArrays
    from edgebot.train.fit import TrainConfig, _Trained

#: The baselines, in report order.
BASELINE_NAMES = ("random_forest", "xgboost")


def _xgb_classifier(trees: int, depth: int, seed: int, threads: int, monotone: Optional[tuple] = None) -> Any:
    from edgebot.lean import import_xgboost_sklearn

    xgb = import_xgboost_sklearn()
    extra = {"monotone_constraints": "(" + ",".join(str(int(c)) for c in monotone) + ")"} if monotone else {}
    return xgb.XGBClassifier(
        n_estimators=trees, max_depth=depth, learning_rate=0.1, subsample=0.9, colsample_bytree=0.9,
        tree_method="hist", objective="binary:logistic", eval_metric="logloss", random_state=seed,
        n_jobs=threads, **extra,
    )


def _rf_classifier(trees: int, depth: Optional[int], seed: int, threads: int, min_leaf: int = 1) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=trees, max_depth=depth, min_samples_leaf=min_leaf,
                                  random_state=seed, n_jobs=threads)


def _fit_with_bar(model: Any, X: np.ndarray, y: np.ndarray, name: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    with tqdm(total=1, desc=f"training {name}", unit="model", disable=not progress, leave=False) as bar:
        model.fit(X, y)
        bar.update(1)
    return model


def _proba(model: Any, X: np.ndarray) -> np.ndarray:
    if len(X) == 0:
        return np.zeros(0, dtype=np.float32)
    return model.predict_proba(X)[:, 1].astype(np.float32)


def _fit_baselines(state: _Trained, tr: PartArrays, va: PartArrays, te: PartArrays, cfg: TrainConfig, seed: int,
                   progress: bool, t: float) -> float:
    """Random Forest and XGBoost on single flows (each window's last flow)."""
    makers: dict[str, Callable[[], Any]] = {
        "random_forest": lambda: _rf_classifier(cfg.rf_trees, cfg.rf_max_depth, seed, cfg.threads),
        "xgboost": lambda: _xgb_classifier(cfg.xgb_trees, cfg.xgb_max_depth, seed, cfg.threads),
    }
    for name, make in makers.items():
        model = _fit_with_bar(make(), tr.last, tr.y, name, progress)
        state.models[name] = model
        state.val_scores[name], state.test_scores[name] = _proba(model, va.last), _proba(model, te.last)
        t = state.lap(name, t)
    return t


class FromHybrid:
    """An XGBoost fuser whose trees add to the hybrid's logit (:data:`edgebot.fusion.HYBRID_LOGIT`).

    Wraps an ``XGBClassifier`` (the Dask trainer's ``BoosterModel`` does the same with a margin of
    its own): ``fit`` and ``predict_proba`` pass the logit of input column 0 (the hybrid's probability) as XGBoost's
    ``base_margin``, and the booster records it in :data:`edgebot.fusion.BASE_MARGIN_ATTR`, so
    the converter and the gateway score it the same way.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, X: np.ndarray, y: np.ndarray) -> "FromHybrid":
        from edgebot.fusion import BASE_MARGIN_ATTR, HYBRID_LOGIT, base_margin

        self.model.fit(X, y, base_margin=base_margin(HYBRID_LOGIT, X))
        self.model.get_booster().set_attr(**{BASE_MARGIN_ATTR: HYBRID_LOGIT})
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from edgebot.fusion import HYBRID_LOGIT, base_margin

        return self.model.predict_proba(X, base_margin=base_margin(HYBRID_LOGIT, X))

    def get_booster(self) -> Any:
        return self.model.get_booster()

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.model.feature_importances_
