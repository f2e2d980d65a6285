"""Decision fusion: what the XGBoost fuser sees and how its trees become a score, identical on both sides.

The fuser's trees start from the hybrid's own opinion: the fuser is trained with XGBoost's
``base_margin`` set to the logit of the hybrid's probability, so its trees learn corrections
(from the anomaly score and the raw features) to the hybrid rather than a new decision from
scratch on the small validation split. A fuser trained from scratch there could overrule a
confident hybrid on flows unlike any validation row (measured: 148 Mirai 34-1 test flows with
hybrid 0.96-0.98 fused to 0.14, quick configuration, seed 0, the default training set). The
fuser file says which start it takes (:data:`BASE_MARGIN_ATTR`); a fuser without the attribute
(bundles built before) starts from XGBoost's ``base_score`` as before.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from edgebot.features import FEATURE_NAMES, ZEEK_PROFILE, FeatureProfile

#: Raw (scaled) features of a window's last flow that the fuser sees beside the model outputs
#: (the zeek profile's; every profile names its own, see :func:`fuser_input_names`).
FUSER_RAW_FEATURES: tuple[str, ...] = ZEEK_PROFILE.fuser_raw_features
FUSER_INPUT_NAMES: tuple[str, ...] = ("hybrid_prob", "anomaly_score") + FUSER_RAW_FEATURES


def fuser_input_names(profile: FeatureProfile = ZEEK_PROFILE) -> tuple[str, ...]:
    """Names of the fuser's inputs under a feature profile: the two model outputs, then raw features."""
    return ("hybrid_prob", "anomaly_score") + tuple(profile.fuser_raw_features)


def raw_feature_index(feature_names=FEATURE_NAMES, raw_features=FUSER_RAW_FEATURES) -> list[int]:
    """Column indices of the fuser's raw features in the featurizer's output."""
    names = list(feature_names)
    return [names.index(n) for n in raw_features if n in names]


def fuser_inputs(hybrid_prob: np.ndarray, anomaly_score: np.ndarray, last_rows: np.ndarray,
                 raw_index: list[int]) -> np.ndarray:
    """Stack the fuser's input matrix.

    Parameters
    ----------
    hybrid_prob
        ``(n,)`` CNN-LSTM probability of "malicious".
    anomaly_score
        ``(n,)`` autoencoder reconstruction error divided by its benign threshold
        (1.0 = at the threshold; higher = more anomalous).
    last_rows
        ``(n, F) float32`` scaled features of each window's last flow.
    raw_index
        columns of ``last_rows`` to include (see :func:`raw_feature_index`).

    Returns
    -------
    np.ndarray
        ``(n, 2 + len(raw_index)) float32``.
    """
    n = len(hybrid_prob)
    out = np.empty((n, 2 + len(raw_index)), dtype=np.float32)
    out[:, 0] = hybrid_prob
    out[:, 1] = anomaly_score
    out[:, 2:] = last_rows[:, raw_index]
    return out


#: Attribute of ``fuser.json`` (XGBoost's learner attributes) naming the fuser's base margin.
BASE_MARGIN_ATTR = "edgebot_base_margin"
#: The one base margin there is: the logit of the hybrid's probability (the fuser's input 0).
HYBRID_LOGIT = "logit(hybrid_prob)"
BASE_MARGINS: tuple[str, ...] = (HYBRID_LOGIT,)
#: The hybrid's probability is clipped to ``[eps, 1 - eps]`` before the logit (int8 outputs reach 0 and 1).
LOGIT_EPS = 1e-4


def hybrid_logit(hybrid_prob: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of the clipped probability, ``(n,) float32``."""
    p = np.clip(np.asarray(hybrid_prob, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p / (1.0 - p)).astype(np.float32)


def _known(kind: Optional[str]) -> Optional[str]:
    if kind is not None and kind not in BASE_MARGINS:
        raise ValueError(f"{BASE_MARGIN_ATTR} {kind!r} is not one this edgebot knows ({', '.join(BASE_MARGINS)})")
    return kind


def base_margin(kind: Optional[str], X: np.ndarray) -> Optional[np.ndarray]:
    """The margin the fuser's trees add to for its input matrix ``X``; None for XGBoost's base_score."""
    if _known(kind) is None:
        return None
    return hybrid_logit(np.asarray(X)[:, 0])  # HYBRID_LOGIT, the only one


def margin_kind(booster: Any) -> Optional[str]:
    """The fuser's base margin as its file records it (:data:`BASE_MARGIN_ATTR`), or None.

    Raises
    ------
    ValueError
        A value this edgebot does not know (a newer fuser).
    """
    return _known(booster.attr(BASE_MARGIN_ATTR))


def fused_probability(booster: Any, X: np.ndarray, kind: Optional[str] = None) -> np.ndarray:
    """The fuser's probability for input rows ``X`` (``xgboost.Booster`` or :class:`edgebot.trees.TreeEnsemble`).

    ``kind`` is the fuser's base margin (:func:`margin_kind`, read once by the caller).
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    margin = base_margin(kind, X)
    out = booster.inplace_predict(X) if margin is None else booster.inplace_predict(X, base_margin=margin)
    return np.asarray(out, dtype=np.float32).reshape(len(X))


def reconstruction_error(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Mean squared reconstruction error per row: ``(n, F), (n, F) -> (n,)``."""
    d = x.astype(np.float32) - x_hat.astype(np.float32)
    return np.mean(d * d, axis=1)
