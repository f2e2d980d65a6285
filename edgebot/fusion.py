"""Decision fusion inputs: what the XGBoost fuser sees, computed identically on both sides."""

from __future__ import annotations

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


def reconstruction_error(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Mean squared reconstruction error per row: ``(n, F), (n, F) -> (n,)``."""
    d = x.astype(np.float32) - x_hat.astype(np.float32)
    return np.mean(d * d, axis=1)
