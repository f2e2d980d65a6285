"""From scored flows to incident messages, the gateway's way: allow rules, site learning, the evidence rule.

:class:`FlowJudge` is the one call sequence that ``edgebot run``, ``edgebot eval --learn`` and the
detection study share, so that what eval reports is what the gateway would do:

1. a flow matching an operator's allow rule is suppressed (counted per rule, never evidence), and
   so is a flow in which the host sent nothing (:func:`edgebot.evidence.responder_only`; counted);
2. the host's threshold comes from the site profile (never below the bundle's) and tells
   whether the device is still learning;
3. the evidence rule (:class:`edgebot.incidents.IncidentTracker`) turns flagged flows into
   ``new`` / ``update`` / ``end`` messages;
4. while a device is learning, the flow joins its baseline, unless it is high-confidence: confident
   at the bundle's threshold, or of a host with evidence at incident strength or an open incident
   (high-confidence traffic is never learned as normal).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

from edgebot.allow import AllowList
from edgebot.evidence import flow_evidence
from edgebot.incidents import FAILED_STATES, EvidenceRule, IncidentTracker
from edgebot.site import SiteProfile

log = logging.getLogger(__name__)


class FlowJudge:
    """Allow rules + site profile + evidence rule over scored flows.

    Parameters
    ----------
    tracker
        The incident tracker (its ``site`` is set to ``site`` here).
    site
        The site profile, or None (bundle threshold for every host, no learning).
    allow
        The allow rules, or None.
    """

    def __init__(self, tracker: IncidentTracker, site: Optional[SiteProfile] = None,
                 allow: Optional[AllowList] = None):
        self.tracker = tracker
        self.site = site if site is not None and site.enabled else None
        tracker.site = self.site
        #: Scores from which a flow is high-confidence (confident at the bundle's threshold): never learned.
        self.high_confidence_score = tracker.rule.confident_level(tracker.threshold)
        if self.site is not None:
            self.site.ceiling = min(self.site.ceiling, self.high_confidence_score)
        self.allow = allow
        self.suppressed_flows = 0
        self.responder_only_flows = 0
        self.unanswered_reports = 0

    @classmethod
    def build(cls, gateway_id: str, model: dict, threshold: float, rule: Optional[EvidenceRule] = None, *,
              update_interval_s: float = 30.0, quiet_period_s: float = 300.0, max_peers_listed: int = 5,
              site: Optional[SiteProfile] = None, allow: Optional[AllowList] = None) -> "FlowJudge":
        tracker = IncidentTracker(gateway_id, model, threshold, rule, update_interval_s=update_interval_s,
                                  quiet_period_s=quiet_period_s, max_peers_listed=max_peers_listed)
        return cls(tracker, site, allow)

    def observe(self, host: str, end: float, score: float, dest: str, port: int, proto: str, conn_state: str,
                community_id: Any = None, silent: bool = False, oneway: float = 0.0) -> list[dict]:
        """One scored flow of ``host`` that ended at ``end``; returns messages to publish.

        ``silent``: the host sent nothing in the flow (:func:`edgebot.evidence.responder_only`); it
        is counted and neither evidence nor learned. ``oneway``: its unanswered packet rate
        (:func:`edgebot.evidence.oneway_rate`), evidence whatever the score from the rule's bar on.
        """
        allow = self.allow
        if allow is not None and allow.rules and allow.match(host, dest, port) is not None:
            self.suppressed_flows += 1
            return []
        if silent:
            self.responder_only_flows += 1
            return []
        tracker = self.tracker
        tracker.note(host, end)
        site = self.site
        flood = oneway >= tracker.rule.oneway_pps
        if site is None:
            if (score < tracker.threshold and host not in tracker.open_hosts and conn_state not in FAILED_STATES
                    and not flood):
                return []  # the hot path: a quiet host's unflagged, answered flow changes nothing more
            return tracker.observe(host, end, score, f"{dest}:{port}/{proto}", community_id, dest=dest, port=port,
                                   conn_state=conn_state, note=False, oneway=oneway)
        dev = site.device(host, end)
        learning = end < dev.learn_until
        threshold = site.device_threshold(dev, end)
        if score >= threshold or host in tracker.open_hosts or conn_state in FAILED_STATES or flood:
            msgs = tracker.observe(host, end, score, f"{dest}:{port}/{proto}", community_id, dest=dest, port=port,
                                   conn_state=conn_state, threshold=threshold, learning=learning, note=False,
                                   oneway=oneway)
        else:
            msgs = []
        if learning:
            normal = (score < self.high_confidence_score and host not in tracker.open_hosts and not flood
                      and tracker.evidence_strength(host, end) < 1.0)
            site.learn_into(dev, end, score, dest, port, proto, normal=normal)
        return msgs

    def observe_unanswered(self, host: str, now: float, dest: str, port: int, proto: str, pps: float,
                           since: float) -> list[dict]:
        """A flow of ``host`` begun at ``since``, still in progress at ``now``, that its peer never
        answered, at ``pps`` packets/s so far (:meth:`edgebot.edge.meter.FlowMeter.unanswered`): the
        oneway rule before the flow ends (:meth:`edgebot.incidents.IncidentTracker.observe_unanswered`).

        Not a flow of its own: it is neither counted nor learned (its record, when the flow ends, is
        observed as every flow is). Nothing happens below the rule's bar, for a host with an open
        incident (the record updates it) or under an allow rule (the record is counted as suppressed
        when it ends).
        """
        tracker = self.tracker
        if pps < tracker.rule.oneway_pps or host in tracker.open_hosts:
            return []
        allow = self.allow
        if allow is not None and allow.rules and allow.match(host, dest, port) is not None:
            return []
        self.unanswered_reports += 1  # the tracker asks the site profile for the host's threshold and learning state
        return tracker.observe_unanswered(host, now, pps, since, f"{dest}:{port}/{proto}")

    def observe_many(self, hosts: Sequence[str], ends: Sequence[float], scores: Sequence[float],
                     dests: Sequence[str], ports: Sequence[int], protos: Sequence[str], states: Sequence[str],
                     community_ids: Optional[Sequence[Any]] = None, clock: Optional[float] = None) -> list[dict]:
        """Observe a batch in the order given, then :meth:`tick` at ``clock`` (the latest end when None)."""
        messages: list[dict] = []
        observe = self.observe
        cids = community_ids if community_ids is not None else [None] * len(hosts)
        for host, end, score, dest, port, proto, state, cid in zip(hosts, ends, scores, dests, ports, protos,
                                                                   states, cids):
            messages.extend(observe(host, end, score, dest, port, proto, state, cid))
        if clock is None:
            clock = max(ends) if len(ends) else None
        if clock is not None:
            messages.extend(self.tracker.tick(clock))
        return messages

    def apply_allow_changes(self, changed: bool = False) -> list[dict]:
        """Re-read the allow rules (``changed``: they were just edited in this process); end the
        incidents of hosts that are now allowed as a whole."""
        if self.allow is None:
            return []
        if not self.allow.refresh() and not changed:
            return []
        messages: list[dict] = []
        whole = {r.host for r in self.allow.rules if r.whole_host}
        for host in list(self.tracker.open_hosts):
            if host in whole:
                messages.extend(self.tracker.forget(host, "allowed"))
        log.info("allow rules reloaded: %d rule(s)", len(self.allow.rules))
        return messages

    def stats(self) -> dict:
        """Counters for the agent's stats and summary: suppression, evidence tables, learning."""
        counts = self.tracker.events
        out = {
            "suppressed_flows": self.suppressed_flows,
            "suppressed_by_rule": dict(self.allow.suppressed) if self.allow is not None else {},
            "allow_rules": len(self.allow.rules) if self.allow is not None else 0,
            "pending_hosts": self.tracker.pending_hosts,
            "pending_evicted": counts.get("pending_evicted", 0),
            "incidents_evicted": counts.get("incidents_evicted", 0),
            "peers_dropped": counts.get("peers_dropped", 0),
            "suppressed_while_learning": counts.get("suppressed_while_learning", 0),
            "unattributable_flows": counts.get("unattributable_flows", 0),
            "responder_only_flows": self.responder_only_flows,
            "unanswered_reports": self.unanswered_reports,
        }
        if self.site is not None:
            learning = sum(1 for d in self.site.devices.values() if d.last_seen < d.learn_until)
            out.update({"site_devices": len(self.site.devices), "site_learning_devices": learning,
                        "site_devices_evicted": self.site.evicted})
        return out


