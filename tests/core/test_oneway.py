"""The oneway rule: one unanswered flow at flood rate to an Internet address opens an incident whatever its score."""

from __future__ import annotations

import pytest

from edgebot.evidence import ONEWAY_MIN_S, EvidenceRule, oneway_rate
from edgebot.judge import FlowJudge
from edgebot.site import SiteProfile, SiteSettings
from shipped_scores import shipped_capture

TH = 0.05
T0 = 1_700_000_000.0


@pytest.mark.parametrize("orig_pkts, resp_pkts, duration, dest, expected", [
    (1_305_034, 0, 300.8, "86.136.151.56", 1_305_034 / 300.8),  # Mirai 44-1's UDP flood
    (1_305_034, 3, 300.8, "86.136.151.56", 0.0),  # answered: a stream, not a flood
    (50_000, 0, ONEWAY_MIN_S / 2, "86.136.151.56", 0.0),  # too short for a rate
    (60_000, 0, 300.0, "192.168.1.20", 0.0),  # a LAN camera's stream to its recorder
    (60_000, 0, 300.0, "224.0.0.251", 0.0), (60_000, 0, 300.0, "fe80::1", 0.0), (60_000, 0, 300.0, "ff02::fb", 0.0),
    (60_000, 0, 300.0, "2a00:1450:4001:82a::200e", 200.0),  # global IPv6
    (60_000, 0, 300.0, "not-an-address", 0.0), (0, 0, 300.0, "8.8.8.8", 0.0),
])
def test_oneway_rate(orig_pkts, resp_pkts, duration, dest, expected):
    assert oneway_rate(orig_pkts, resp_pkts, duration, dest) == pytest.approx(expected)


def _judge(learn_s: float = 0.0) -> FlowJudge:
    site = SiteProfile("b", TH, SiteSettings(learn_s=learn_s)) if learn_s else None
    return FlowJudge.build("gw", {"id": "b", "version": "x"}, TH, site=site)


def _one(judge: FlowJudge, pps: float, host: str = "192.168.1.199") -> list[dict]:
    msgs = judge.observe(host, T0 + 300.0, 0.0, "86.136.151.56", 80, "udp", "S0", oneway=pps)
    return [m for m in msgs + judge.tracker.tick(T0 + 301.0) if m["type"] == "new"]


def test_one_flood_flow_scored_benign_opens_an_incident_naming_the_rule():
    (new,) = _one(_judge(), 4338.5)
    assert new["rules"] == ["oneway"] and new["evidence"]["oneway_pps"] == pytest.approx(4338.5)
    assert new["severity"] == "critical"  # 43 times the bar
    assert _one(_judge(), EvidenceRule().oneway_pps * 0.9) == []  # below the bar: nothing


def test_while_learning_only_a_flood_far_above_the_bar_opens_one_and_it_is_never_learned():
    bar = EvidenceRule().oneway_pps
    judge = _judge(learn_s=6 * 3600.0)
    judge.observe("192.168.1.199", T0, 0.0, "1.1.1.1", 443, "tcp", "SF")  # the device is first seen: learning
    assert _one(judge, 2 * bar) == []  # strength 2 < high_confidence 3: held back while the site learns
    assert judge.stats()["suppressed_while_learning"] == 1
    dev = judge.site.devices["192.168.1.199"]
    learned = dev.learned_flows
    (new,) = _one(judge, 40 * bar)
    assert new["rules"] == ["oneway"] and new["during_learning"] is True
    assert dev.learned_flows == learned  # flood flows are never learned as normal


def test_on_the_bundled_data_the_bar_sits_far_from_benign_and_mirai_44_1_is_found_by_it():
    """Real flows: every Zeek log in data/; the shipped bundle on Mirai 44-1 (which it scores benign but the flood)."""
    from edgebot import datasets
    from edgebot.evaluate import capture_incidents
    from edgebot.readers import read_flows

    bar = EvidenceRule().oneway_pps
    root = datasets.data_root()
    logs = sorted(p for p in root.rglob("*conn.log*") if p.is_file() and not p.name.endswith(".md"))
    assert len(logs) >= 50
    fastest = {"benign": 0.0, "malicious": 0.0}
    for path in logs:
        records, _ = read_flows([path])
        for r in records:
            kind = "malicious" if r.label == "malicious" else "benign"  # background counts as benign here
            fastest[kind] = max(fastest[kind], oneway_rate(r.orig_pkts, r.resp_pkts, r.duration, r.resp_h))
    assert fastest["benign"] < bar / 10 and fastest["malicious"] > 10 * bar

    bundle, records, scores = shipped_capture("iot23/CTU-IoT-Malware-Capture-44-1conn.log.labeled.csv.xz")
    for learn_s in (0.0, 6 * 3600.0):
        out = capture_incidents(bundle, records, scores, learn_s=learn_s)
        assert out["infected_detected"] == ["192.168.1.199"] and out["false_incidents"] == 0
        assert 6000 < out["delays_s"]["192.168.1.199"] < 7000  # the flood starts 1.7 h into the capture
