"""Flows in which the host sent nothing are scored but never evidence against it (edgebot.evidence.responder_only)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgebot.evidence import responder_only
from edgebot.judge import FlowJudge, incident_outcomes, replay_records
from shipped_scores import shipped_capture

TH = 0.05


@pytest.mark.parametrize("history, orig_pkts, expected", [
    ("h", 0, True),  # an unasked SYN-ACK (backscatter)
    ("a", 0, True), ("d", 0, True), ("hda", 0, True), ("dr", 0, True),
    ("h", 1, False),  # the originator's packet was counted: it did send something
    ("Sh", 1, False), ("ShADadfF", 6, False),
    ("C", 0, False),  # bad-checksum packets *from* the originator (Mirai 34-1's flood: Zeek counts 0 packets)
    ("", 0, False),  # no history (a source without one): never assumed silent
])
def test_responder_only_reads_zeek_history_and_packets(history, orig_pkts, expected):
    assert responder_only(history, orig_pkts) is expected


def _flows(n: int, silent: bool, judge: FlowJudge) -> list[dict]:
    msgs: list[dict] = []
    for i in range(n):
        msgs += judge.observe("10.0.0.5", 1_700_000_000.0 + 20 * i, 0.999, "5.9.19.146", 80, "tcp", "OTH",
                              silent=silent)
    return msgs + judge.tracker.tick(1_700_000_000.0 + 20 * n)


def test_confident_responder_only_flows_open_no_incident_and_are_counted():
    quiet = FlowJudge.build("gw", {"id": "b", "version": "x"}, TH)
    assert [m for m in _flows(10, True, quiet) if m["type"] == "new"] == []
    assert quiet.stats()["responder_only_flows"] == 10 and quiet.tracker.pending_hosts == 0
    loud = FlowJudge.build("gw", {"id": "b", "version": "x"}, TH)  # the same flows, sent by the host
    assert len([m for m in _flows(10, False, loud) if m["type"] == "new"]) == 1
    assert loud.stats()["responder_only_flows"] == 0


def test_the_windows_host_of_strato_010_keeps_quiet_only_because_of_it():
    """Real flows, the shipped bundle: the benign host's false incident came from flows it never sent."""
    bundle, records, scores = shipped_capture("stratosphere/010-zeek-mixed.conn.log.labeled.xz")
    host = "147.32.83.234"  # the capture's local Windows host, benign

    def outcome(recs):
        judge = FlowJudge.build("eval", {"id": bundle.bundle_id, "version": bundle.version}, bundle.threshold)
        out = incident_outcomes(replay_records(judge, recs, scores), [r.orig_h for r in recs],
                                [r.ts + (r.duration or 0.0) for r in recs], [r.label == "malicious" for r in recs],
                                [r.is_labeled for r in recs])
        return out, judge.stats()["responder_only_flows"]

    flagged = [r for r, s in zip(records, scores) if r.orig_h == host and r.label == "benign" and s >= bundle.threshold]
    silent = [r for r in flagged if responder_only(r.history, r.orig_pkts)]
    assert len(silent) >= len(flagged) / 2  # most of its flagged benign flows are traffic it never sent
    out, counted = outcome(records)
    assert host not in out["devices_with_false_incidents"] and counted >= len(silent)
    # the same flows with their originator packets marked as sent: the host gets a false incident
    as_sent = [replace(r, orig_pkts=1) if r.orig_h == host and responder_only(r.history, r.orig_pkts) else r
               for r in records]
    out, counted = outcome(as_sent)
    assert host in out["devices_with_false_incidents"]
