"""The evidence an incident is built from: the rule's settings and each host's accumulated evidence.

:class:`EvidenceRule` holds the bars of the six rules (confident, scan, flood, retry, beacon, oneway; see
:mod:`edgebot.incidents`, which opens incidents from them); :class:`HostEvidence` is one host's
evidence over the rule's window (decayed score mass, per-peer confident flows, retry buckets,
beacon gaps, distinct destinations and ports), bounded by the rule's caps.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, fields
from typing import Any

SEVERITIES = ("low", "medium", "high", "critical")
RULES = ("confident", "scan", "flood", "retry", "beacon", "oneway")
#: Zeek connection states of a failed attempt (no answer, refused, half-open).
FAILED_STATES = frozenset({"S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"})
#: Source addresses that name no host (DHCP discover, IPv6 duplicate address detection): scored, never an incident.
UNATTRIBUTABLE = frozenset({"0.0.0.0", "::", ""})


def responder_only(history: str, orig_pkts: int) -> bool:
    """True when the originating host sent nothing in the flow: only its peer's packets were seen.

    Zeek's ``history`` has upper-case letters for the originator's packets and lower-case ones for
    the responder's; a flow such as ``OTH`` with history ``h`` (an unasked SYN-ACK), ``a`` or ``d``
    and no originator packet is traffic *to* the host (backscatter of someone spoofing its address,
    the tail of a connection whose start was missed), not something the host did, so it is scored
    but is never evidence against it. An empty history (a source without one) is never
    responder-only. Measured with the shipped bundle (benchmarks/detection/findings.md): all 21
    confident flows and 35 of the 37 flows over the threshold (labeled benign or background) of
    the Stratosphere 010 Windows host were such flows, and none of the flagged malicious flows of
    the infected hosts in the shared captures.
    """
    return orig_pkts == 0 and bool(history) and not any(c.isupper() for c in history)


#: A flow's packet rate means something only over this long (seconds): shorter flows are bursts.
ONEWAY_MIN_S = 10.0


def oneway_rate(orig_pkts: int, resp_pkts: int, duration: float, dest: str) -> float:
    """Packets per second the host sent in a flow its peer never answered, to a global address; else 0.

    The ``oneway`` rule's measure: a flood from the host (UDP, ICMP, spoofed-ACK) is one long flow
    of packets nobody answers. Flows shorter than :data:`ONEWAY_MIN_S`, answered ones and those to
    private, link-local or multicast addresses (a LAN camera's stream to its recorder, mDNS,
    SSDP) measure 0.
    """
    if resp_pkts or orig_pkts <= 0 or not duration or duration < ONEWAY_MIN_S:
        return 0.0
    try:
        addr = ipaddress.ip_address(dest)
    except ValueError:
        return 0.0
    if not addr.is_global or addr.is_multicast:  # Python counts most multicast ranges as global
        return 0.0
    return orig_pkts / duration


def flow_evidence(flow: Any) -> tuple[bool, float]:
    """What the evidence rule needs of a flow record besides its score, as :meth:`edgebot.judge.FlowJudge.observe`
    takes it: (:func:`responder_only`, :func:`oneway_rate`)."""
    return (responder_only(flow.history, flow.orig_pkts),
            oneway_rate(flow.orig_pkts, flow.resp_pkts, flow.duration, flow.resp_h))


@dataclass(frozen=True)
class EvidenceRule:
    """The rule that turns flagged flows into an incident; every bar in one place.

    Attributes
    ----------
    window_s
        Evidence horizon in seconds of flow time.
    confident_fraction
        A flagged flow is confident when ``score >= threshold + confident_fraction * (1 - threshold)``.
    confident_flows
        Confident flows within the window that open an incident...
    confident_share
        ...when they are at least this share of the host's flows since its evidence began (decayed
        over the window): a few confident flows lost in a busy host's thousands are not evidence...
    confident_per_peer
        ...and (when True) go to one peer: a C&C channel is repeated contact with one server, while
        a device booting contacts each of its clouds once (many peers at once is the scan rule's).
    scan_destinations, scan_ports
        Distinct destination addresses (or ports of one address) among flagged flows in the window.
    scan_failed_share
        Share of those flows that must have failed (``FAILED_STATES``) for a scan.
    flood_rate, flood_burst
        Flagged flows per second sustained, and the burst the leaky bucket holds before it fires.
    retry_rate, retry_burst
        Failed connections (``FAILED_STATES``) to one peer per second sustained, and the bucket that
        fires; counted for every flow, flagged or not.
    beacon_flows, beacon_jitter, beacon_min_excess
        Flagged flows to one peer, the largest coefficient of variation of their gaps, and the
        smallest mean excess (share of the way from threshold to 1) of a beacon's flows.
    oneway_pps
        Packets per second of one unanswered flow to a global address (:func:`oneway_rate`), whatever
        its score: a flood from the host.
    high_confidence
        Strength that opens an incident while the site profile is learning; evidence this strong
        is never learned as normal.
    max_pending_hosts
        Hosts with evidence but no incident (least recently seen evicted first).
    max_open_incidents
        Open incidents (the quietest is ended with reason ``evicted`` first).
    max_peers_tracked
        Distinct peers counted per incident (later new peers are counted as dropped).
    """

    window_s: float = 300.0
    confident_fraction: float = 0.9
    confident_flows: int = 3
    confident_share: float = 0.1
    confident_per_peer: bool = True
    scan_destinations: int = 16
    scan_ports: int = 16
    scan_failed_share: float = 0.5
    flood_rate: float = 5.0
    flood_burst: float = 100.0
    retry_rate: float = 0.5
    retry_burst: float = 50.0
    beacon_flows: int = 8
    beacon_jitter: float = 0.15
    beacon_min_excess: float = 0.5
    oneway_pps: float = 100.0
    high_confidence: float = 3.0
    max_pending_hosts: int = 2048
    max_open_incidents: int = 1_000
    max_peers_tracked: int = 256

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise ValueError(f"incidents.{spec.name}: must be true or false, got {value!r}")
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"incidents.{spec.name}: must be a positive number, got {value!r}")
        if not (self.confident_fraction < 1.0 and self.scan_failed_share <= 1.0 and self.confident_share <= 1.0):
            raise ValueError("incidents.confident_fraction: must be below 1 (and scan_failed_share, confident_share "
                             "at most 1)")

    @classmethod
    def from_config(cls, cfg: Any) -> "EvidenceRule":
        """The rule from an object with the same attribute names (e.g. the agent's ``[incidents]``)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls) if hasattr(cfg, f.name)})

    @property
    def confident_memory(self) -> int:
        """Confident-flow timestamps kept per host: enough to measure strengths up to 8 (critical)."""
        return int(math.ceil(self.confident_flows * max(8.0, self.high_confidence)))

    def confident_level(self, threshold: float) -> float:
        """The score from which a flow of a host with this threshold is confident."""
        return threshold + self.confident_fraction * (1.0 - threshold)


class _Peer:
    """Flagged flows of one host to one destination address within the window (bounded per host)."""

    __slots__ = ("last", "count", "failed", "ports", "gap_mean", "gap_m2", "excess")

    def __init__(self, ts: float) -> None:
        self.last = ts
        self.count = 0
        self.failed = 0
        self.ports: dict[int, None] = {}
        self.gap_mean = 0.0
        self.gap_m2 = 0.0
        self.excess = 0.0


class HostEvidence:
    """What one host's flagged flows amount to over the evidence window.

    Memory is bounded whatever the traffic: at most ``2 * scan_destinations`` destinations, each
    with at most ``2 * scan_ports`` ports, and :attr:`EvidenceRule.confident_memory` timestamps.
    """

    __slots__ = ("first", "last", "confident", "peers", "bucket", "bucket_ts", "mass", "mass_ts", "flagged",
                 "max_score", "last_strength", "conf_seen", "seen_ts", "retry", "retry_ts", "oneway", "oneway_ts")

    def __init__(self, rule: EvidenceRule, ts: float) -> None:
        self.first = ts
        self.last = ts
        self.confident: list[tuple[float, str]] = []  # (time, destination), at most rule.confident_memory
        self.peers: dict[str, _Peer] = {}  # insertion order = least recently flagged first
        self.bucket = 0.0
        self.bucket_ts = ts
        self.mass = 0.0
        self.mass_ts = ts
        self.flagged = 0
        self.max_score = 0.0
        self.last_strength = 0.0
        self.conf_seen = 0.0  # confident flows, decayed over the window like the host's activity
        self.seen_ts = ts
        self.retry = 0.0  # level of the fullest per-peer retry bucket (leaks at retry_rate)
        self.retry_ts = ts
        self.oneway = 0.0  # the fastest unanswered flow's packets per second within the window
        self.oneway_ts = ts

    def note_confident(self, rule: EvidenceRule, ts: float) -> None:
        dt = ts - self.seen_ts
        if dt > 0:
            self.conf_seen *= math.exp(-dt / rule.window_s)
            self.seen_ts = ts
        self.conf_seen += 1.0

    def note_retry(self, ts: float, level: float) -> None:
        """The level of the host's fullest per-peer retry bucket at ``ts`` (see :meth:`IncidentTracker.observe`)."""
        self.retry = level
        self.retry_ts = ts

    def note_oneway(self, rule: EvidenceRule, ts: float, pps: float) -> None:
        """One unanswered flow of ``pps`` packets per second that ended at ``ts`` (see :func:`oneway_rate`)."""
        if pps >= self.oneway or ts - self.oneway_ts > rule.window_s:
            self.oneway = pps
            self.oneway_ts = ts

    def add(self, rule: EvidenceRule, ts: float, score: float, excess: float, confident: bool, dest: str,
            port: int, failed: bool) -> None:
        """Record one flagged flow (or one that filled a retry bucket) that ended at ``ts``."""
        self.flagged += 1
        if confident:
            self.note_confident(rule, ts)
        self.first = min(self.first, ts)
        self.last = max(self.last, ts)
        self.max_score = max(self.max_score, score)
        if confident:
            conf = self.confident
            conf.append((ts, dest))
            if len(conf) > rule.confident_memory:
                del conf[0]
        # leaky bucket for sustained volume; decayed excess mass for the message
        dt = max(0.0, ts - self.bucket_ts)
        self.bucket = max(0.0, self.bucket - dt * rule.flood_rate) + 1.0
        self.bucket_ts = max(self.bucket_ts, ts)
        dm = max(0.0, ts - self.mass_ts)
        self.mass = self.mass * math.exp(-dm / rule.window_s) + excess
        self.mass_ts = max(self.mass_ts, ts)
        peers = self.peers
        peer = peers.pop(dest, None)  # re-inserted below: most recently flagged last
        if peer is None:
            self._prune(rule, ts)
            if len(peers) >= 2 * rule.scan_destinations:
                del peers[next(iter(peers))]
            peer = _Peer(ts)
        else:
            gap = ts - peer.last
            if gap > 0:  # Welford over the gaps between flows to this peer
                n = peer.count  # gaps so far + 1
                delta = gap - peer.gap_mean
                peer.gap_mean += delta / n
                peer.gap_m2 += delta * (gap - peer.gap_mean)
            peer.last = max(peer.last, ts)
        peers[dest] = peer
        peer.count += 1
        peer.failed += failed
        peer.excess += excess
        if port not in peer.ports:
            if len(peer.ports) >= 2 * rule.scan_ports:
                peer.ports.pop(next(iter(peer.ports)))
            peer.ports[port] = None

    def _prune(self, rule: EvidenceRule, now: float) -> None:
        """Forget destinations last seen before the window."""
        horizon = now - rule.window_s
        stale = [d for d, p in self.peers.items() if p.last < horizon]
        for d in stale:
            del self.peers[d]

    def measures(self, rule: EvidenceRule, now: float, activity: float = 0.0) -> dict[str, float]:
        """Each rule's measure at flow time ``now`` (the unit of its bar).

        ``activity`` is the host's flow count decayed over the window (every flow, flagged or not);
        the confident rule needs its confident flows to be a share of it.
        """
        horizon = now - rule.window_s
        recent = [d for t, d in self.confident if t >= horizon]
        if rule.confident_per_peer and recent:
            per_peer: dict[str, int] = {}
            for d in recent:
                per_peer[d] = per_peer.get(d, 0) + 1
            confident = max(per_peer.values())
        else:
            confident = len(recent)
        live = [p for p in self.peers.values() if p.last >= horizon]
        flows = sum(p.count for p in live)
        failed = sum(p.failed for p in live)
        destinations = len(live)
        ports = max((len(p.ports) for p in live), default=0)
        beacon = 0.0
        for p in live:
            gaps = p.count - 1
            if gaps >= 2 and p.gap_mean > 0 and p.excess / p.count >= rule.beacon_min_excess:
                cv = math.sqrt(p.gap_m2 / gaps) / p.gap_mean
                if cv <= rule.beacon_jitter:
                    beacon = max(beacon, float(p.count))
        failed_ok = flows > 0 and failed / flows >= rule.scan_failed_share
        bucket = max(0.0, self.bucket - max(0.0, now - self.bucket_ts) * rule.flood_rate)
        retry = max(0.0, self.retry - max(0.0, now - self.retry_ts) * rule.retry_rate)
        oneway = self.oneway if now - self.oneway_ts <= rule.window_s else 0.0
        conf_now = self.conf_seen * math.exp(-max(0.0, now - self.seen_ts) / rule.window_s)
        share = conf_now / activity if activity > 0 else 1.0
        return {
            "confident": float(confident) if share >= rule.confident_share else 0.0,
            "confident_flows": float(confident),
            "confident_share": share,
            "scan": float(max(destinations / rule.scan_destinations, ports / rule.scan_ports)) if failed_ok else 0.0,
            "flood": bucket / rule.flood_burst,
            "retry": retry / rule.retry_burst,
            "beacon": beacon / rule.beacon_flows,
            "oneway": oneway / rule.oneway_pps,
            "oneway_pps": oneway,
            "flows": float(flows),
            "destinations": float(destinations),
            "ports": float(ports),
            "failed": float(failed),
        }

    def strength(self, rule: EvidenceRule, now: float, activity: float = 0.0) -> tuple[float, dict[str, float]]:
        """The strongest rule's measure over its bar, and every measure."""
        m = self.measures(rule, now, activity)
        strengths = {"confident": m["confident"] / rule.confident_flows, "scan": m["scan"], "flood": m["flood"],
                     "retry": m["retry"], "beacon": m["beacon"], "oneway": m["oneway"]}
        return max(strengths.values()), {**m, **{f"{k}_strength": v for k, v in strengths.items()}}
