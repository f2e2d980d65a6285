"""Trainer data path without TensorFlow: splits, windows per part, bad input refused cleanly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebot.errors import DataError
from edgebot.features import MinMaxScaler
from edgebot.train.data import (
    FlowTable,
    load_flows,
    make_split,
    parse_split,
    part_arrays,
    subsample_per_capture,
)
from conftest_train import BUNDLED, HONEYPOT_4_1, MIRAI_34_1, MIRAI_44_1


@pytest.fixture(scope="module")
def table() -> FlowTable:
    return load_flows(BUNDLED + [MIRAI_44_1], progress=False)


def _assert_partition(split, n):
    parts = np.concatenate([split.train, split.val, split.test])
    assert len(parts) == len(np.unique(parts)) == n


def _assert_temporal(table, split):
    """No training (or validation) flow of a capture starts after any test flow of that capture."""
    for capture in np.unique(table.captures):
        in_capture = table.captures == capture
        tr = table.ts[np.intersect1d(split.train, np.flatnonzero(in_capture))]
        va = table.ts[np.intersect1d(split.val, np.flatnonzero(in_capture))]
        te = table.ts[np.intersect1d(split.test, np.flatnonzero(in_capture))]
        if len(te):
            assert np.concatenate([tr, va]).max(initial=-np.inf) <= te.min(), capture
        if len(va):
            assert tr.max(initial=-np.inf) <= va.min(), capture


def test_load_keeps_labels_families_and_hosts(table):
    assert len(table) == 23145 + 10403 + 452 + 1374 + 237
    assert set(np.unique(table.captures)) == {"34-1", "8-1", "4-1", "5-1", "44-1"}
    assert table.capture_families() == {"34-1": "Mirai", "44-1": "Mirai", "8-1": "Hakai", "4-1": "", "5-1": ""}
    assert int(table.y.sum()) == 21222 + 8222 + 26
    # hosts are keyed by capture, so equal addresses in two captures never share a window
    assert all(h.startswith(c + "|") for h, c in zip(table.hosts[:50], table.captures[:50]))
    assert [f["path"] for f in table.files][0] == MIRAI_34_1.name and len(table.files[0]["sha256"]) == 64


def test_temporal_split_never_trains_on_the_future(table):
    split = make_split(table, "temporal")
    _assert_partition(split, len(table))
    _assert_temporal(table, split)
    assert not split.leaky
    for capture in np.unique(table.captures):
        n = np.sum(table.captures == capture)
        n_test = np.sum(table.captures[split.test] == capture)
        assert abs(n_test - 0.2 * n) <= 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 30), st.integers(0, 1)), min_size=12, max_size=120))
def test_temporal_property_on_random_tables(rows):
    n = len(rows)
    table = FlowTable(
        X=np.zeros((n, 3), np.float32), y=np.array([r[2] for r in rows], np.int8),
        ts=np.array([r[1] for r in rows], float), hosts=np.array([f"{r[0]}|h" for r in rows], object),
        captures=np.array([r[0] for r in rows], object), families=np.array([""] * n, object),
    )
    try:
        split = make_split(table, "temporal")
    except DataError:
        return  # a part without a class the models need: refused, which is fine here
    _assert_partition(split, n)
    _assert_temporal(table, split)


def test_windows_never_straddle_the_split(table):
    split = make_split(table, "temporal")
    scaler = MinMaxScaler().fit(table.X[split.train])
    test = part_arrays(table, split.test, scaler, 8)
    order = np.lexsort((np.arange(len(test.ts)), test.ts))
    first_seen = {}
    for i in order:
        first_seen.setdefault(test.hosts[i], i)
    for i in first_seen.values():
        # the first test flow of a host: every earlier slot is padding, never a training flow
        assert not test.windows[i, :-1].any()
        assert np.array_equal(test.windows[i, -1], test.last[i])


def test_stratified_split_is_the_papers_and_is_marked_leaky(table):
    split = make_split(table, "stratified", seed=3)
    _assert_partition(split, len(table))
    assert split.leaky and split.describe(table)["leaky"]
    rate = table.y.mean()
    assert table.y[split.test].mean() == pytest.approx(rate, abs=0.002)
    assert len(split.test) == pytest.approx(0.2 * len(table), abs=2)
    again = make_split(table, "stratified", seed=3)
    assert np.array_equal(split.test, again.test)


@pytest.mark.parametrize("name, captures, matched", [
    ("Hakai", ["8-1"], "family"),
    ("mirai", ["34-1", "44-1"], "family"),
    ("34-1", ["34-1"], "scenario"),
    ("CTU-IoT-Malware-Capture-8-1", ["8-1"], "scenario"),
    (MIRAI_44_1.name, ["44-1"], "scenario"),
])
def test_leave_out_keeps_the_name_out_of_training(table, name, captures, matched):
    split = make_split(table, f"leave-out:{name}")
    assert sorted(np.unique(table.captures[split.test])) == captures
    assert not np.isin(table.captures[np.concatenate([split.train, split.val])], captures).any()
    assert split.left_out == {"name": name, "matched": matched, "captures": captures}
    assert split.describe(table)["left_out"]["captures"] == captures


def test_leave_out_and_split_errors(table):
    with pytest.raises(DataError, match="matches no scenario or family.*Hakai"):
        make_split(table, "leave-out:Gafgyt")
    for bad in ("random", "leave-out:", "temporal:x"):
        with pytest.raises(DataError, match="unknown split"):
            parse_split(bad)
    only_mirai = table.take(np.flatnonzero(np.isin(table.captures, ["34-1", "4-1"])))
    with pytest.raises(DataError, match="no malicious rows"):
        make_split(only_mirai, "leave-out:Mirai")


def test_subsample_caps_each_capture_and_spans_its_time(table):
    keep = subsample_per_capture(table, 1000)
    small = table.take(keep)
    for capture in np.unique(table.captures):
        n = np.sum(table.captures == capture)
        assert np.sum(small.captures == capture) == min(n, 1000)
        full_ts, kept_ts = table.ts[table.captures == capture], small.ts[small.captures == capture]
        assert kept_ts.min() == full_ts.min() and kept_ts.max() == full_ts.max()


# -------------------------------------------------------------------------- bad input, whole run

def _assert_refused(tmp_path, paths, match, **kwargs):
    from edgebot.train import train_run

    out = tmp_path / "run"
    with pytest.raises(DataError, match=match) as info:
        train_run([str(p) for p in paths], out, progress=False, **kwargs)
    assert "\n" not in str(info.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temporary dir either
    return str(info.value)


def test_no_benign_rows(tmp_path, crafted_files):
    msg = _assert_refused(tmp_path, [crafted_files["malicious_only"]], "no benign rows")
    assert "autoencoder" in msg and "add a benign capture" in msg


def test_single_class(tmp_path, crafted_files):
    _assert_refused(tmp_path, [crafted_files["benign_only"], HONEYPOT_4_1], "single class")


def test_too_few_flows_for_one_window(tmp_path, crafted_files):
    _assert_refused(tmp_path, [crafted_files["short_mixed"]], "too few flows for one window", window=8)


def test_unknown_split_and_unmatched_leave_out(tmp_path):
    _assert_refused(tmp_path, [HONEYPOT_4_1], "unknown split", split="random")
    _assert_refused(tmp_path, [MIRAI_44_1, HONEYPOT_4_1], "matches no scenario or family", split="leave-out:Hakai")


def test_existing_out_needs_force(tmp_path):
    from edgebot.train import train_run

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="--force"):
        train_run([str(HONEYPOT_4_1)], out, progress=False)
    with pytest.raises(DataError, match="not an edgebot run dir"):
        train_run([str(HONEYPOT_4_1)], out, progress=False, force=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_exit_code_2_without_traceback(tmp_path, crafted_files):
    click_testing = pytest.importorskip("click.testing")
    from edgebot.cli import main

    out = tmp_path / "run"
    result = click_testing.CliRunner().invoke(main, ["train", str(crafted_files["malicious_only"]), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "no benign rows" in result.output and "Traceback" not in result.output
    assert not out.exists()
