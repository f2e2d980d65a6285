"""Timing of repeated calls and their statistics: p50/p95/p99 per call, items per second.

One place for the bench (``edgebot.edge.bench`` and its TensorFlow worker
``edgebot.convert.bench_worker``) and the agent's verdict-latency summary.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

#: Keys of one latency measurement.
STAT_KEYS: tuple[str, ...] = ("batch", "calls", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "per_s", "us_per_item")


def call_stats(seconds: Sequence[float], batch: int) -> dict:
    """Summarize per-call times.

    Parameters
    ----------
    seconds
        Wall time of each call, in seconds.
    batch
        Items (windows or flows) per call.

    Returns
    -------
    dict
        :data:`STAT_KEYS`: ``p50_ms``/``p95_ms``/``p99_ms``/``mean_ms`` per call,
        ``per_s`` items per second at the median call, ``us_per_item`` at the median.
    """
    arr = np.asarray(seconds, dtype=np.float64) * 1000.0
    if arr.size == 0:
        raise ValueError("no timings to summarize")
    p = percentiles(arr)
    p50, p95, p99 = p["p50"], p["p95"], p["p99"]
    return {
        "batch": int(batch), "calls": int(arr.size),
        "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "mean_ms": float(arr.mean()),
        "per_s": batch / (p50 / 1000.0) if p50 > 0 else 0.0,
        "us_per_item": p50 * 1000.0 / batch,
    }


def time_calls(fn: Callable[[], Any], repeat: int, warmup: Optional[int] = None) -> list[float]:
    """Wall time in seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones.

    The garbage collector is paused while timing (a collection would land on one call).
    """
    warmup = max(2, min(20, repeat // 10)) if warmup is None else warmup
    for _ in range(warmup):
        fn()
    clock = time.perf_counter
    out = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t = clock()
            fn()
            out.append(clock() - t)
    finally:
        if enabled:
            gc.enable()
    return out


def percentiles(values: Sequence[float] | np.ndarray, qs: Sequence[int] = (50, 95, 99),
                empty: Optional[float] = 0.0) -> dict[str, Any]:
    """``{"p50": .., "p95": .., "p99": ..}`` of ``values`` in their unit, ``empty`` for each when there are none."""
    if len(values) == 0:
        return {f"p{q}": empty for q in qs}
    p = np.percentile(np.asarray(values, dtype=np.float64), list(qs))
    return {f"p{q}": float(v) for q, v in zip(qs, p)}


def percentiles_ms(values_ms: Sequence[float]) -> dict:
    """``{"p50": .., "p95": .., "p99": ..}`` of values already in milliseconds (None when empty)."""
    return percentiles(values_ms, empty=None)
