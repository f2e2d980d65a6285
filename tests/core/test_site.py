"""Site learning, allow rules and the judge that combines them with the evidence rule."""

from __future__ import annotations

import json
import os
import stat

import pytest

from edgebot.allow import AllowList, make_rule, parse_peer
from edgebot.errors import ConfigError
from edgebot.judge import FlowJudge, incident_outcomes, replay_flows
from edgebot.site import (PROFILE_FILE, SiteProfile, SiteSettings, known_incident, parse_duration, request_reset,
                          take_reset_request, RecentIncidents)

TH = 0.05


def _judge(learn_s=0.0, allow=None, **settings):
    site = SiteProfile("bundle-1", TH, SiteSettings(learn_s=learn_s, **settings)) if learn_s else None
    return FlowJudge.build("gw", {"id": "bundle-1", "version": "x"}, TH, site=site, allow=allow)


def _feed(judge, host, t0, n, score, gap=5.0, dest="9.9.9.9", port=6667, state="S0"):
    msgs = []
    for i in range(n):
        msgs += judge.observe(host, t0 + i * gap, score, dest, port, "tcp", state)
    return msgs


def test_learning_holds_back_ordinary_evidence_then_the_device_threshold_absorbs_its_borderline_normal():
    j = _judge(learn_s=3600)
    # a camera whose normal includes borderline scores (0.4) to its cloud, every 30 s for an hour
    msgs = _feed(j, "cam", 0.0, 120, 0.4, gap=30.0, dest="52.0.0.1", port=443, state="SF")
    assert msgs == []
    dev = j.site.devices["cam"]
    assert dev.learned_flows == 120 and j.site.threshold("cam") == TH  # still learning: the bundle's threshold
    _feed(j, "cam", 3600.0, 1, 0.01, dest="52.0.0.1", port=443, state="SF")  # learning is over
    assert j.site.threshold("cam") > 0.4  # its own threshold now covers its borderline normal
    assert j.site.is_usual_peer("cam", "52.0.0.1:443")
    # after learning the same borderline traffic is not even flagged
    assert _feed(j, "cam", 4000.0, 100, 0.4, gap=2.0, dest="52.0.0.1", port=443, state="SF") == []


def test_a_device_infected_on_day_one_is_reported_and_its_c2_never_learned():
    j = _judge(learn_s=6 * 3600)
    msgs = _feed(j, "pi", 0.0, 40, 0.999, gap=5.0)  # C&C from the first flow, every 5 s
    new = [m for m in msgs if m["type"] == "new"]
    assert len(new) == 1 and new[0]["during_learning"] and new[0]["severity"] in ("high", "critical")
    dev = j.site.devices["pi"]
    assert dev.learned_flows == 0 and dev.skipped_flows == 40  # high-confidence: never learned
    assert not j.site.is_usual_peer("pi", "9.9.9.9:6667")


def test_a_learned_threshold_never_reaches_confident_scores():
    j = _judge(learn_s=600, min_learned_flows=5)
    # the device's normal is all high scores (a weird but benign device): learning cannot absorb them
    _feed(j, "odd", 0.0, 100, 0.96, gap=1.0, dest="1.1.1.1", port=443, state="SF")
    _feed(j, "odd", 700.0, 1, 0.01)
    assert j.site.threshold("odd") <= j.high_confidence_score


def test_a_device_first_seen_after_the_site_learned_gets_its_own_short_window():
    j = _judge(learn_s=600, device_learn_s=120)
    _feed(j, "old", 0.0, 2, 0.01)
    _feed(j, "old", 700.0, 1, 0.01)
    assert not j.site.learning("old", 700.0)
    _feed(j, "new", 1000.0, 1, 0.01)
    assert j.site.learning("new", 1100.0) and not j.site.learning("new", 1121.0)


def test_profile_survives_a_restart_with_private_files(tmp_path):
    j = _judge(learn_s=3600)
    _feed(j, "cam", 0.0, 30, 0.02, dest="52.0.0.1", port=443, state="SF")
    path = j.site.save(tmp_path / "state")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = SiteProfile.load(tmp_path / "state", "bundle-1", TH, SiteSettings(learn_s=3600))
    assert again.devices["cam"].learned_flows == 30 and again.site_start == 0.0


