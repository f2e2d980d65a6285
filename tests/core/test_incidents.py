"""The evidence rule: new / update / end per host, no incident from a few borderline flows, bounded tables."""

from __future__ import annotations

import pytest

from edgebot.incidents import EvidenceRule, IncidentTracker, severity_for

MODEL = {"id": "abc", "version": "0.1.0"}


def _tracker(**kw):
    rule_kw = {k: kw.pop(k) for k in list(kw) if k in EvidenceRule.__dataclass_fields__}
    args = dict(gateway_id="gw", model=MODEL, threshold=0.5, update_interval_s=30, quiet_period_s=300,
                rule=EvidenceRule(**rule_kw))
    args.update(kw)
    return IncidentTracker(**args)


def _flow(t, host, ts, score, dest="1.2.3.4", port=6667, state="SF"):
    return t.observe(host, ts, score, f"{dest}:{port}/tcp", dest=dest, port=port, conn_state=state)


def test_benign_flows_raise_nothing():
    t = _tracker()
    msgs = [m for i in range(100) for m in _flow(t, "10.0.0.2", float(i), 0.1)]
    assert msgs == [] and t.tick(10_000.0) == [] and t.pending_hosts == 0


def test_new_then_rate_limited_updates_then_end():
    t = _tracker()
    msgs = []
    for i in range(120):  # one confident flow per second for two minutes
        msgs += t.observe("10.0.0.5", 1000.0 + i, 0.995, peer=f"1.2.3.4:{23 + i % 2}/tcp", community_id="1:x")
    kinds = [m["type"] for m in msgs]
    assert kinds[0] == "new" and kinds.count("new") == 1
    new = msgs[0]
    assert new["rules"] == ["confident"] and new["opened"] == 1002.0 and new["malicious_flows"] == 3
    assert kinds.count("update") == 3  # at 32, 62, 92 s
    assert t.tick(1000.0 + 119 + 299) == []  # not yet quiet long enough
    (end,) = t.tick(1000.0 + 119 + 300)
    assert end["type"] == "end" and end["flows"] == 120 and end["malicious_flows"] == 120
    assert end["first_seen"] == 1000.0 and end["last_seen"] == 1119.0
    assert end["incident_id"] == new["incident_id"]
    assert set(end["peers"]) == {"1.2.3.4:23/tcp", "1.2.3.4:24/tcp"}
    for key in ("type", "incident_id", "gateway_id", "host", "first_seen", "opened", "last_seen", "flows",
                "malicious_flows", "score", "threshold", "bundle_threshold", "severity", "rules", "strength",
                "evidence", "during_learning", "model", "peers", "community_id"):
        assert key in end
    assert end["severity"] == "critical" and end["model"] == MODEL


def test_a_few_borderline_flows_never_open_an_incident():
    t = _tracker()
    # flagged but far from confident (0.6 against a 0.5 threshold; confident from 0.95), to one peer
    msgs = [m for i in range(50) for m in _flow(t, "h", float(i * 10), 0.6, state="SF")]
    assert msgs == [] and t.pending_hosts == 1
    assert t.tick(10_000.0) == [] and t.pending_hosts == 0  # stale evidence is dropped


def test_confident_flows_spread_beyond_the_window_do_not_add_up():
    t = _tracker(window_s=60)
    assert _flow(t, "h", 0.0, 0.99) == []
    assert _flow(t, "h", 100.0, 0.99) == []
    assert _flow(t, "h", 200.0, 0.99) == []
    (new,) = _flow(t, "h", 210.0, 0.99) + _flow(t, "h", 220.0, 0.99)
    assert new["type"] == "new" and new["first_seen"] == 200.0 and new["evidence"]["confident"] == 3


def test_a_busy_host_with_three_odd_confident_flows_is_not_an_incident():
    t = _tracker()
    msgs = []
    for i in range(600):  # 600 clean flows, three confident ones among them
        score = 0.99 if i in (100, 101, 102) else 0.1
        msgs += _flow(t, "busy", 1000.0 + i * 0.2, score, state="SF")
    assert msgs == []


def test_a_booting_device_contacting_each_cloud_once_is_not_a_c2_channel():
    t = _tracker()
    # confident, failed first contacts with four different cloud services (a device on its setup network)
    msgs = [m for i, dest in enumerate(["52.1.1.1", "52.2.2.2", "52.3.3.3", "52.4.4.4"] * 2)
            for m in _flow(t, "plug", i * 2.0, 0.99, dest=dest, port=443, state="S0")]
    assert msgs == []
    # the same confident flows to one server are a channel
    t2 = _tracker()
    assert [m["type"] for i in range(4) for m in _flow(t2, "bot", i * 2.0, 0.99, dest="52.1.1.1", port=443,
                                                        state="S0")] == ["new"]


def test_a_scan_opens_an_incident_from_borderline_flows():
    t = _tracker()
    msgs = [m for i in range(40) for m in _flow(t, "scanner", float(i), 0.6, dest=f"10.1.0.{i}", port=23,
                                                  state="S0")]
    (new,) = msgs
    assert new["rules"] == ["scan"] and new["evidence"]["destinations"] >= 16


def test_a_flood_opens_an_incident():
    t = _tracker(flood_rate=5.0, flood_burst=100.0)
    msgs = [m for i in range(1000) for m in _flow(t, "flooder", i * 0.01, 0.6, dest="10.9.9.9", port=80,
                                                    state="SF")]
    assert [m["type"] for m in msgs][:1] == ["new"] and "flood" in msgs[0]["rules"]


