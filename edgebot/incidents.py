"""Evidence before an incident: per host, flagged flows accumulate evidence over a time window; a rule opens it.

One implementation for ``edgebot run``, ``edgebot eval`` and the detection study. A flow is
*flagged* when its fused score reaches the host's threshold (the bundle's, or the higher one the
site profile learned for that device) and *confident* when it reaches most of the way from that
threshold to 1. Flagged flows of a host feed its :class:`HostEvidence` over ``window_s`` seconds
of flow time; an incident opens when one of the rules of :class:`EvidenceRule` fires:

``confident``
    ``confident_flows`` confident flows to one peer within the window, at least ``confident_share``
    of the host's flows (a C&C channel, an exfiltration; not three odd flows of a busy host, nor a
    booting device's first contact with each of its clouds).
``scan``
    flagged flows to ``scan_destinations`` distinct addresses, or ``scan_ports`` distinct ports
    of one address, within the window, most of them failed (a horizontal or vertical scan).
``flood``
    flagged flows sustained at ``flood_rate`` per second (a leaky bucket of ``flood_burst``).
``retry``
    failed connections of the host to one peer (``ip:port``) sustained at ``retry_rate`` per
    second, a leaky bucket of ``retry_burst``: a reconnect storm to an unreachable or refusing
    C&C. Unlike the other rules it counts failed flows whatever their score (Slips' "multiple
    reconnection attempts"): the bar sits far above what the benign devices of the bundled data
    reach (see benchmarks/DETECTION.md).
``beacon``
    ``beacon_flows`` flagged flows to one peer at regular intervals (coefficient of variation of
    the gaps at most ``beacon_jitter``), well above the threshold.
``oneway``
    one flow to a global address that its peer never answered, sustaining ``oneway_pps`` packets
    per second for at least :data:`edgebot.evidence.ONEWAY_MIN_S` (a UDP or ICMP flood from the
    host), whatever its score. The bar sits far from both sides of the bundled data (see
    docs/trust.md): the fastest unanswered benign flow reaches 7.6 packets/s, the slowest flood 764.

Each rule's measure divided by its bar is its *strength*; an incident opens at strength 1, or,
while the site is still learning, only at ``high_confidence`` (high-confidence evidence). The
messages say which rules fired and with which measures. Everything is bounded: hosts with
pending evidence, open incidents and peers per incident have caps; what is evicted or dropped is
counted in :attr:`IncidentTracker.events`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, KeysView, Optional, Protocol, Union

from edgebot.evidence import (  # noqa: F401 - re-exported: the rule and its evidence live there
    FAILED_STATES,
    RULES,
    SEVERITIES,
    UNATTRIBUTABLE,
    EvidenceRule,
    HostEvidence,
    _Peer,
)

log = logging.getLogger(__name__)

#: A flow's community id, or a callable that computes it only when an incident needs it.
CommunityId = Union[str, Callable[[], Optional[str]], None]

class DeviceThresholds(Protocol):
    """What the tracker asks of a site profile (see :class:`edgebot.site.SiteProfile`)."""

    def threshold(self, host: str) -> float: ...

    def learning(self, host: str, ts: float) -> bool: ...

    def is_usual_peer(self, host: str, peer: str, ts: float) -> bool: ...


@dataclass
class _Incident:
    incident_id: str
    host: str
    first_seen: float
    opened: float
    last_seen: float
    last_flagged: float
    threshold: float
    during_learning: bool
    flows: int = 0
    flagged_flows: int = 0
    max_score: float = 0.0
    last_score: float = 0.0
    last_update_sent: float = 0.0
    strength: float = 0.0
    fired: list = field(default_factory=list)
    evidence: dict = field(default_factory=dict)
    peers: Counter = field(default_factory=Counter)
    peers_dropped: int = 0
    community_id: CommunityId = None
    updates: int = 0


def severity_for(strength: float, max_score: float, flagged_flows: int) -> str:
    """Map an incident's evidence to a severity.

    ``critical``: strength at least 8 (e.g. 24 confident flows in the window) or a score of at
    least 0.99 over 20+ flagged flows; ``high``: strength at least 3 (high-confidence evidence);
    ``medium``: strength at least 1.5; else ``low``.
    """
    if strength >= 8.0 or (max_score >= 0.99 and flagged_flows >= 20):
        return "critical"
    if strength >= 3.0:
        return "high"
    if strength >= 1.5:
        return "medium"
    return "low"


class IncidentTracker:
    """Turns scored flows into incident messages (``new``, ``update``, ``end``) with the evidence rule.

    Time is flow time (packet or log timestamps), so pcap replay gives the same incidents as
    live capture of the same traffic.

    Parameters
    ----------
    gateway_id, model
        Copied into every message (``model`` is ``{"id": ..., "version": ...}``).
    threshold
        The bundle's fused-score threshold; a host's own threshold is never below it.
    rule
        The evidence rule (:class:`EvidenceRule`; its defaults when None).
    update_interval_s
        At most one ``update`` per incident per this many seconds.
    quiet_period_s
        An incident ends when its host had no flagged flow for this long.
    max_peers_listed
        Remote endpoints listed in a message.
    site
        Per-device thresholds and learning state (:class:`edgebot.site.SiteProfile`); None: the
        bundle's threshold for everyone and no learning.
    """

    def __init__(self, gateway_id: str, model: dict, threshold: float, rule: Optional[EvidenceRule] = None,
                 update_interval_s: float = 30.0, quiet_period_s: float = 300.0, max_peers_listed: int = 5,
                 site: Optional[DeviceThresholds] = None):
        self.gateway_id = gateway_id
        self.model = model
        self.threshold = float(threshold)
        self.rule = rule or EvidenceRule()
        self.update_interval_s = float(update_interval_s)
        self.quiet_period_s = float(quiet_period_s)
        self.max_peers_listed = int(max_peers_listed)
        self.site = site
        self._open: OrderedDict[str, _Incident] = OrderedDict()
        self._pending: OrderedDict[str, HostEvidence] = OrderedDict()
        self._activity: dict[str, list[float]] = {}
        self._retries: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        #: Messages made, by type (``new``, ``update``, ``end``).
        self.counts: Counter = Counter()
        #: Everything else worth counting: evictions, drops, suppressed evidence.
        self.events: Counter = Counter()

    # ------------------------------------------------------------------------------ queries
    @property
    def open_incidents(self) -> int:
        return len(self._open)

    @property
    def open_hosts(self) -> KeysView[str]:
        """Hosts with an open incident (a live view): only their unflagged flows need :meth:`observe`."""
        return self._open.keys()

    def note(self, host: str, ts: float) -> None:
        """Count one flow of ``host`` (every flow, flagged or not): the activity the confident share needs.

        Bounded: the least recently active of more than ``max_pending_hosts`` hosts is forgotten.
        """
        act = self._activity.get(host)
        if act is None:
            self._activity[host] = [1.0, ts]
            if len(self._activity) > self.rule.max_pending_hosts:
                del self._activity[next(iter(self._activity))]
            return
        dt = ts - act[1]
        if dt > 0:
            act[0] = act[0] * math.exp(-dt / self.rule.window_s) + 1.0
            act[1] = ts
        else:
            act[0] += 1.0

    def retry_level(self, host: str, dest: str, port: int, ts: float) -> float:
        """Count one failed connection of ``host`` to ``dest:port``; the peer's leaky-bucket level.

        Bounded: at most ``max_pending_hosts`` (host, peer) buckets, least recently used evicted.
        """
        key = (host, f"{dest}:{port}")
        b = self._retries.get(key)
        rate = self.rule.retry_rate
        if b is None:
            b = self._retries[key] = [1.0, ts]
            if len(self._retries) > self.rule.max_pending_hosts:
                self._retries.popitem(last=False)
            return 1.0
        self._retries.move_to_end(key)
        b[0] = max(0.0, b[0] - max(0.0, ts - b[1]) * rate) + 1.0
        b[1] = max(b[1], ts)
        return b[0]

    def activity(self, host: str, now: float) -> float:
        """``host``'s flows decayed over the window at ``now`` (0 when never :meth:`note`-d)."""
        act = self._activity.get(host)
        if act is None:
            return 0.0
        return act[0] * math.exp(-max(0.0, now - act[1]) / self.rule.window_s)

    @property
    def pending_hosts(self) -> int:
        """Hosts with evidence that has not (yet) opened an incident."""
        return len(self._pending)

    def host_threshold(self, host: str) -> float:
        """The threshold a flow of ``host`` is flagged at (never below the bundle's)."""
        if self.site is None:
            return self.threshold
        return max(self.threshold, self.site.threshold(host))

    def open_incident_by_id(self, incident_id: str) -> Optional[dict]:
        """An open incident by id (or unique id prefix), None if none."""
        found = [inc for inc in self._open.values() if inc.incident_id.startswith(incident_id)]
        return self._body(found[0]) if len(found) == 1 else None

    def open_incident(self, host: str) -> Optional[dict]:
        """The current state of ``host``'s open incident as a message body (None if none)."""
        inc = self._open.get(host)
        return None if inc is None else self._body(inc)

    # ------------------------------------------------------------------------------ input
    def observe(self, host: str, ts: float, score: float, peer: str = "", community_id: CommunityId = None, *,
                dest: str = "", port: int = 0, conn_state: str = "", threshold: Optional[float] = None,
                learning: Optional[bool] = None, note: bool = True, oneway: float = 0.0) -> list[dict]:
        """Record one scored flow of ``host`` that ended at ``ts``; returns messages to publish.

        Parameters
        ----------
        host
            The originating host.
        ts
            Flow end time (seconds).
        score
            Fused score, higher = more malicious.
        peer
            ``"ip:port/proto"`` of the remote endpoint (listed in messages).
        community_id
            The flow's Community ID, or a callable computing it only if a message names it.
        dest, port, conn_state
            Destination address, port and Zeek connection state (the scan and beacon rules).
            ``dest`` defaults to the address part of ``peer``.
        threshold, learning
            The host's threshold and learning state when the caller already has them.
        note
            Count the flow in the host's activity (False when the caller already did, see :meth:`note`).
        oneway
            The flow's unanswered packet rate (:func:`edgebot.evidence.oneway_rate`; the oneway rule).
        """
        if host in UNATTRIBUTABLE:
            self.events["unattributable_flows"] += 1
            return []
        if note:
            self.note(host, ts)
        th = self.host_threshold(host) if threshold is None else threshold
        inc = self._open.get(host)
        ended: list[dict] = []
        if inc is not None and ts - inc.last_flagged >= self.quiet_period_s:  # quiet long enough: over
            ended.append(self._end(host, "quiet"))
            inc = None
        failed = conn_state in FAILED_STATES
        retry = self.retry_level(host, dest or peer.rsplit(":", 1)[0], port, ts) if failed else 0.0
        flood = oneway >= self.rule.oneway_pps
        if score < th and retry < self.rule.retry_burst and not flood:
            if inc is not None:
                inc.flows += 1
                inc.last_seen = max(inc.last_seen, ts)
                inc.last_score = float(score)
            return ended
        if not dest:
            dest = peer.rsplit(":", 1)[0] if peer else ""
        rule = self.rule
        excess = min(1.0, (score - th) / (1.0 - th)) if th < 1.0 else 1.0
        confident = score >= rule.confident_level(th)
        if confident and self.site is not None and dest and self.site.is_usual_peer(host, f"{dest}:{port}", ts):
            confident = False  # a peer the device talks to as usual: a borderline flow, not a confident one
            self.events["usual_peer_flows"] += 1
        if score < th:  # a retry storm or a one-way flood: evidence whatever the score, never confident
            excess, confident = 0.0, False
        if inc is not None:
            self._add(inc, ts, score, peer, community_id)
            return self._maybe_update(inc, ts)
        return ended + self._pending_flow(host, ts, score, th, excess, confident, dest, port, failed, retry, peer,
                                          community_id, learning, oneway if flood else 0.0)

    def _pending_flow(self, host: str, ts: float, score: float, th: float, excess: float, confident: bool,
                      dest: str, port: int, failed: bool, retry: float, peer: str, community_id: CommunityId,
                      learning: Optional[bool], oneway: float = 0.0) -> list[dict]:
        """A flagged flow (or a retry) of a host without an open incident: evidence, maybe an incident."""
        rule = self.rule
        ev = self._evidence(host, ts)
        ev.add(rule, ts, float(score), excess, confident, dest, port, failed)
        if oneway:
            ev.note_oneway(rule, ts, oneway)
        if retry > ev.retry - max(0.0, ts - ev.retry_ts) * rule.retry_rate:
            ev.note_retry(ts, retry)
        return self._weigh(host, ev, ts, float(score), th, learning, peer, community_id)

    def observe_unanswered(self, host: str, ts: float, pps: float, since: float, peer: str = "", *,
                           threshold: Optional[float] = None, learning: Optional[bool] = None) -> list[dict]:
        """A flow of ``host`` still in progress at ``ts``, begun at ``since``, that its peer never answered,
        at ``pps`` packets/s so far: the oneway rule's evidence before the flow ends.

        No flow is counted (its record counts when the flow ends, and updates the incident); an
        incident it opens starts at ``since`` with 0 flows. Nothing happens below the rule's bar or
        for a host with an open incident.
        """
        if host in UNATTRIBUTABLE or pps < self.rule.oneway_pps or host in self._open:
            return []
        ev = self._evidence(host, ts)
        ev.note_oneway(self.rule, ts, pps)
        ev.first = min(ev.first, since)
        ev.last = max(ev.last, ts)
        th = self.host_threshold(host) if threshold is None else threshold
        return self._weigh(host, ev, ts, 0.0, th, learning, peer, None)

    def _evidence(self, host: str, ts: float) -> HostEvidence:
        """``host``'s pending evidence, a fresh one when it has none within the window (bounded)."""
        rule = self.rule
        ev = self._pending.get(host)
        if ev is None or ts - ev.last > rule.window_s:
            ev = HostEvidence(rule, ts)
            self._pending[host] = ev
            if len(self._pending) > rule.max_pending_hosts:
                self._pending.popitem(last=False)
                self.events["pending_evicted"] += 1
        else:
            self._pending.move_to_end(host)
        return ev

    def _weigh(self, host: str, ev: HostEvidence, ts: float, score: float, th: float, learning: Optional[bool],
               peer: str, community_id: CommunityId) -> list[dict]:
        """Open ``host``'s incident when its evidence reaches the bar (higher while it is learning)."""
        rule = self.rule
        strength, measures = ev.strength(rule, ts, self.activity(host, ts))
        ev.last_strength = strength
        if learning is None:
            learning = self.site is not None and self.site.learning(host, ts)
        bar = rule.high_confidence if learning else 1.0
        if strength < bar:
            if learning and strength >= 1.0:
                self.events["suppressed_while_learning"] += 1
            return []
        del self._pending[host]
        return self._open_new(host, ev, ts, score, th, strength, measures, learning, peer, community_id)

    def evidence_strength(self, host: str, now: float) -> float:
        """Strength of ``host``'s pending evidence at its last flagged flow (0 when none is left at ``now``).

        Site learning asks this for every flow of a learning device, so it is a lookup, not a recount.
        """
        ev = self._pending.get(host)
        if ev is None or now - ev.last > self.rule.window_s:
            return 0.0
        return ev.last_strength

    def tick(self, now: float) -> list[dict]:
        """End incidents quiet for ``quiet_period_s`` at flow time ``now``; drop stale evidence."""
        ended = [h for h, inc in self._open.items() if now - inc.last_flagged >= self.quiet_period_s]
        messages = [self._end(h, "quiet") for h in ended]
        horizon = now - self.rule.window_s
        while self._pending:  # least recently seen first: stop at the first fresh one
            host, ev = next(iter(self._pending.items()))
            if ev.last >= horizon:
                break
            del self._pending[host]
            self.events["pending_expired"] += 1
        return messages

    def close_all(self, reason: str = "source ended") -> list[dict]:
        """End every open incident (the source ended or the agent stops)."""
        return [self._end(h, reason) for h in list(self._open)]

    def forget(self, host: str, reason: str = "allowed") -> list[dict]:
        """Drop ``host``'s evidence and end its incident (an operator marked it a false alarm)."""
        self._pending.pop(host, None)
        return [self._end(host, reason)] if host in self._open else []

    # ------------------------------------------------------------------------------ internals
    def _open_new(self, host: str, ev: HostEvidence, ts: float, score: float, th: float, strength: float,
                  measures: dict[str, float], learning: bool, peer: str, community_id: CommunityId) -> list[dict]:
        """Open ``host``'s incident from its evidence; the flow that fired the rule is already in ``ev``."""
        fired = [r for r in RULES if measures[f"{r}_strength"] >= 1.0]
        inc = _Incident(incident_id=self._new_id(host, ev.first), host=host, first_seen=ev.first, opened=ts,
                        last_seen=max(ts, ev.last), last_flagged=max(ts, ev.last), threshold=th,
                        during_learning=learning, flows=ev.flagged, flagged_flows=ev.flagged,
                        max_score=ev.max_score, last_score=score, last_update_sent=ts, strength=strength,
                        fired=fired, evidence=_round_measures(measures), community_id=community_id)
        if peer:
            inc.peers[peer] += 1
        messages = []
        if len(self._open) >= self.rule.max_open_incidents:
            quietest = min(self._open, key=lambda h: self._open[h].last_flagged)
            messages.append(self._end(quietest, "evicted"))
            self.events["incidents_evicted"] += 1
        self._open[host] = inc
        messages.append(self._message("new", inc))
        return messages

    def _add(self, inc: _Incident, ts: float, score: float, peer: str, community_id: CommunityId) -> None:
        """One flagged flow of an open incident."""
        inc.flows += 1
        inc.flagged_flows += 1
        inc.last_seen = max(inc.last_seen, ts)
        inc.last_flagged = max(inc.last_flagged, ts)
        inc.last_score = float(score)
        inc.max_score = max(inc.max_score, float(score))
        if peer:
            if peer in inc.peers or len(inc.peers) < self.rule.max_peers_tracked:
                inc.peers[peer] += 1
            else:
                inc.peers_dropped += 1
                self.events["peers_dropped"] += 1
        if community_id:
            inc.community_id = community_id

    def _maybe_update(self, inc: _Incident, ts: float) -> list[dict]:
        if ts - inc.last_update_sent >= self.update_interval_s:
            inc.last_update_sent = ts
            inc.updates += 1
            return [self._message("update", inc)]
        return []

    def _end(self, host: str, reason: str) -> dict:
        inc = self._open.pop(host)
        msg = self._message("end", inc)
        msg["reason"] = reason
        return msg

    def _new_id(self, host: str, ts: float) -> str:
        raw = f"{self.gateway_id}|{host}|{ts:.6f}".encode()
        return hashlib.sha1(raw).hexdigest()[:16]

    def _body(self, inc: _Incident) -> dict:
        return {
            "type": "state",
            "incident_id": inc.incident_id,
            "gateway_id": self.gateway_id,
            "host": inc.host,
            "first_seen": round(inc.first_seen, 6),
            "opened": round(inc.opened, 6),
            "last_seen": round(inc.last_seen, 6),
            "flows": inc.flows,
            "malicious_flows": inc.flagged_flows,
            "score": round(inc.max_score, 6),
            "last_score": round(inc.last_score, 6),
            "threshold": round(inc.threshold, 6),
            "bundle_threshold": round(self.threshold, 6),
            "severity": severity_for(inc.strength, inc.max_score, inc.flagged_flows),
            "rules": list(inc.fired),
            "strength": round(inc.strength, 3),
            "evidence": inc.evidence,
            "during_learning": inc.during_learning,
            "model": self.model,
            "peers": [p for p, _ in inc.peers.most_common(self.max_peers_listed)],
            "peers_dropped": inc.peers_dropped,
            "community_id": self._community_id(inc),
        }

    def _message(self, kind: str, inc: _Incident) -> dict:
        self.counts[kind] += 1
        msg = self._body(inc)
        msg["type"] = kind
        return msg

    @staticmethod
    def _community_id(inc: _Incident) -> Optional[str]:
        if callable(inc.community_id):
            inc.community_id = inc.community_id()
        return inc.community_id


