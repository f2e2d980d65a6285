"""Binary detection metrics and thresholds in pure numpy (no scikit-learn needed).

Conventions: label 1 = malicious (positive), 0 = benign; a score is a number where higher
means more malicious; a flow is flagged when ``score >= threshold``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional

import numpy as np

from edgebot.errors import DataError
from edgebot.evaluate import binary_rates, rates_from_confusion

log = logging.getLogger(__name__)

#: Keys of one model's entry in ``metrics.json`` (pinned by a test; do not rename).
METRIC_KEYS: tuple[str, ...] = (
    "accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "fpr", "threshold", "confusion",
)


def _as_binary(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true).reshape(-1)
    if y.size and not np.isin(y, (0, 1)).all():
        raise DataError("labels must be 0 (benign) or 1 (malicious)")
    return y.astype(bool)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> list[list[int]]:
    """Confusion matrix ``[[tn, fp], [fn, tp]]`` (rows = truth, columns = prediction).

    Parameters
    ----------
    y_true, y_pred
        ``(n,)`` arrays of 0/1 (or bool).
    """
    return binary_rates(_as_binary(y_true), _as_binary(y_pred))["confusion"]


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve over every distinct score (scikit-learn's, every point kept).

    Returns
    -------
    fpr, tpr, thresholds
        ``(k + 1,)`` each; the first point is ``(0, 0)`` at threshold ``+inf`` and the points
        follow decreasing thresholds (flag when ``score >= threshold``).
    """
    from sklearn.metrics import roc_curve as _roc

    y = _as_binary(y_true)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if not y.any() or y.all():  # scikit-learn warns and returns NaN rates with one class
        distinct = np.unique(s)[::-1]
        zeros = np.zeros(len(distinct) + 1)
        ones = np.r_[0.0, np.ones(len(distinct))]
        return (ones, zeros, np.r_[np.inf, distinct]) if not y.any() else (zeros, ones, np.r_[np.inf, distinct])
    fpr, tpr, thr = _roc(y, s, drop_intermediate=False)
    thr = thr.astype(np.float64)
    thr[0] = np.inf
    return fpr, tpr, thr


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn; ties count one half). NaN with a single class."""
    from sklearn.metrics import roc_auc_score

    y = _as_binary(y_true)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(score, dtype=np.float64).reshape(-1)))


def pr_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall points over every distinct score, by decreasing threshold (scikit-learn's).

    Returns
    -------
    precision, recall, thresholds
        ``(k,)`` each (scikit-learn's artificial end point ``(1, 0)`` dropped).
    """
    from sklearn.metrics import precision_recall_curve

    y = _as_binary(y_true)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if not y.any():
        distinct = np.unique(s)[::-1]
        return np.zeros(len(distinct)), np.zeros(len(distinct)), distinct
    precision, recall, thr = precision_recall_curve(y, s, drop_intermediate=False)
    return precision[:-1][::-1], recall[:-1][::-1], thr[::-1].astype(np.float64)