def replay_flows(judge: FlowJudge, hosts: Sequence[str], ends: Sequence[float], scores: Sequence[float],
                 dests: Sequence[str], ports: Sequence[int], protos: Sequence[str], states: Sequence[str],
                 *, silent: Optional[Sequence[bool]] = None, oneway: Optional[Sequence[float]] = None,
                 close: bool = True) -> list[dict]:
    """Feed one capture's scored flows through ``judge`` in end-time order, as a gateway sees them end.

    The tracker is ticked with the flow clock after every flow, so incidents end after the quiet
    period exactly as on the gateway; with ``close`` the open ones end when the capture does.
    ``silent``, ``oneway``: per flow, the host sent nothing in it, and its unanswered packet rate
    (see :meth:`FlowJudge.observe`).
    """
    import numpy as np

    order = np.argsort(np.asarray(ends, dtype=np.float64), kind="stable").tolist()
    messages: list[dict] = []
    tracker = judge.tracker
    clock = -float("inf")
    quiet = silent if silent is not None else [False] * len(order)
    rates = oneway if oneway is not None else [0.0] * len(order)
    for i in order:
        end = float(ends[i])
        messages.extend(judge.observe(hosts[i], end, float(scores[i]), dests[i], int(ports[i]), protos[i], states[i],
                                      silent=bool(quiet[i]), oneway=float(rates[i])))
        if end > clock:
            clock = end
            if tracker.open_incidents:
                messages.extend(tracker.tick(clock))
    messages.extend(tracker.tick(clock))
    if close:
        messages.extend(tracker.close_all("source ended"))
    return messages