def _round_measures(measures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in measures.items()}


def peer_key(dest: str, port: int) -> str:
    """The key of a remote endpoint in evidence, site profiles and allow rules: ``"ip:port"``."""
    return f"{dest}:{port}"


def replay_incidents(tracker: IncidentTracker, hosts: Iterable[str], ends: Iterable[float], scores: Iterable[float],
                     dests: Iterable[str], ports: Iterable[int], states: Iterable[str],
                     protos: Optional[Iterable[str]] = None) -> list[dict]:
    """Feed scored flows (in the order given) through a tracker as the agent does; every message.

    The tracker is ticked with the flow clock (the latest end seen) after every flow, so incidents
    end after the quiet period exactly as on the gateway; open incidents are closed at the end.
    """
    messages: list[dict] = []
    clock = -math.inf
    protos_it = iter(protos) if protos is not None else None
    for host, end, score, dest, port, state in zip(hosts, ends, scores, dests, ports, states):
        proto = next(protos_it) if protos_it is not None else "tcp"
        messages += tracker.observe(host, end, score, f"{dest}:{port}/{proto}", dest=dest, port=int(port),
                                    conn_state=state)
        if end > clock:
            clock = end
            messages += tracker.tick(clock)
    messages += tracker.close_all("source ended")
    return messages
