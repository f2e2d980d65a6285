"""The oneway rule on a flood still in progress: the meter lists unanswered flows before they end and the
agent opens the incident while the flood lasts (a flood's one flow ends only when the flood stops)."""

from __future__ import annotations

import json

from frames import udp_frame, write_pcap

from edgebot.edge.meter import FlowMeter
from edgebot.incidents import EvidenceRule

HOST, TARGET = "192.168.1.50", "1.1.1.1"  # a global address: the rule leaves private and multicast ones out


def _flood(pps: float, seconds: float, start: float = 1_600_000_000.0, dst: str = TARGET, sport: int = 40000):
    frame = udp_frame(HOST, sport, dst, 53, b"x" * 18)
    n = int(pps * seconds)
    return [(start + i / pps, frame) for i in range(n)]


def _feed(meter: FlowMeter, packets):
    for ts, frame in packets:
        meter.add_packet(ts, frame)


def test_the_meter_lists_a_flood_in_progress_once_and_nothing_else():
    meter = FlowMeter()
    packets = _flood(200, 30)
    _feed(meter, packets[:1000])  # 5 s: too short for a rate
    assert meter.unanswered(100.0) == []
    _feed(meter, packets[1000:2400])  # 12 s
    (u,) = meter.unanswered(100.0)
    assert (u.orig_h, u.resp_h, u.resp_p, u.proto) == (HOST, TARGET, 53, "udp")
    assert 190 < u.pps < 210 and u.orig_pkts == 2400
    assert meter.unanswered(100.0) == []  # listed once; again only at twice the rate
    assert meter.unanswered(50.0) == []
    # an answered flow, a private destination and a slow flow are never listed
    answered = _flood(200, 15, start=packets[2400][0], dst="8.8.8.8", sport=40001)
    reply = udp_frame("8.8.8.8", 53, HOST, 40001, b"y" * 18)
    lan = _flood(200, 15, start=packets[2400][0], dst="192.168.1.1", sport=40002)
    slow = _flood(20, 15, start=packets[2400][0], dst="9.9.9.9", sport=40003)
    merged = sorted(answered + [(answered[0][0] + 0.001, reply)] + lan + slow + packets[2400:], key=lambda p: p[0])
    _feed(meter, merged)
    assert meter.unanswered(100.0) == []  # the first flood was listed already; nothing new qualifies
    assert [u.resp_h for u in meter.unanswered(10.0)] == ["9.9.9.9"]  # a lower bar finds the slow one
    assert {r.resp_h for r in meter.flush()} == {TARGET, "8.8.8.8", "192.168.1.1", "9.9.9.9"}
    assert meter.unanswered(1.0) == []  # ended flows are the records' business


def test_a_flood_whose_rate_doubles_is_listed_again():
    meter = FlowMeter()
    slow = _flood(150, 12)
    _feed(meter, slow)
    assert len(meter.unanswered(100.0)) == 1
    fast = _flood(2000, 10, start=slow[-1][0] + 0.001)
    _feed(meter, fast)
    (u,) = meter.unanswered(100.0)
    assert u.pps > 300


def test_the_judge_takes_a_flood_in_progress_only_above_the_bar_and_only_once_per_incident(tmp_path):
    from edgebot.allow import AllowList, make_rule
    from edgebot.judge import FlowJudge

    judge = FlowJudge.build("gw", {"id": "m", "version": "1"}, 0.5, EvidenceRule())
    assert judge.observe_unanswered(HOST, 100.0, TARGET, 53, "udp", 99.0, 80.0) == []
    (new,) = [m for m in judge.observe_unanswered(HOST, 100.0, TARGET, 53, "udp", 250.0, 80.0) if m["type"] == "new"]
    assert "oneway" in new["rules"] and new["host"] == HOST
    assert new["first_seen"] == 80.0 and new["opened"] == 100.0 and new["flows"] == 0  # the flow has not ended
    assert judge.observe_unanswered(HOST, 105.0, TARGET, 53, "udp", 900.0, 80.0) == []  # open: its record updates it
    assert judge.stats()["unanswered_reports"] == 1
    allow = AllowList(tmp_path)
    allow.add(make_rule("192.168.1.51", peer=TARGET, reason="speed test"))
    allowed = FlowJudge.build("gw", {"id": "m", "version": "1"}, 0.5, EvidenceRule(), allow=allow)
    assert allowed.observe_unanswered("192.168.1.51", 100.0, TARGET, 53, "udp", 900.0, 80.0) == []


def test_the_agent_reports_a_flood_while_it_lasts_not_when_it_ends(tmp_path):
    """120 s of a 400 packets/s UDP flood to one Internet address that never answers, replayed with the
    shipped bundle and the default site learning from the first packet: the flood's one flow ends with
    the capture, yet the incident opens seconds after the flood passes the rule's 10 s."""
    from edgebot.edge.agent import run_agent
    from edgebot.edge.config import load_config
    from edgebot.shipped import default_bundle

    packets = _flood(400, 120)
    pcap = write_pcap(tmp_path / "flood.pcap", packets)
    out = tmp_path / "incidents.jsonl"
    cfg = load_config(None, {"bundle": str(default_bundle()), "gateway_id": "gw", "source.pcap": str(pcap),
                             "jsonl.path": str(out), "state_dir": str(tmp_path / "state")}).validate()
    summary = run_agent(cfg)
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    new = [m for m in messages if m.get("type") == "new"]
    assert [m["host"] for m in new] == [HOST] and "oneway" in new[0]["rules"]
    start, end = packets[0][0], packets[-1][0]
    assert new[0]["opened"] - start < 20.0 < end - start  # within seconds of the 10 s a rate needs
    assert new[0]["first_seen"] == start and new[0]["flows"] == 0
    (last,) = [m for m in messages if m.get("type") == "end"]
    assert last["flows"] == 1 and last["last_seen"] >= end - 1e-6  # the flood's one flow, counted once, at its end
    assert summary.evidence["unanswered_reports"] == 1