@pytest.mark.parametrize("content, why", [
    (b"not json at all", "unreadable"),
    (json.dumps({"schema": "something-else"}).encode(), "foreign"),
    (json.dumps({"schema": "edgebot-site", "version": 99, "bundle_id": "bundle-1", "devices": {}}).encode(), "newer"),
    (json.dumps({"schema": "edgebot-site", "version": 1, "bundle_id": "other", "devices": {}, "site_start": 0}).encode(),
     "stale"),
    (json.dumps({"schema": "edgebot-site", "version": 1, "bundle_id": "bundle-1", "site_start": 0,
                 "devices": {"h": {"first_seen": "x"}}}).encode(), "unreadable"),
])
def test_corrupt_foreign_newer_or_stale_profiles_are_moved_aside_and_learning_restarts(tmp_path, caplog, content, why):
    (tmp_path / PROFILE_FILE).write_bytes(content)
    prof = SiteProfile.load(tmp_path, "bundle-1", TH)
    assert prof.devices == {} and prof.site_start is None
    assert not (tmp_path / PROFILE_FILE).exists()
    assert any(p.name.startswith(PROFILE_FILE + ".") for p in tmp_path.iterdir())
    (record,) = [r for r in caplog.records if "site profile" in r.getMessage()]
    assert why in record.getMessage() and "\n" not in record.getMessage()


def test_devices_are_capped_and_evictions_counted():
    j = _judge(learn_s=3600, max_devices=50)
    for i in range(500):
        j.observe(f"10.0.{i // 256}.{i % 256}", float(i), 0.01, "8.8.8.8", 53, "udp", "SF")
    assert len(j.site.devices) == 50 and j.site.evicted == 450


def test_allow_rules_suppress_and_count_and_reload_without_restart(tmp_path):
    allow = AllowList(tmp_path)
    j = _judge(allow=allow)
    assert _feed(j, "10.0.0.66", 0.0, 3, 0.999)[0]["type"] == "new"
    # the operator marks it a false alarm in another process: a new AllowList on the same dir
    AllowList(tmp_path).add(make_rule("10.0.0.66", reason="lab box"))
    ended = j.apply_allow_changes()
    assert [m["type"] for m in ended] == ["end"] and ended[0]["reason"] == "allowed"
    assert _feed(j, "10.0.0.66", 100.0, 10, 0.999) == []
    assert j.suppressed_flows == 10 and sum(allow.suppressed.values()) == 10
    # a peer-only rule suppresses that peer only
    AllowList(tmp_path).add(make_rule("10.0.0.7", "52.1.2.3:8883"))
    j.apply_allow_changes()
    assert _feed(j, "10.0.0.7", 0.0, 5, 0.999, dest="52.1.2.3", port=8883) == []
    assert _feed(j, "10.0.0.7", 50.0, 3, 0.999, dest="52.1.2.4", port=8883)[0]["type"] == "new"


def test_allow_rule_validation():
    assert parse_peer("[fe80::1]:443") == ("fe80::1", 443)
    assert parse_peer("10.0.0.1") == ("10.0.0.1", None)
    assert make_rule("192.168.9.9").host == "192.168.9.9"  # a host never seen is fine
    with pytest.raises(ConfigError, match="not an IP address"):
        make_rule("not-an-ip")
    with pytest.raises(ConfigError, match="0 to 65535"):
        make_rule("10.0.0.1", "10.0.0.2:99999")


def test_a_corrupt_allow_list_is_moved_aside(tmp_path, caplog):
    (tmp_path / "allow.json").write_text("{broken")
    rules = AllowList(tmp_path)
    assert len(rules) == 0 and any(p.name.startswith("allow.json.corrupt") for p in tmp_path.iterdir())


