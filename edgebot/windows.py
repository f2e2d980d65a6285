"""Per-host windows of flows: offline for training, a bounded ring buffer for the gateway.

A window is the last ``T`` flows of one originating host, oldest first, ending at one flow;
every flow gets the window that ends at it (left-padded with zero rows while the host has
fewer than ``T`` flows), so scores stay per flow. Offline and online windowing give identical
windows when the online buffer is fed each host's flows in start-time order.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from edgebot.errors import DataError
from edgebot.limits import MAX_HOSTS


def host_order(hosts: Sequence[str], ts: np.ndarray) -> np.ndarray:
    """Indices that sort flows by host, then start time (stable for ties).

    Returns
    -------
    np.ndarray
        ``(n,) int64`` permutation.
    """
    hosts_arr = np.asarray(hosts, dtype=object)
    _, host_ids = np.unique(hosts_arr.astype(str), return_inverse=True)
    return np.lexsort((np.arange(len(ts)), np.asarray(ts, dtype=np.float64), host_ids))


def make_windows(X: np.ndarray, hosts: Sequence[str], ts: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Build the window that ends at every flow.

    Parameters
    ----------
    X
        ``(n, F) float32`` features (scaled or not; windows copy rows as they are).
    hosts
        ``(n,)`` originating host of each flow.
    ts
        ``(n,)`` start time of each flow.
    window
        ``T``, flows per window.

    Returns
    -------
    np.ndarray
        ``(n, T, F) float32``; row ``i`` is the window ending at flow ``i`` (input order kept).
    """
    if window < 1:
        raise DataError(f"window length must be at least 1, got {window}")
    n, F = X.shape
    if len(hosts) != n or len(ts) != n:
        raise DataError("X, hosts and ts must have the same length")
    W = np.zeros((n, window, F), dtype=np.float32)
    if n == 0:
        return W
    order = host_order(hosts, np.asarray(ts))
    sorted_hosts = np.asarray(hosts, dtype=object)[order]
    # position of each sorted flow inside its host's run
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = sorted_hosts[1:] != sorted_hosts[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    pos_in_run = np.arange(n) - run_start
    Xs = X[order]
    Ws = np.zeros((n, window, F), dtype=np.float32)
    for lag in range(window):
        # slot window-1-lag holds the flow `lag` steps back
        valid = pos_in_run >= lag
        src = np.arange(n) - lag
        Ws[valid, window - 1 - lag] = Xs[src[valid]]
    W[order] = Ws
    return W


class HostWindows:
    """Online per-host ring buffers of the last ``T`` feature rows, with a cap on hosts.

    The least recently seen host is evicted when a new host would exceed ``max_hosts``;
    ``evictions`` counts them. Memory is bounded by ``max_hosts * T * F * 4`` bytes.
    """

    def __init__(self, window: int, n_features: int, max_hosts: int = MAX_HOSTS):
        if window < 1 or max_hosts < 1:
            raise DataError("window and max_hosts must be positive")
        self.window = window
        self.n_features = n_features
        self.max_hosts = max_hosts
        self.evictions = 0
        self._buffers: "OrderedDict[str, np.ndarray]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._buffers)

    def push(self, host: str, row: np.ndarray) -> np.ndarray:
        """Append one flow's features to ``host``'s buffer and return its window ``(T, F)``."""
        buf = self._buffers.get(host)
        if buf is None:
            if len(self._buffers) >= self.max_hosts:
                self._buffers.popitem(last=False)
                self.evictions += 1
            buf = np.zeros((self.window, self.n_features), dtype=np.float32)
            self._buffers[host] = buf
        else:
            self._buffers.move_to_end(host)
        buf[:-1] = buf[1:]
        buf[-1] = row
        return buf.copy()

    def push_many(self, hosts: Sequence[str], X: np.ndarray) -> np.ndarray:
        """Push flows in the given order; returns ``(n, T, F) float32`` windows.

        The same windows, buffers, recency order and evictions as calling :meth:`push` for
        each flow in turn. When the batch cannot evict a host (the usual case), it is done
        with one gather: every host's buffer followed by its new rows goes into one array,
        and each flow's window is the ``T`` rows that end at it.
        """
        n = len(hosts)
        T, F = self.window, self.n_features
        buffers = self._buffers
        # one pass in Python: a host id and a rank within the host for every flow
        host_ids: dict[str, int] = {}
        hid = [0] * n
        rank = [0] * n
        counts: list[int] = []
        last_flow: list[int] = []
        for i, host in enumerate(hosts):
            h = host_ids.get(host)
            if h is None:
                h = host_ids[host] = len(counts)
                counts.append(0)
                last_flow.append(i)
            hid[i] = h
            rank[i] = counts[h]
            counts[h] += 1
            last_flow[h] = i
        new_hosts = sum(1 for host in host_ids if host not in buffers)
        if n < 2 or len(buffers) + new_hosts > self.max_hosts:
            out = np.empty((n, T, F), dtype=np.float32)
            for i, host in enumerate(hosts):
                out[i] = self.push(host, X[i])
            return out
        H = len(counts)
        cnt = np.asarray(counts, dtype=np.int64)
        starts = np.zeros(H, dtype=np.int64)
        np.cumsum(cnt[:-1] + T, out=starts[1:])
        big = np.zeros((int(starts[-1] + T + cnt[-1]), F), dtype=np.float32)
        steps = np.arange(T, dtype=np.int64)
        names = list(host_ids)
        old = [(j, buffers.get(host)) for j, host in enumerate(names)]
        known = [j for j, buf in old if buf is not None]
        if known:
            big[(starts[known, None] + steps).ravel()] = np.stack([buf for _, buf in old if buf is not None]).reshape(-1, F)
        hid_a = np.asarray(hid, dtype=np.int64)
        row = starts[hid_a] + T + np.asarray(rank, dtype=np.int64)  # where each flow's row goes
        big[row] = X
        out = big[(row - (T - 1))[:, None] + steps]
        last = big[starts[:, None] + cnt[:, None] + steps]  # the new buffers: each host's last T rows
        # recency as if pushed one by one: hosts end ordered by their last flow in the batch;
        # each buffer owns its memory (a view would keep the whole batch array alive)
        for j in sorted(range(H), key=last_flow.__getitem__):
            host = names[j]
            buffers[host] = last[j].copy()
            buffers.move_to_end(host)
        return out

    def forget(self, host: str) -> None:
        """Drop a host's buffer (e.g. after its incident ended)."""
        self._buffers.pop(host, None)


def feature_sequences(X: np.ndarray) -> np.ndarray:
    """The ``feature-axis`` layout: each flow's ``F`` features as a length-``F`` sequence of one value.

    Parameters
    ----------
    X
        ``(n, F) float32`` scaled features.

    Returns
    -------
    np.ndarray
        ``(n, F, 1) float32`` (a view when ``X`` is already float32 and contiguous).
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"features must be (n, F), got shape {tuple(X.shape)}")
    return X[:, :, None]


def model_sequences(X: np.ndarray, sequence: str, hosts: Sequence[str] | None = None,
                    ts: Sequence[float] | None = None, window: int = 1) -> np.ndarray:
    """The networks' input for scaled flows under a profile's sequence layout (offline).

    Parameters
    ----------
    X
        ``(n, F) float32`` scaled features.
    sequence
        ``"host-windows"`` (needs ``hosts``, ``ts`` and ``window``; see :func:`make_windows`)
        or ``"feature-axis"`` (see :func:`feature_sequences`; hosts and time are not used).

    Returns
    -------
    np.ndarray
        ``(n, T, F)`` or ``(n, F, 1)`` float32.
    """
    if sequence == "feature-axis":
        return feature_sequences(X)
    if sequence != "host-windows":
        raise DataError(f"unknown sequence layout {sequence!r}; use host-windows or feature-axis")
    if hosts is None or ts is None:
        raise DataError("host windows need each flow's host and start time")
    return make_windows(X, hosts, ts, window)


def last_rows(W: np.ndarray, sequence: str) -> np.ndarray:
    """Each sequence's own flow as ``(n, F) float32``: a window's last row, or the feature axis unrolled."""
    if sequence == "feature-axis":
        return np.ascontiguousarray(W[:, :, 0])
    return np.ascontiguousarray(W[:, -1, :])
