"""Incident logic: new / update / end per host, no message per flow, quiet hosts stay quiet."""

from __future__ import annotations

from edgebot.edge.incidents import IncidentTracker, severity_for

MODEL = {"id": "abc", "version": "0.1.0"}


def _tracker(**kw):
    args = dict(gateway_id="gw", model=MODEL, threshold=0.5, update_interval_s=30, quiet_period_s=300)
    args.update(kw)
    return IncidentTracker(**args)


def test_benign_flows_raise_nothing():
    t = _tracker()
    msgs = [m for i in range(100) for m in t.observe("10.0.0.2", float(i), 0.1)]
    assert msgs == [] and t.tick(10_000.0) == []


def test_new_then_rate_limited_updates_then_end():
    t = _tracker()
    msgs = []
    for i in range(120):  # one malicious flow per second for two minutes
        msgs += t.observe("10.0.0.5", 1000.0 + i, 0.995, peer=f"1.2.3.4:{23 + i % 2}/tcp", community_id="1:x")
    kinds = [m["type"] for m in msgs]
    assert kinds[0] == "new" and kinds.count("new") == 1
    assert kinds.count("update") == 3  # at 30, 60, 90 s
    assert t.tick(1000.0 + 119 + 299) == []  # not yet quiet long enough
    (end,) = t.tick(1000.0 + 119 + 300)
    assert end["type"] == "end" and end["flows"] == 120 and end["malicious_flows"] == 120
    assert end["first_seen"] == 1000.0 and end["last_seen"] == 1119.0
    assert end["incident_id"] == msgs[0]["incident_id"]
    assert set(end["peers"]) == {"1.2.3.4:23/tcp", "1.2.3.4:24/tcp"}
    for key in ("type", "incident_id", "gateway_id", "host", "first_seen", "last_seen", "flows", "malicious_flows",
                "score", "threshold", "severity", "model", "peers", "community_id"):
        assert key in end
    assert end["severity"] == "critical" and end["model"] == MODEL


def test_hosts_are_independent_and_a_new_incident_follows_an_ended_one():
    t = _tracker(quiet_period_s=10)
    a = t.observe("a", 0.0, 0.8)
    b = t.observe("b", 1.0, 0.8)
    assert [m["host"] for m in a + b] == ["a", "b"]
    ended = t.tick(20.0)
    assert sorted(m["host"] for m in ended) == ["a", "b"]
    again = t.observe("a", 30.0, 0.8)
    assert again[0]["type"] == "new" and again[0]["incident_id"] != a[0]["incident_id"]


def test_min_malicious_flows_suppresses_single_blips():
    t = _tracker(min_malicious_flows=3, quiet_period_s=60)
    assert t.observe("h", 0.0, 0.9) == []
    assert t.observe("h", 100.0, 0.9) == []  # the first blip expired: count restarts
    assert t.observe("h", 101.0, 0.9) == []
    (new,) = t.observe("h", 102.0, 0.9)
    assert new["type"] == "new" and new["malicious_flows"] == 3 and new["first_seen"] == 100.0


def test_close_all_ends_open_incidents():
    t = _tracker()
    t.observe("h", 0.0, 0.9)
    (end,) = t.close_all()
    assert end["type"] == "end" and end["reason"] == "source ended" and t.open_incidents == 0


def test_severity_levels():
    assert severity_for(0.995, 0.5, 25) == "critical"
    assert severity_for(0.8, 0.5, 1) == "high"
    assert severity_for(0.6, 0.5, 5) == "medium"
    assert severity_for(0.6, 0.5, 1) == "low"