def replay_records(judge: FlowJudge, records: Sequence[Any], scores: Sequence[float], *,
                   close: bool = True) -> list[dict]:
    """:func:`replay_flows` over flow records (:class:`edgebot.flow.FlowRecord`) and their scores."""
    facts = [flow_evidence(r) for r in records]
    return replay_flows(judge, [r.orig_h for r in records], [r.ts + (r.duration or 0.0) for r in records],
                        [float(x) for x in scores], [r.resp_h for r in records], [r.resp_p for r in records],
                        [r.proto for r in records], [r.conn_state for r in records],
                        silent=[f[0] for f in facts], oneway=[f[1] for f in facts], close=close)


def incident_outcomes(messages: Sequence[dict], hosts: Sequence[str], ends: Sequence[float],
                      malicious: Sequence[bool], labeled: Sequence[bool]) -> dict[str, Any]:
    """What the gateway's incidents mean against labels: per host, false incidents per day, detection delay.

    A host is *infected* when any of its flows is labeled malicious; a *benign device* is a host
    with labeled flows and none of them malicious. A ``new`` incident of a benign device is a false
    incident; the detection delay of an infected host runs from its first malicious flow's end to
    its first incident's opening (None when it never got one).

    Returns
    -------
    dict
        ``hosts`` (per host: truth, incidents, first incident time, delay), ``days`` (capture span),
        ``benign_devices``, ``false_incidents``, ``false_incidents_per_device_per_day``,
        ``devices_with_false_incidents``, ``infected_hosts``, ``infected_detected``, ``delays_s``.
    """
    import numpy as np

    ends_a = np.asarray(ends, dtype=np.float64)
    days = float((ends_a.max() - ends_a.min()) / 86400.0) if len(ends_a) else 0.0
    first_mal: dict[str, float] = {}
    benign_hosts: set[str] = set()
    for h, e, m, lab in zip(hosts, ends_a.tolist(), malicious, labeled):
        if m:
            first_mal[h] = min(first_mal.get(h, e), e)
        elif lab:
            benign_hosts.add(h)
    benign_hosts -= set(first_mal)
    new: dict[str, list[dict]] = {}
    last_seen: dict[str, float] = {}  # incident id -> its last flow (from its latest message)
    for msg in messages:
        if msg["type"] == "new":
            new.setdefault(msg["host"], []).append(msg)
        last_seen[msg["incident_id"]] = max(last_seen.get(msg["incident_id"], -math.inf), msg["last_seen"])
    per_host: dict[str, dict] = {}
    for h in sorted(benign_hosts | set(first_mal) | set(new)):
        incs = new.get(h, [])
        truth = "malicious" if h in first_mal else ("benign" if h in benign_hosts else "unlabeled")
        entry: dict[str, Any] = {"truth": truth, "incidents": len(incs),
                                 "first_incident": incs[0]["opened"] if incs else None,
                                 "rules": sorted({r for m in incs for r in m.get("rules", [])}),
                                 "max_score": max((m["score"] for m in incs), default=None)}
        if truth == "malicious":
            entry["first_malicious"] = first_mal[h]
            # the first incident still running at (or opened after) the first malicious flow; 0 when one was open
            live = [m["opened"] for m in incs if last_seen[m["incident_id"]] >= first_mal[h] - 1e-6]
            entry["delay_s"] = max(0.0, min(live) - first_mal[h]) if live else None
        per_host[h] = entry
    false = sum(per_host[h]["incidents"] for h in benign_hosts)
    infected = sorted(first_mal)
    return {
        "hosts": per_host,
        "days": days,
        "benign_devices": len(benign_hosts),
        "false_incidents": false,
        "false_incidents_per_device_per_day": (false / len(benign_hosts) / days) if benign_hosts and days > 0 else 0.0,
        "devices_with_false_incidents": sorted(h for h in benign_hosts if per_host[h]["incidents"]),
        "infected_hosts": infected,
        "infected_detected": [h for h in infected if per_host[h]["incidents"]],
        "delays_s": {h: per_host[h]["delay_s"] for h in infected},
    }
