"""Offline windows (training) and the online ring buffer (gateway) must agree exactly."""

from __future__ import annotations

import numpy as np
import pytest

from edgebot.errors import DataError
from edgebot.features import N_FEATURES, featurize
from edgebot.windows import HostWindows, make_windows


def _online(X, hosts, ts, window, max_hosts=10_000):
    order = sorted(range(len(ts)), key=lambda i: (ts[i], i))
    hw = HostWindows(window, X.shape[1], max_hosts=max_hosts)
    out = np.zeros((len(ts), window, X.shape[1]), dtype=np.float32)
    for i in order:
        out[i] = hw.push(hosts[i], X[i])
    return out, hw


def test_offline_equals_online_on_real_flows(iot23_flows):
    flows = iot23_flows
    X = featurize(flows)
    hosts = [f.orig_h for f in flows]
    ts = [f.ts for f in flows]
    for T in (1, 4, 8):
        offline = make_windows(X, hosts, ts, T)
        online, _ = _online(X, hosts, ts, T)
        np.testing.assert_array_equal(offline, online)


def test_window_ends_at_its_flow_and_is_left_padded():
    X = np.arange(5 * 2, dtype=np.float32).reshape(5, 2) + 1
    hosts = ["a", "b", "a", "a", "b"]
    ts = [0.0, 1.0, 2.0, 3.0, 4.0]
    W = make_windows(X, hosts, ts, 3)
    assert W.shape == (5, 3, 2)
    np.testing.assert_array_equal(W[0], [[0, 0], [0, 0], X[0]])
    np.testing.assert_array_equal(W[3], [X[0], X[2], X[3]])
    np.testing.assert_array_equal(W[4], [[0, 0], X[1], X[4]])


def test_out_of_order_input_is_windowed_by_start_time():
    X = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    W = make_windows(X, ["h", "h", "h"], [30.0, 10.0, 20.0], 3)
    np.testing.assert_array_equal(W[0, :, 0], [2.0, 3.0, 1.0])


def test_host_cap_evicts_least_recent_and_counts():
    hw = HostWindows(2, 1, max_hosts=2)
    hw.push("a", np.ones(1))
    hw.push("b", np.ones(1))
    hw.push("a", np.ones(1))
    hw.push("c", np.ones(1))  # evicts b, the least recently seen
    assert len(hw) == 2 and hw.evictions == 1
    w = hw.push("b", np.full(1, 5.0))
    np.testing.assert_array_equal(w[:, 0], [0.0, 5.0])  # b starts over
    assert hw.evictions == 2


def test_flood_of_hosts_stays_bounded():
    hw = HostWindows(8, N_FEATURES, max_hosts=100)
    row = np.zeros(N_FEATURES, dtype=np.float32)
    for i in range(5000):
        hw.push(f"10.{i // 256}.{i % 256}.1", row)
    assert len(hw) == 100
    assert hw.evictions == 4900


def test_bad_window_length():
    with pytest.raises(DataError):
        make_windows(np.zeros((1, 1), np.float32), ["a"], [0.0], 0)
