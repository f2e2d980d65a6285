"""Bench inputs: seeded synthetic flows, the flows of a pcap, scaled windows, a decompressed copy of a capture."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgebot.errors import EdgebotError
from edgebot.readers.common import compression_of, open_binary


def synthetic_flows(n: int, seed: int = 0) -> list:
    """``n`` seeded, plausible flow records (a few hosts, TCP/UDP, Zeek states and histories)."""
    from edgebot.flow import FlowRecord

    rng = np.random.default_rng(seed)
    states = ("S0", "SF", "REJ", "S1", "OTH", "RSTO")
    histories = ("S", "ShAdDaFf", "Sr", "ShAdDa", "D", "ShR")
    flows = []
    ts = 1_545_000_000.0
    for _ in range(n):
        ts += float(rng.exponential(0.05))
        tcp = rng.random() < 0.8
        k = int(rng.integers(len(states)))
        pk_o, pk_r = int(rng.integers(1, 20)), int(rng.integers(0, 20))
        flows.append(FlowRecord(
            ts=ts, orig_h=f"192.168.1.{int(rng.integers(2, 12))}", orig_p=int(rng.integers(1024, 65535)),
            resp_h=f"10.0.{int(rng.integers(0, 255))}.{int(rng.integers(1, 255))}",
            resp_p=int(rng.choice([23, 80, 443, 2323, 6667, 53, 123])), proto="tcp" if tcp else "udp",
            duration=float(rng.exponential(2.0)), orig_bytes=int(rng.integers(0, 5000)),
            resp_bytes=int(rng.integers(0, 50000)), conn_state=states[k], history=histories[k] if tcp else "Dd",
            orig_pkts=pk_o, orig_ip_bytes=pk_o * 60 + int(rng.integers(0, 5000)),
            resp_pkts=pk_r, resp_ip_bytes=pk_r * 60 + int(rng.integers(0, 50000)),
        ))
    return flows


def pcap_flows(pcap: str | os.PathLike) -> list:
    """Every flow the gateway meter makes of a pcap (start-time order)."""
    from edgebot.edge.sources.pcap import PcapSource

    source = PcapSource(pcap)
    try:
        flows = [f for f in source if f is not None]
    finally:
        source.close()
    flows.sort(key=lambda f: f.ts)
    return flows


def bench_windows(bundle: Any, flows: list, n: int) -> np.ndarray:
    """``(n, T, F) float32`` scaled windows of ``flows`` (cycled when there are fewer)."""
    from edgebot.features import featurize
    from edgebot.windows import make_windows

    X = bundle.scale(featurize(flows))
    W = make_windows(X, [f.orig_h for f in flows], np.array([f.ts for f in flows]), bundle.window)
    if len(W) == 0:
        raise EdgebotError("no flows to build benchmark windows from")
    reps = -(-n // len(W))
    return np.ascontiguousarray(np.concatenate([W] * reps)[:n]) if reps > 1 else np.ascontiguousarray(W[:n])


def decompressed_copy(pcap: Path, workdir: Path) -> Path:
    """``pcap`` itself when uncompressed, else a decompressed copy in ``workdir``."""
    if compression_of(pcap) is None:
        return pcap
    name = pcap.name
    for ext in (".xz", ".gz", ".bz2"):
        name = name[: -len(ext)] if name.endswith(ext) else name
    dest = workdir / name
    with open_binary(pcap) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return dest
