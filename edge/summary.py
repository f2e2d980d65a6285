"""What one run of the agent did: :class:`AgentSummary`, the verdict-latency ring and RSS (percentiles: :mod:`edgebot.timing`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


class LatencyRing:
    """The latest ``size`` latencies in milliseconds, in a fixed numpy ring (no per-sample objects)."""

    def __init__(self, size: int):
        self._buf = np.zeros(size, dtype=np.float64)
        self._n = 0

    def extend(self, handed_over: list[float], done: float) -> None:
        """Add ``done - t`` (seconds, as ms) for every hand-over time ``t``."""
        k = len(handed_over)
        if not k:
            return
        size = len(self._buf)
        vals = (done - np.asarray(handed_over[-size:], dtype=np.float64)) * 1000.0
        start = self._n % size
        end = start + len(vals)
        if end <= size:
            self._buf[start:end] = vals
        else:
            cut = size - start
            self._buf[start:] = vals[:cut]
            self._buf[: end - size] = vals[cut:]
        self._n += k

    def values(self) -> np.ndarray:
        return self._buf[: min(self._n, len(self._buf))]


def current_rss_mb() -> float:
    """Resident set size of this process in MB (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class AgentSummary:
    """What one run of the agent did; printed at the end and returned to callers."""

    source: str = ""
    flows: int = 0
    packets: int = 0
    seconds: float = 0.0
    incidents: dict = field(default_factory=dict)
    flagged_hosts: dict = field(default_factory=dict)  # host -> {"score", "first_seen", "flows", "malicious_flows"}
    verdict_latency_ms: dict = field(default_factory=dict)
    evictions: dict = field(default_factory=dict)
    sink: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)
    source_stats: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    stopped_by_signal: bool = False

    @property
    def flows_per_s(self) -> float:
        return self.flows / self.seconds if self.seconds > 0 else 0.0

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "source": self.source, "flows": self.flows, "packets": self.packets, "seconds": self.seconds,
            "flows_per_s": self.flows_per_s, "packets_per_s": self.packets_per_s, "incidents": self.incidents,
            "flagged_hosts": self.flagged_hosts, "verdict_latency_ms": self.verdict_latency_ms,
            "evictions": self.evictions, "evidence": self.evidence, "sink": self.sink, "source_stats": self.source_stats,
            "peak_rss_mb": self.peak_rss_mb, "stopped_by_signal": self.stopped_by_signal,
        }

    def format(self) -> str:
        lat = self.verdict_latency_ms
        lines = [
            f"source            {self.source}",
            f"flows scored      {self.flows:,} in {self.seconds:.2f} s ({self.flows_per_s:,.0f} flows/s"
            + (f", {self.packets_per_s:,.0f} packets/s)" if self.packets else ")"),
            f"incidents         new {self.incidents.get('new', 0)}, update {self.incidents.get('update', 0)}, "
            f"end {self.incidents.get('end', 0)}",
        ]
        for host, h in sorted(self.flagged_hosts.items()):
            lines.append(f"  flagged {host:<15} score {h['score']:.3f}  first seen {_iso(h['first_seen'])}  "
                         f"flows {h['flows']} ({h['malicious_flows']} malicious)")
        if lat:
            lines.append(f"flow end->verdict p50 {lat.get('p50', 0):.1f} ms, p95 {lat.get('p95', 0):.1f} ms")
        ev = {k: v for k, v in self.evictions.items() if v}
        if ev:
            lines.append(f"evictions         {ev}")
        if self.sink:
            lines.append(f"sink              {self.sink}")
        lines.append(f"peak RSS          {self.peak_rss_mb:.0f} MB")
        return "\n".join(lines)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"