def pr_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision (scikit-learn): ``sum_k (R_k - R_{k-1}) P_k``, step-wise, no interpolation.

    NaN when there is no positive row.
    """
    from sklearn.metrics import average_precision_score

    y = _as_binary(y_true)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, np.asarray(score, dtype=np.float64).reshape(-1)))


#: With groups, a capture's flows weigh together at most as much as this many flows.
GROUP_WEIGHT_CAP = 100


def threshold_for_fpr(benign_scores: np.ndarray, budget: float, groups: Optional[np.ndarray] = None,
                      group_cap: int = GROUP_WEIGHT_CAP) -> float:
    """Lowest threshold whose false-positive rate on ``benign_scores`` is at most ``budget``.

    With ``k = floor(budget * n)`` false positives allowed, the threshold sits just above the
    ``(k + 1)``-th highest benign score (ties stay below it), so at most ``k`` benign scores
    reach it.

    With ``groups`` (the capture or device of each row) a group's flows weigh together at most as
    much as ``group_cap`` flows: one large, very regular capture (thousands of identical flows)
    cannot pull the threshold down to where the small devices' unusual flows all pass it (the base
    rate per device is what an operator lives with), while a device of a few flows is not inflated
    into a noisy per-device rate either.

    Parameters
    ----------
    benign_scores
        ``(n,)`` scores of benign validation rows (never test rows).
    budget
        allowed false-positive rate in ``[0, 1]``.
    groups
        ``(n,)`` group of each row, or None (every row weighs the same).
    group_cap
        With ``groups``: the most flows a group's rows weigh together.
    """
    scores = np.asarray(benign_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise DataError("no benign validation rows to set a threshold on; add benign captures")
    if not 0.0 <= budget <= 1.0:
        raise DataError(f"the false-positive budget must be in [0, 1], got {budget}")
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    if groups is None:
        k = int(np.floor(budget * s.size + 1e-9))
    else:
        g = np.asarray(groups, dtype=object).reshape(-1)
        if g.shape != scores.shape:
            raise DataError(f"{g.size} groups for {scores.size} benign scores")
        _, inverse, counts = np.unique(g.astype(str), return_inverse=True, return_counts=True)
        per_group = np.minimum(counts, group_cap).astype(np.float64)
        weights = (per_group / counts)[inverse][order]
        allowed = budget * per_group.sum() + 1e-9
        k = int(np.searchsorted(np.cumsum(weights), allowed, side="right"))
    if k >= s.size:
        return float(s[-1])
    return float(np.nextafter(s[k], np.inf))


def threshold_in_gap(benign_scores: np.ndarray, malicious_scores: np.ndarray, budget: float,
                     groups: Optional[np.ndarray] = None, group_cap: int = GROUP_WEIGHT_CAP) -> float:
    """The budget's threshold (:func:`threshold_for_fpr`) moved to the middle of the gap above it.

    The lowest threshold within the false-positive budget sits right on the edge of the benign
    validation scores: a benign flow scored a little higher on another day or another device is
    flagged, while every malicious validation flow it catches may score far above it. Between that
    threshold ``lo`` and the lowest malicious validation score it catches ``hi`` every threshold
    has the same validation recall and at most its FPR; this returns their midpoint, in logit space
    when both are probabilities in ``(0, 1)`` (scores of these models spread in logits), else the
    arithmetic one. ``lo`` when nothing caught lies above it.

    Measured (benchmarks/FUSION.md): on the four IoT-23 captures, quick configuration, seed 1, the
    fused model's ``lo`` was 0.0216 and flagged 30 benign test flows (4.5%) scored 0.024-0.60
    while it caught every malicious one; its ROC AUC was 0.99999.

    Parameters
    ----------
    benign_scores, malicious_scores
        ``(n,)`` and ``(m,)`` validation scores (never test rows).
    budget, groups, group_cap
        as :func:`threshold_for_fpr`.
    """
    lo = threshold_for_fpr(benign_scores, budget, groups, group_cap)
    mal = np.asarray(malicious_scores, dtype=np.float64).reshape(-1)
    caught = mal[mal >= lo]
    if caught.size == 0 or float(caught.min()) <= lo:
        return lo
    hi = float(caught.min())
    if 0.0 < lo and hi < 1.0:
        a, b = math.log(lo / (1.0 - lo)), math.log(hi / (1.0 - hi))
        mid = 1.0 / (1.0 + math.exp(-(a + b) / 2.0))
    else:
        mid = (lo + hi) / 2.0
    return float(min(max(mid, lo), hi))


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Every metric of one model on one set, keys as :data:`METRIC_KEYS`.

    Parameters
    ----------
    y_true
        ``(n,)`` 0/1 labels.
    score
        ``(n,)`` scores, higher = more malicious.
    threshold
        flag when ``score >= threshold``.
    """
    y = _as_binary(y_true)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise DataError(f"y_true has {y.size} rows but score has {s.size}")
    cm = confusion(y, s >= threshold)
    out: dict = dict(rates_from_confusion(cm))
    out["roc_auc"] = roc_auc(y, s)
    out["pr_auc"] = pr_auc(y, s)
    out["threshold"] = float(threshold)
    out["confusion"] = cm
    return {k: out[k] for k in METRIC_KEYS}


def per_group(y: np.ndarray, groups: np.ndarray, scores: dict[str, np.ndarray], thresholds: dict[str, float],
               *, positives_only: bool) -> dict:
    """Recall (and FPR for groups with benign rows) of every model within each group of the test set."""
    out: dict[str, dict] = {}
    for group in sorted(set(groups.tolist())):
        if positives_only and not group:
            continue
        mask = groups == group
        mal, ben = mask & (y == 1), mask & (y == 0)
        entry: dict[str, Any] = {"flows": int(mask.sum()), "benign": int(ben.sum()), "malicious": int(mal.sum())}
        for name, s in scores.items():
            flagged = s >= thresholds[name]
            entry[name] = {
                "recall": float(flagged[mal].mean()) if mal.any() else None,
                "fpr": float(flagged[ben].mean()) if ben.any() else None,
            }
        out[group] = entry
    return out
