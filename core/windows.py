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


def make_windows(X: np.ndarray, hosts: Sequence[str], ts: Sequence[float], window: int) -> np.ndarray:
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

    def __init__(self, window: int, n_features: int, max_hosts: int = 4096):
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
        """Push flows in the given order; returns ``(n, T, F) float32`` windows."""
        out = np.empty((len(hosts), self.window, self.n_features), dtype=np.float32)
        for i, host in enumerate(hosts):
            out[i] = self.push(host, X[i])
        return out

    def forget(self, host: str) -> None:
        """Drop a host's buffer (e.g. after its incident ended)."""
        self._buffers.pop(host, None)
