"""Incidents, not one message per flow: per host ``new`` when scores cross the threshold, ``update`` while it goes on, ``end`` after a quiet period."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import KeysView, Optional

log = logging.getLogger(__name__)

SEVERITIES = ("low", "medium", "high", "critical")


def severity_for(max_score: float, threshold: float, malicious_flows: int) -> str:
    """Map an incident's strength to a severity.

    ``critical``: score at least 0.99 and 20+ malicious flows; ``high``: score at least
    halfway from the threshold to 1; ``medium``: 3+ malicious flows; else ``low``.
    """
    if max_score >= 0.99 and malicious_flows >= 20:
        return "critical"
    if max_score >= threshold + (1.0 - threshold) / 2:
        return "high"
    if malicious_flows >= 3:
        return "medium"
    return "low"


@dataclass
class _Incident:
    incident_id: str
    host: str
    first_seen: float
    last_seen: float
    last_malicious: float
    flows: int = 0
    malicious_flows: int = 0
    max_score: float = 0.0
    last_score: float = 0.0
    last_update_sent: float = 0.0
    peers: Counter = field(default_factory=Counter)
    community_id: Optional[str] = None
    updates: int = 0


class IncidentTracker:
    """Turns per-flow verdicts into incident messages.

    Time is flow time (packet or log timestamps), so pcap replay gives the same incidents
    as live capture of the same traffic.

    Parameters
    ----------
    gateway_id, model
        Copied into every message (``model`` is ``{"id": ..., "version": ...}``).
    threshold
        Fused-score threshold; a flow at or above it is malicious.
    update_interval_s
        At most one ``update`` per incident per this many seconds.
    quiet_period_s
        An incident ends when its host had no malicious flow for this long.
    min_malicious_flows
        Malicious flows of one host (within the quiet period) needed to open an incident.
    max_peers
        Remote endpoints listed in a message.
    """

    def __init__(self, gateway_id: str, model: dict, threshold: float, update_interval_s: float = 30.0,
                 quiet_period_s: float = 300.0, min_malicious_flows: int = 1, max_peers: int = 5):
        self.gateway_id = gateway_id
        self.model = model
        self.threshold = float(threshold)
        self.update_interval_s = update_interval_s
        self.quiet_period_s = quiet_period_s
        self.min_malicious_flows = max(1, int(min_malicious_flows))
        self.max_peers = max_peers
        self._open: dict[str, _Incident] = {}
        self._pending: dict[str, list] = {}  # host -> [count, first_ts] before an incident opens
        self.counts = Counter()

    @property
    def open_incidents(self) -> int:
        return len(self._open)

    @property
    def open_hosts(self) -> KeysView[str]:
        """Hosts with an open incident (a live view): only their benign flows need :meth:`observe`."""
        return self._open.keys()

    def observe(self, host: str, ts: float, score: float, peer: str = "", community_id: str | None = None) -> list[dict]:
        """Record one scored flow of ``host`` that ended at ``ts``; returns messages to publish."""
        messages: list[dict] = []
        malicious = score >= self.threshold
        inc = self._open.get(host)
        if inc is None:
            if not malicious:
                return messages
            pend = self._pending.get(host)
            if pend is None or ts - pend[1] > self.quiet_period_s:
                pend = self._pending[host] = [0, ts]
            pend[0] += 1
            if pend[0] < self.min_malicious_flows:
                return messages
            del self._pending[host]
            inc = _Incident(incident_id=self._new_id(host, ts), host=host, first_seen=pend[1], last_seen=ts,
                            last_malicious=ts, last_update_sent=ts)
            inc.malicious_flows = pend[0] - 1
            inc.flows = pend[0] - 1
            self._open[host] = inc
            self._add(inc, ts, score, malicious, peer, community_id)
            messages.append(self._message("new", inc))
            return messages
        self._add(inc, ts, score, malicious, peer, community_id)
        if ts - inc.last_update_sent >= self.update_interval_s and malicious:
            inc.last_update_sent = ts
            inc.updates += 1
            messages.append(self._message("update", inc))
        return messages

    def tick(self, now: float) -> list[dict]:
        """End incidents whose host has been quiet for ``quiet_period_s`` at time ``now``."""
        ended = [h for h, inc in self._open.items() if now - inc.last_malicious >= self.quiet_period_s]
        return [self._end(h, "quiet") for h in ended]

    def close_all(self, reason: str = "source ended") -> list[dict]:
        """End every open incident (the source ended or the agent stops)."""
        return [self._end(h, reason) for h in list(self._open)]

    # ----------------------------------------------------------------------------------------
    def _add(self, inc: _Incident, ts: float, score: float, malicious: bool, peer: str, community_id) -> None:
        inc.flows += 1
        inc.last_seen = max(inc.last_seen, ts)
        inc.last_score = float(score)
        if malicious:
            inc.malicious_flows += 1
            inc.last_malicious = max(inc.last_malicious, ts)
            inc.max_score = max(inc.max_score, float(score))
            if peer:
                inc.peers[peer] += 1
            if community_id:
                inc.community_id = community_id  # a string, or a callable computed only when published

    def _end(self, host: str, reason: str) -> dict:
        inc = self._open.pop(host)
        msg = self._message("end", inc)
        msg["reason"] = reason
        return msg

    def _new_id(self, host: str, ts: float) -> str:
        raw = f"{self.gateway_id}|{host}|{ts:.6f}".encode()
        return hashlib.sha1(raw).hexdigest()[:16]

    def _message(self, kind: str, inc: _Incident) -> dict:
        self.counts[kind] += 1
        return {
            "type": kind,
            "incident_id": inc.incident_id,
            "gateway_id": self.gateway_id,
            "host": inc.host,
            "first_seen": round(inc.first_seen, 6),
            "last_seen": round(inc.last_seen, 6),
            "flows": inc.flows,
            "malicious_flows": inc.malicious_flows,
            "score": round(inc.max_score, 6),
            "last_score": round(inc.last_score, 6),
            "threshold": round(self.threshold, 6),
            "severity": severity_for(inc.max_score, self.threshold, inc.malicious_flows),
            "model": self.model,
            "peers": [p for p, _ in inc.peers.most_common(self.max_peers)],
            "community_id": self._community_id(inc),
        }

    @staticmethod
    def _community_id(inc: _Incident) -> Optional[str]:
        if callable(inc.community_id):
            inc.community_id = inc.community_id()
        return inc.community_id
