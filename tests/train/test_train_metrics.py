"""The trainer's pure-numpy metrics: a hand-made case, edge cases, and agreement with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebot.errors import DataError
from edgebot.train.metrics import (
    METRIC_KEYS,
    binary_metrics,
    confusion,
    pr_auc,
    roc_auc,
    roc_curve,
    threshold_for_fpr,
    threshold_in_gap,
)


def test_hand_made_case():
    # 4 benign, 4 malicious; threshold 0.5 flags 0.6, 0.7, 0.9 (malicious) and 0.55 (benign)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.55, 0.4, 0.6, 0.7, 0.9])
    m = binary_metrics(y, s, 0.5)
    assert list(m) == list(METRIC_KEYS)
    assert m["confusion"] == [[3, 1], [1, 3]]  # [[tn, fp], [fn, tp]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["fpr"] == pytest.approx(1 / 4)
    assert m["threshold"] == 0.5
    # pairs (malicious, benign) ranked correctly: 0.4 beats 3 of 4, the others beat all 4 -> 15/16
    assert m["roc_auc"] == pytest.approx(15 / 16)
    # ranking 0.9 M, 0.7 M, 0.6 M, 0.55 B, 0.4 M, ...: AP = (1 + 1 + 1 + 4/5) / 4
    assert m["pr_auc"] == pytest.approx((3 + 0.8) / 4)


def test_ties_count_half_in_roc_auc():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.5, 0.5])
    assert roc_auc(y, s) == pytest.approx(0.5)
    fpr, tpr, thr = roc_curve(y, s)
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0] and math.isinf(thr[0])


def test_threshold_is_inclusive():
    y = np.array([0, 1])
    s = np.array([0.2, 0.7])
    assert binary_metrics(y, s, 0.7)["confusion"] == [[1, 0], [0, 1]]
    assert binary_metrics(y, s, 0.7000001)["confusion"] == [[1, 0], [1, 0]]


def test_single_class_and_empty_denominators():
    y = np.zeros(5, dtype=int)
    m = binary_metrics(y, np.linspace(0, 1, 5), 0.5)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["fpr"] == pytest.approx(3 / 5)


def test_bad_labels_and_shapes():
    with pytest.raises(DataError):
        confusion([0, 2], [0, 1])
    with pytest.raises(DataError):
        binary_metrics(np.array([0, 1]), np.array([0.5]), 0.5)


def test_threshold_for_fpr_hits_the_budget():
    benign = np.arange(100, dtype=float)  # 0..99
    t = threshold_for_fpr(benign, 0.01)
    assert 98 < t <= 99  # only 99 is flagged: FPR 1/100
    assert np.mean(benign >= t) == pytest.approx(0.01)
    t0 = threshold_for_fpr(benign, 0.0)
    assert np.mean(benign >= t0) == 0.0
    # ties are never split: 10 benign at the same top score cannot fit a 5% budget
    tied = np.r_[np.zeros(90), np.ones(10)]
    t = threshold_for_fpr(tied, 0.05)
    assert np.mean(tied >= t) == 0.0
    with pytest.raises(DataError, match="no benign"):
        threshold_for_fpr(np.array([]), 0.01)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 20)), min_size=2, max_size=80),
    st.floats(0.0, 0.3),
)
def test_agrees_with_scikit_learn(rows, budget):
    sk = pytest.importorskip("sklearn.metrics")
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=float) / 20.0  # many ties
    if y.min() == y.max():
        return
    assert roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s))
    assert pr_auc(y, s) == pytest.approx(sk.average_precision_score(y, s))
    t = float(np.median(s))
    m = binary_metrics(y, s, t)
    pred = (s >= t).astype(int)
    assert m["confusion"] == sk.confusion_matrix(y, pred, labels=[0, 1]).tolist()
    assert m["f1"] == pytest.approx(sk.f1_score(y, pred, zero_division=0))
    assert m["precision"] == pytest.approx(sk.precision_score(y, pred, zero_division=0))
    # the budget threshold never exceeds the budget on the rows it was set on, and is the lowest such
    benign = s[y == 0]
    thr = threshold_for_fpr(benign, budget)
    assert np.mean(benign >= thr) <= budget + 1e-12
    lower = np.unique(benign[benign < thr])
    if lower.size:
        assert np.mean(benign >= lower.max()) > budget
    # the threshold in the gap flags the same malicious rows and no more benign ones
    gap = threshold_in_gap(benign, s[y == 1], budget)
    assert gap >= thr and np.array_equal(s[y == 1] >= gap, s[y == 1] >= thr)
    assert np.mean(benign >= gap) <= np.mean(benign >= thr)


def test_threshold_in_gap_keeps_validation_recall_and_leaves_the_benign_edge():
    benign = np.r_[np.linspace(0.001, 0.02, 99), 0.5]  # one benign outlier, within a 1% budget
    malicious = np.r_[0.9, np.linspace(0.95, 0.999, 50)]
    lo = threshold_for_fpr(benign, 0.01)
    t = threshold_in_gap(benign, malicious, 0.01)
    assert lo < 0.021 and lo < t < 0.9
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    assert logit(t) == pytest.approx((logit(lo) + logit(0.9)) / 2)  # the middle of the gap, in logits
    assert np.mean(malicious >= t) == np.mean(malicious >= lo) == 1.0  # validation recall kept
    assert np.mean(benign >= t) <= np.mean(benign >= lo)
    # a malicious score right at the edge leaves no gap; nothing caught leaves the budget's threshold
    assert threshold_in_gap(benign, np.r_[lo, 0.99], 0.01) == lo
    assert threshold_in_gap(benign, np.array([0.0001]), 0.01) == lo
    # scores outside (0, 1) take the arithmetic middle
    t = threshold_in_gap(np.arange(100.0), np.array([200.0, 300.0]), 0.01)
    assert t == pytest.approx((threshold_for_fpr(np.arange(100.0), 0.01) + 200.0) / 2)


def test_threshold_per_group_caps_what_a_large_capture_weighs():
    import numpy as np

    from edgebot.train.metrics import threshold_for_fpr

    big = np.linspace(0.0, 0.1, 10_000)  # one large, regular capture: everything low
    small = np.linspace(0.2, 0.95, 40)  # a small device with unusual flows
    scores = np.concatenate([big, small])
    groups = np.array(["big"] * len(big) + ["small"] * len(small))
    pooled = threshold_for_fpr(scores, 0.01)
    weighted = threshold_for_fpr(scores, 0.01, groups)
    assert pooled < 0.2  # pooled, the big capture's 10,000 flows let the small device's flows all pass
    # weighted (the big capture counts as 100 flows), the budget of 1.4 flows spends one of the small device's 40
    assert 0.9 < weighted <= 0.95 and np.sum(scores[groups == "small"] >= weighted) == 1


def test_the_trainer_places_every_threshold_by_its_option():
    """``TrainConfig.threshold_in_gap`` reaches every model's threshold; the autoencoder keeps its own."""
    from edgebot.train.data import PartArrays
    from edgebot.train.fit import MODEL_NAMES, TrainConfig, _set_thresholds, _Trained

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200, dtype=np.int8), np.ones(100, dtype=np.int8)]
    n = len(y)
    va = PartArrays(np.zeros((n, 2, 1), np.float32), np.zeros((n, 1), np.float32), y, np.array([""] * n),
                    np.array(["h"] * n), np.array(["a"] * 150 + ["b"] * 150), np.arange(n, dtype=np.float64))
    state = _Trained(ae_threshold=0.123)
    for name in MODEL_NAMES:  # benign low, malicious high: a wide gap
        state.val_scores[name] = np.r_[rng.uniform(0.0, 0.05, 200), rng.uniform(0.9, 1.0, 100)].astype(np.float32)
    assert TrainConfig().threshold_in_gap is False  # measured mixed (benchmarks/FUSION.md): off by default
    _set_thresholds(state, va, 0.01, per_capture=True, in_gap=False)
    edge = dict(state.thresholds)
    _set_thresholds(state, va, 0.01, per_capture=True, in_gap=True)
    for name in MODEL_NAMES:
        if name == "autoencoder":
            assert state.thresholds[name] == edge[name] == 0.123
            continue
        assert edge[name] < 0.05 < state.thresholds[name] < 0.9  # from the benign edge into the gap
        scores = state.val_scores[name]
        assert np.all(scores[y == 1] >= state.thresholds[name])