def test_a_regular_beacon_opens_an_incident():
    t = _tracker()
    msgs = [m for i in range(10) for m in _flow(t, "bot", i * 30.0, 0.9, state="SF")]
    assert msgs and msgs[0]["type"] == "new" and msgs[0]["rules"] == ["beacon"]


def test_a_reconnect_storm_opens_an_incident_whatever_the_scores():
    t = _tracker()
    # refused connections to one C&C every 0.7 s, scored as benign by the model
    msgs = [m for i in range(200) for m in _flow(t, "rat", i * 0.7, 0.01, dest="66.6.6.6", port=5888, state="REJ")]
    new = [m for m in msgs if m["type"] == "new"]
    assert len(new) == 1 and new[0]["rules"] == ["retry"] and 30 < new[0]["opened"] < 60
    # a device whose cloud refuses it every 10 s never gets there
    t2 = _tracker()
    assert [m for i in range(500) for m in _flow(t2, "cam", i * 10.0, 0.01, state="REJ")] == []


def test_hosts_are_independent_and_a_new_incident_follows_an_ended_one():
    t = _tracker(quiet_period_s=10)
    a = _flow(t, "a", 0.0, 0.99) + _flow(t, "a", 0.5, 0.99) + _flow(t, "a", 1.0, 0.99)
    b = _flow(t, "b", 1.0, 0.99) + _flow(t, "b", 1.5, 0.99) + _flow(t, "b", 2.0, 0.99)
    assert [m["host"] for m in a + b] == ["a", "b"]
    ended = t.tick(20.0)
    assert sorted(m["host"] for m in ended) == ["a", "b"]
    again = _flow(t, "a", 30.0, 0.99) + _flow(t, "a", 31.0, 0.99) + _flow(t, "a", 32.0, 0.99)
    assert again[0]["type"] == "new" and again[0]["incident_id"] != a[0]["incident_id"]


def test_close_all_ends_open_incidents():
    t = _tracker()
    for i in range(3):
        _flow(t, "h", float(i), 0.99)
    (end,) = t.close_all()
    assert end["type"] == "end" and end["reason"] == "source ended" and t.open_incidents == 0


def test_unattributable_sources_never_open_an_incident():
    t = _tracker()
    msgs = [m for host in ("0.0.0.0", "::") for i in range(30) for m in _flow(t, host, float(i), 0.99)]
    assert msgs == [] and t.events["unattributable_flows"] == 60


def test_learning_raises_only_high_confidence_evidence():
    class Learning:
        def threshold(self, host):
            return 0.5

        def learning(self, host, ts):
            return True

        def is_usual_peer(self, host, peer, ts):
            return False

    t = _tracker()
    t.site = Learning()
    msgs = [m for i in range(8) for m in _flow(t, "h", float(i), 0.99)]
    assert msgs == [] and t.events["suppressed_while_learning"] > 0  # strength 1 to 2.67: held back
    (new,) = _flow(t, "h", 8.0, 0.99)  # nine confident flows: strength 3, high confidence
    assert new["during_learning"] is True and new["severity"] == "high"


def test_pending_evidence_is_capped_and_evictions_counted():
    t = _tracker(max_pending_hosts=100)
    for i in range(10_000):  # a SYN flood from 10,000 sources, one flagged flow each
        _flow(t, f"10.{i // 256}.{i % 256}.1", float(i) * 1e-3, 0.99)
    assert t.pending_hosts == 100 and t.events["pending_evicted"] == 9_900


def test_peers_per_incident_are_capped_and_drops_counted():
    t = _tracker(max_peers_tracked=50)
    for i in range(3):
        _flow(t, "h", float(i), 0.99)
    for i in range(5_000):  # one host talking to 5,000 distinct peers
        t.observe("h", 3.0 + i * 1e-3, 0.99, f"10.2.{i // 256}.{i % 256}:80/tcp")
    inc = t.open_incident("h")
    assert inc is not None and inc["peers_dropped"] >= 5_000 - 50 and t.events["peers_dropped"] == inc["peers_dropped"]


def test_open_incidents_are_capped_and_the_quietest_ended():
    t = _tracker(max_open_incidents=3)
    msgs = []
    for h in range(5):
        for i in range(3):
            msgs += _flow(t, f"h{h}", h * 10.0 + i, 0.99)
    assert t.open_incidents == 3 and t.events["incidents_evicted"] == 2
    assert [m["host"] for m in msgs if m["type"] == "end"] == ["h0", "h1"]


def test_rule_rejects_nonsense():
    with pytest.raises(ValueError, match="window_s"):
        EvidenceRule(window_s=0)
    with pytest.raises(ValueError, match="confident_fraction"):
        EvidenceRule(confident_fraction=1.5)


def test_severity_levels():
    assert severity_for(8.0, 0.9, 3) == "critical"
    assert severity_for(1.0, 0.9995, 60) == "critical"
    assert severity_for(3.0, 0.9, 9) == "high"
    assert severity_for(1.6, 0.9, 5) == "medium"
    assert severity_for(1.0, 0.9, 3) == "low"


def test_an_incident_quiet_long_enough_ends_before_the_next_flagged_flow_even_without_a_tick():
    t = _tracker(quiet_period_s=300)
    first = [m for i in range(3) for m in _flow(t, "h", float(i), 0.99)]
    later = [m for i in range(3) for m in _flow(t, "h", 1000.0 + i, 0.99)]  # no tick in between
    assert [m["type"] for m in first] == ["new"]
    assert [m["type"] for m in later] == ["end", "new"] and later[0]["reason"] == "quiet"
    assert later[1]["incident_id"] != first[0]["incident_id"]
