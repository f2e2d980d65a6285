"""The syslog sink against a real rsyslog: RFC 5424 over UDP, TCP (octet counting) and TLS; outages lose nothing.

rsyslog writes each message as the fields it parsed (``tests/conftest_syslog.py``), so the checks see
what the server understood: PRI, version 1, HOSTNAME, APP-NAME, MSGID, the structured data and the
incident JSON as MSG.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time

import pytest

from brokers import free_port, make_tls_files


from edgebot.edge.config import load_config
from edgebot.edge.sinks.base import sinks_from_config
from edgebot.edge.sinks.syslog import FACILITIES, SD_ID, SyslogSink, format_rfc5424, parse_syslog_url
from edgebot.errors import ConfigError, SinkError
from fixtures_core import PCAP_MIRAI
from incident_samples import real_incidents

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]

GW = "syslog-gw"


@pytest.fixture(scope="module")
def incidents() -> list[dict]:
    found = real_incidents(600, gateway_id=GW)
    assert {m["type"] for m in found} >= {"new", "update", "end"}
    return found[:20] + [m for m in found[20:] if m["type"] == "end"]


def make_sink(url: str, tmp_path, **kwargs) -> SyslogSink:
    kwargs.setdefault("gateway_id", GW)
    kwargs.setdefault("queue_path", tmp_path / "syslog-queue.sqlite")
    kwargs.setdefault("reconnect_delay", (0.1, 0.5))
    return SyslogSink(url, **kwargs)


def check_received(lines: list[dict], sent: list[dict], facility: str = "local5") -> None:
    assert len(lines) == len(sent), (len(lines), len(sent))
    severities = {"critical": 2, "high": 3, "medium": 4, "low": 5}
    for line, incident in zip(lines, sent):
        expected = 6 if incident["type"] == "end" else severities[incident["severity"]]
        assert int(line["pri"]) == FACILITIES.index(facility) * 8 + expected
        assert line["version"] == "1" and line["hostname"] == GW and line["app_name"] == "edgebot"
        assert line["msgid"] == "incident" and line["procid"].isdigit()
        assert line["sd"].startswith(f"[{SD_ID} ") and f'incident_id="{incident["incident_id"]}"' in line["sd"]
        assert json.loads(line["msg"]) == json.loads(json.dumps(incident))


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
def test_incidents_reach_rsyslog(rsyslog, incidents, tmp_path, scheme):  # noqa: F811
    with make_sink(rsyslog.url(scheme), tmp_path) as sink:
        assert sink.wait_ready(10)
        for incident in incidents:
            sink.publish_incident(incident)
        sink.publish_stats({"flows": 1})
        assert sink.flush(10)
        stats = sink.stats()
    check_received(rsyslog.wait_for(len(incidents)), incidents)
    assert stats["published"] == len(incidents) and stats["queued"] == 0 and stats["stats_skipped"] == 1
    assert stats["connects"] == 1 and stats["dropped"] == 0


def test_tls_with_a_private_ca(rsyslog_factory, tls_certs, incidents, tmp_path):  # noqa: F811
    server = rsyslog_factory(tls=tls_certs)
    with make_sink(server.url("tls"), tmp_path, ca_file=str(tls_certs.ca_file)) as sink:
        for incident in incidents[:5]:
            sink.publish_incident(incident)
        assert sink.flush(15), (sink.stats(), server.log())
        sink.check()
    check_received(server.wait_for(5), incidents[:5])


def test_tls_with_the_wrong_ca_is_fatal(rsyslog_factory, tls_certs, incidents, tmp_path):  # noqa: F811
    server = rsyslog_factory(tls=tls_certs)
    other = make_tls_files(tmp_path, "other")
    sink = make_sink(server.url("tls"), tmp_path, ca_file=str(other.ca_file))
    sink.start()
    try:
        sink.publish_incident(incidents[0])
        assert sink.wait_ready(10)
        with pytest.raises(SinkError, match=r"TLS certificate of the syslog server .* rejected.*syslog\.ca_file"):
            sink.check()
        assert sink.stats()["queued"] == 1  # kept, not sent to an unverified server
    finally:
        sink.close(timeout=1)
    assert server.lines() == []


def test_an_unreachable_server_loses_nothing(rsyslog_factory, incidents, tmp_path, caplog):  # noqa: F811
    port = free_port()
    caplog.set_level(logging.WARNING, logger="edgebot.edge.sinks.syslog")
    sink = make_sink(f"tcp://127.0.0.1:{port}", tmp_path)
    sink.start()
    try:
        for incident in incidents[:10]:
            sink.publish_incident(incident)
        assert sink.wait_ready(10)
        sink.check()  # unreachable is not fatal: incidents wait in the queue
        time.sleep(0.5)
        assert sink.stats()["queued"] == 10 and sink.stats()["published"] == 0
        warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1 and f"tcp://127.0.0.1:{port}" in warnings[0], warnings  # said once, one line
        server = rsyslog_factory(tcp_port=port)  # the server comes up: the queue drains in order
        for incident in incidents[10:]:
            sink.publish_incident(incident)
        assert sink.flush(20), sink.stats()
    finally:
        sink.close(timeout=2)
    check_received(server.wait_for(len(incidents)), incidents)


def test_what_is_queued_at_exit_is_sent_at_the_next_start(rsyslog_factory, incidents, tmp_path):  # noqa: F811
    port = free_port()
    first = make_sink(f"tcp://127.0.0.1:{port}", tmp_path)
    with first:
        for incident in incidents[:4]:
            first.publish_incident(incident)
    assert first.stats()["queued"] == 4
    server = rsyslog_factory(tcp_port=port)
    with make_sink(f"tcp://127.0.0.1:{port}", tmp_path) as second:
        assert second.flush(15)
    check_received(server.wait_for(4), incidents[:4])


def test_from_the_config_file(tmp_path, rsyslog, incidents):  # noqa: F811
    toml = tmp_path / "edgebot.toml"
    toml.write_text(f'gateway_id = "{GW}"\nstate_dir = "state"\n[syslog]\nurl = "{rsyslog.url("tcp")}"\n'
                    'facility = "local3"\napp_name = "edgebot-test"\n')
    config = load_config(toml)
    assert config.sink_types() == ["syslog"] and not [p for p in config.problems() if p.startswith("syslog")]
    sink = sinks_from_config(config)
    assert isinstance(sink, SyslogSink) and sink.queue_path == tmp_path / "state" / f"syslog-queue-{GW}.sqlite"
    with sink:
        sink.publish_incident(incidents[0])
        assert sink.flush(10)
    line = rsyslog.wait_for(1)[0]
    severity = {"critical": 2, "high": 3, "medium": 4, "low": 5}[incidents[0]["severity"]]
    assert int(line["pri"]) == FACILITIES.index("local3") * 8 + severity
    assert line["app_name"] == "edgebot-test"


@pytest.mark.parametrize("url, message", [
    ("http://host", "must start with udp://, tcp:// or tls://"),
    ("tcp://", "names no host"),
    ("tcp://host:99999", "is not a URL"),
    ("tcp://user:pw@host", "scheme://host[:port] only"),
])
def test_bad_urls_are_config_errors(url, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_syslog_url(url)
    problems = load_config(None, {"syslog.url": url}).problems()
    assert any(p.startswith("syslog.url: ") and message in p for p in problems)


def test_config_checks(tmp_path):
    problems = load_config(None, {"syslog.url": "tcp://127.0.0.1", "syslog.ca_file": str(tmp_path / "none.pem"),
                                  "syslog.facility": "local9", "state_dir": str(tmp_path)}).problems()
    assert any("TLS files are set but the URL is tcp://" in p for p in problems)
    assert any(p.startswith("syslog.ca_file: no such file") for p in problems)
    assert any(p.startswith("syslog.facility: must be") for p in problems)
    assert parse_syslog_url("tls://[::1]") == ("tls", "::1", 6514)
    assert parse_syslog_url("udp://log.example").port == 514


def test_check_config_names_the_key_exit_1(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(tmp_path), "--pcap",
                          str(tmp_path / "x.pcap"), "--syslog", "syslog://127.0.0.1", "--check-config"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert any(line.startswith("Error: syslog.url: ") for line in res.stderr.splitlines()), res.stderr


def test_the_message_is_rfc5424_with_escaped_structured_data():
    msg = format_rfc5424({"type": "new", "incident_id": 'a"b]c\\', "host": "10.0.0.1", "severity": "critical",
                          "peers": ["1.2.3.4:23/tcp"]}, hostname="gw one", facility="user", procid=7, now=0.0)
    text = msg.decode()
    assert text.startswith("<10>1 1970-01-01T00:00:00.000000Z gwone edgebot 7 incident [edgebot@32473 ")
    assert 'incident_id="a\\"b\\]c\\\\"' in text and 'peer="1.2.3.4:23/tcp"' in text


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.timeout(900)  # the session's int8 bundle may be built here
def test_edgebot_run_sends_every_incident_and_keeps_them_while_the_server_is_away(
        int8_bundle, rsyslog_factory, tmp_path):  # noqa: F811
    """``edgebot run --syslog`` on the bundled Mirai pcap: first with no server (exit 0, one warning,
    everything queued), then with rsyslog up: the queued run and the new one all arrive, in order."""
    port = free_port()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}

    def run(jsonl):
        return subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(int8_bundle), "--pcap",
                               str(PCAP_MIRAI), "--syslog", f"tcp://127.0.0.1:{port}", "--jsonl", str(jsonl),
                               "--gateway-id", GW], capture_output=True, text=True, timeout=600, env=env)

    away = run(tmp_path / "first.jsonl")
    assert away.returncode == 0, away.stderr[-2000:]
    warnings = [ln for ln in away.stderr.splitlines() if "syslog server unreachable" in ln]
    assert len(warnings) == 1 and f"tcp://127.0.0.1:{port}" in warnings[0]
    first = [json.loads(ln) for ln in (tmp_path / "first.jsonl").read_text().splitlines()]
    first = [m for m in first if m["kind"] == "incident"]
    assert first and f"closing with {len(first)} undelivered syslog message(s)" in away.stderr
    server = rsyslog_factory(tcp_port=port)
    back = run(tmp_path / "second.jsonl")
    assert back.returncode == 0, back.stderr[-2000:]
    second = [m for m in (json.loads(ln) for ln in (tmp_path / "second.jsonl").read_text().splitlines())
              if m["kind"] == "incident"]
    lines = server.wait_for(len(first) + len(second), timeout=30)
    got = [json.loads(line["msg"]) for line in lines]
    expected = [{k: v for k, v in m.items() if k != "kind"} for m in first + second]
    assert [(m["incident_id"], m["type"]) for m in got] == [(m["incident_id"], m["type"]) for m in expected]
    assert all(line["hostname"] == GW and line["version"] == "1" for line in lines)