def test_reset_requests_and_recent_incidents(tmp_path):
    j = _judge(learn_s=3600)
    _feed(j, "cam", 0.0, 30, 0.02)
    j.site.save(tmp_path)
    assert request_reset(tmp_path, "cam") is True  # the saved profile changed too
    assert take_reset_request(tmp_path) == ["cam"] and take_reset_request(tmp_path) is None
    request_reset(tmp_path)
    assert take_reset_request(tmp_path) == [None]
    recent = RecentIncidents(tmp_path)
    recent.add({"incident_id": "abcdef0123456789", "host": "10.0.0.5", "opened": 1.0, "rules": ["confident"],
                "peers": [], "severity": "low"})
    recent.save()
    assert known_incident(tmp_path, "abcdef")["host"] == "10.0.0.5" and known_incident(tmp_path, "zz") is None


def test_outcomes_count_false_incidents_per_device_day_and_delay():
    j = _judge()
    hosts = ["cam"] * 10 + ["bot"] * 10
    ends = [i * 100.0 for i in range(10)] + [50_000.0 + i for i in range(10)]
    scores = [0.01] * 10 + [0.999] * 10
    msgs = replay_flows(j, hosts, ends, scores, ["1.1.1.1"] * 20, [443] * 20, ["tcp"] * 20, ["SF"] * 20)
    out = incident_outcomes(msgs, hosts, ends, [False] * 10 + [True] * 10, [True] * 20)
    assert out["benign_devices"] == 1 and out["false_incidents"] == 0
    assert out["infected_detected"] == ["bot"] and out["delays_s"]["bot"] == pytest.approx(2.0)


def test_parse_duration():
    assert parse_duration("6h") == 21600 and parse_duration("30m") == 1800 and parse_duration("90") == 90
    assert parse_duration("1d") == 86400
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_mqtt_commands_validate_and_change_nothing_on_error(tmp_path):
    from edgebot.edge.commands import CommandHandler

    j = _judge(learn_s=3600, allow=AllowList(tmp_path))
    published = []
    h = CommandHandler(j, tmp_path, published.extend)
    msgs = _feed(j, "10.0.0.8", 0.0, 12, 0.999)
    inc_id = msgs[0]["incident_id"]
    for bad in (b"nope", b"[]", b'{"command": "fly"}', b'{"command": "allow", "host": "10.0.0.8", "colour": "x"}',
                b'{"command": "allow", "host": 5}', b'{"command": "allow", "host": "not-an-ip"}',
                b'{"command": "unallow", "rule": "nothing"}', b"x" * 5000):
        reply = h.handle(bad)
        assert reply["ok"] is False and reply["error"]
    assert len(j.allow) == 0 and h.refused == 8
    reply = h.handle(json.dumps({"command": "allow", "incident": inc_id[:8], "id": 7}).encode())
    assert reply == {"ok": True, "command": "allow", "rule": reply["rule"], "added": True, "host": "10.0.0.8",
                     "peer": None, "port": None, "id": 7}
    assert [m["type"] for m in published] == ["end"]  # the allowed host's incident ends
    assert h.handle(b'{"command": "rules"}')["rules"][0]["host"] == "10.0.0.8"
    assert "10.0.0.8" in h.handle(b'{"command": "site-status"}')["devices"]
    assert h.handle(b'{"command": "site-reset"}')["devices_forgotten"] == 1


def test_a_flood_of_one_flow_sources_never_evicts_learned_devices():
    j = _judge(learn_s=3600, max_devices=100, min_learned_flows=20)
    for i in range(30):  # the site's real devices, each with a proper history
        _feed(j, f"192.168.1.{i}", 0.0, 25, 0.01, gap=1.0, dest="8.8.8.8", port=53, state="SF")
    for i in range(10_000):  # then a spoofed flood: one flow per source
        j.observe(f"10.{i // 256}.{i % 256}.9", 100.0 + i * 1e-3, 0.01, "192.168.1.1", 80, "tcp", "S0")
    assert all(f"192.168.1.{i}" in j.site.devices for i in range(30))
    assert len(j.site.devices) == 100 and j.site.evicted == 30 + 10_000 - 100
