"""Operator commands over MQTT (issue 11 item 4): ``edgebot/<gw>/cmd`` in, ``edgebot/<gw>/cmd/result`` out.

A real Mosquitto, the real MQTT sink with its command inbox, the real judge and allow rules in a
state dir. The fast tests pump the inbox as the agent's housekeeping does; the last one runs the
agent itself (a real int8 bundle, a followed Zeek log) and checks that an allow rule sent over MQTT
suppresses the host's next flows without a restart.
"""

from __future__ import annotations

import json
import lzma
import threading
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (edgebot[edge])")

from edgebot.allow import ALLOW_FILE, AllowList  # noqa: E402
from edgebot.edge.sinks.mqtt import MqttSink  # noqa: E402
from edgebot.edge.sinks.mqtt_commands import attach_commands  # noqa: E402
from edgebot.judge import FlowJudge  # noqa: E402

from fixtures_core import HONEYPOT_4_1

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

GW = "cmd-gw"
BASE = f"edgebot/{GW}"
HOST = "192.168.1.195"


class Gateway:
    """The sink, judge and inbox of one gateway, pumped like the agent's housekeeping."""

    def __init__(self, broker, collector_factory, tmp_path: Path, **sink_kwargs):
        self.state_dir = tmp_path / "state"
        self.judge = FlowJudge.build(GW, {"id": "b", "version": "1"}, 0.5, allow=AllowList(self.state_dir))
        self.sink = MqttSink(broker.url, gateway_id=GW, queue_path=tmp_path / "q.sqlite",
                             reconnect_delay=(0.1, 0.5), **sink_kwargs)
        self.inboxes = attach_commands(self.sink, self.judge, self.state_dir, self._publish)
        self.results = collector_factory(broker, [f"{BASE}/cmd/result", f"{BASE}/incidents"])
        self.sink.start()
        assert self.sink.wait_connected(10)

    def _publish(self, messages: list[dict]) -> None:
        for message in messages:
            self.sink.publish_incident(message)

    def send(self, command: dict | bytes, timeout: float = 10.0) -> dict:
        """Publish one command (as the operator would) and pump until its reply arrives."""
        cmd_id = uuid.uuid4().hex[:8]
        payload = command if isinstance(command, bytes) else json.dumps({**command, "id": cmd_id}).encode()
        deadline = time.monotonic() + timeout
        seen = len(self.results.on(f"{BASE}/cmd/result"))
        self.results.client.publish(f"{BASE}/cmd", payload, qos=1)
        while time.monotonic() < deadline:
            self.inboxes.run_pending()
            replies = [m.json() for m in self.results.on(f"{BASE}/cmd/result")][seen:]
            mine = [r for r in replies if r.get("id") == (None if isinstance(command, bytes) else cmd_id)]
            if mine:
                return mine[0]
            time.sleep(0.05)
        raise AssertionError(f"no reply to {payload!r}")

    def open_incident(self) -> dict:
        messages = []
        for i in range(12):  # confident flows to one C&C: the evidence rule opens an incident
            messages += self.judge.observe(HOST, 1_700_000_000.0 + i, 0.99, "185.244.25.235", 6667, "tcp", "SF")
        new = [m for m in messages if m["type"] == "new"]
        assert new, messages
        self._publish(messages)
        return new[0]

    def close(self) -> None:
        self.sink.close(timeout=2.0)


@pytest.fixture
def gateway(mosquitto, mqtt_collector, tmp_path):
    gw = Gateway(mosquitto, mqtt_collector, tmp_path)
    for _ in range(20):  # the sink's subscription is in place once a first command is answered
        try:
            assert gw.send({"command": "rules"}, timeout=1.0)["ok"]
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the sink never answered on the command topic")
    yield gw
    gw.close()


def test_allow_adds_a_rule_the_judge_applies_at_once(gateway):
    incident = gateway.open_incident()
    reply = gateway.send({"command": "allow", "host": HOST, "reason": "vendor cloud"})
    assert reply["ok"] and reply["command"] == "allow" and reply["added"] and reply["host"] == HOST
    saved = json.loads((gateway.state_dir / ALLOW_FILE).read_text())
    assert [r["id"] for r in saved["rules"]] == [reply["rule"]] and saved["rules"][0]["reason"] == "vendor cloud"
    # the open incident ended ("allowed"), delivered on the incidents topic
    ends = gateway.results.wait_for(f"{BASE}/incidents", predicate=lambda ms: any(
        m.json()["type"] == "end" for m in ms))
    end = next(m.json() for m in ends if m.json()["type"] == "end")
    assert end["incident_id"] == incident["incident_id"] and end["reason"] == "allowed"
    # the host's next flows are suppressed, counted per rule
    assert gateway.judge.observe(HOST, 1_700_000_100.0, 0.99, "185.244.25.235", 6667, "tcp", "SF") == []
    stats = gateway.judge.stats()
    assert stats["suppressed_flows"] == 1 and stats["suppressed_by_rule"] == {reply["rule"]: 1}
    listed = gateway.send({"command": "rules"})
    assert [r["id"] for r in listed["rules"]] == [reply["rule"]]
    assert gateway.send({"command": "unallow", "rule": reply["rule"]})["removed"]
    assert json.loads((gateway.state_dir / ALLOW_FILE).read_text())["rules"] == []


def test_allow_by_incident_id(gateway):
    incident = gateway.open_incident()
    reply = gateway.send({"command": "allow", "incident": incident["incident_id"]})
    assert reply["ok"] and reply["host"] == HOST
    rule = json.loads((gateway.state_dir / ALLOW_FILE).read_text())["rules"][0]
    assert rule["incident_id"] == incident["incident_id"] and "false alarm" in rule["reason"]


@pytest.mark.parametrize("command, error", [
    ({"command": "allow", "host": HOST, "colour": "red"}, "unknown key(s) ['colour']"),
    ({"command": "allow", "host": "not-an-address"}, "is not an IP address"),
    ({"command": "allow", "host": HOST, "peer": "1.2.3.4:70000"}, "must be a number from 0 to 65535"),
    ({"command": "allow", "host": 42}, "host must be a string"),
    ({"command": "allow", "incident": "0123456789abcdef"}, "unknown incident"),
    ({"command": "allow"}, "needs a host or an incident"),
    ({"command": "unallow", "rule": "nope"}, "no allow rule"),
    ({"command": "shutdown"}, "unknown command 'shutdown'"),
    (b"not json", "command is not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"{" + b" " * 5000 + b"}", "at most 4096"),
])
def test_a_bad_command_gets_an_error_reply_and_changes_nothing(gateway, command, error):
    incident = gateway.open_incident()
    reply = gateway.send(command)
    assert reply["ok"] is False and error in reply["error"], reply
    if isinstance(command, dict):
        assert len(reply["id"]) == 8  # the id is repeated even on an error
    assert not (gateway.state_dir / ALLOW_FILE).exists() and gateway.judge.allow.rules == []
    assert gateway.judge.tracker.open_incident(HOST)["incident_id"] == incident["incident_id"]
    gateway.judge.observe(HOST, 1_700_000_020.0, 0.99, "185.244.25.235", 6667, "tcp", "SF")
    assert gateway.judge.stats()["suppressed_flows"] == 0  # the host's flows still count as evidence


def test_commands_off_means_no_subscription(mosquitto, mqtt_collector, tmp_path):
    gw = Gateway(mosquitto, mqtt_collector, tmp_path, commands=False)
    try:
        assert gw.inboxes is None
        gw.results.client.publish(f"{BASE}/cmd", json.dumps({"command": "allow", "host": HOST}), qos=1)
        time.sleep(1.0)
        assert gw.results.on(f"{BASE}/cmd/result") == [] and not (gw.state_dir / ALLOW_FILE).exists()
    finally:
        gw.close()


# -- the running agent ---------------------------------------------------------------------------------
def _conn_log_rows() -> tuple[list[str], list[str]]:
    lines = lzma.decompress(HONEYPOT_4_1.read_bytes()).decode().splitlines()
    header = [ln for ln in lines if ln.startswith("#") and not ln.startswith("#close")]
    return header, [ln for ln in lines if ln and not ln.startswith("#")]


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.timeout(900)  # the session's int8 bundle may be built here (TensorFlow, minutes on a busy machine)
def test_the_running_agent_applies_an_allow_rule_sent_over_mqtt(int8_bundle, mosquitto, mqtt_collector,  # noqa: F811
                                                                tmp_path):
    from edgebot.edge.agent import Agent
    from edgebot.edge.config import load_config

    header, rows = _conn_log_rows()
    host = rows[0].split("\t")[2]
    log = tmp_path / "conn.log"
    log.write_text("\n".join(header + rows[:40]) + "\n")
    cfg = load_config(None, {"gateway_id": GW, "bundle": str(int8_bundle), "source.zeek_log": str(log),
                             "source.follow": True, "mqtt.url": mosquitto.url, "state_dir": str(tmp_path / "st"),
                             "mqtt.queue_path": str(tmp_path / "q.sqlite"), "mqtt.stats_interval_s": 0.5,
                             "site.learn_s": 0}).validate()
    sub = mqtt_collector(mosquitto, [f"{BASE}/#"])
    agent = Agent(cfg)
    agent.start()
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        assert sub.wait_for(f"{BASE}/stats", 1, timeout=60), "the agent never published stats"
        reply = None
        for _ in range(20):  # until the agent's subscription is in place
            sub.client.publish(f"{BASE}/cmd", json.dumps({"command": "allow", "host": host, "id": "a1"}), qos=1)
            got = sub.wait_for(f"{BASE}/cmd/result", 1, timeout=2.0)
            if got:
                reply = got[0].json()
                break
        assert reply is not None and reply["ok"] and reply["id"] == "a1", reply
        sub.client.publish(f"{BASE}/cmd", json.dumps({"command": "allow", "host": host, "ttl": "1h"}), qos=1)
        bad = sub.wait_for(f"{BASE}/cmd/result", 2, timeout=10)[-1].json()
        assert bad["ok"] is False and "unknown key" in bad["error"]
        with log.open("a") as fh:  # the host's next flows reach the running agent
            fh.write("\n".join(rows[40:120]) + "\n")

        def suppressed(ms):
            return any(m.json()["evidence"].get("suppressed_by_rule", {}).get(reply["rule"], 0) > 0 for m in ms)

        stats = sub.wait_for(f"{BASE}/stats", predicate=suppressed, timeout=60)
        assert suppressed(stats), stats[-1].json()["evidence"]
        assert stats[-1].json()["evidence"]["allow_rules"] == 1
    finally:
        agent.stop()
        runner.join(30)
    assert not runner.is_alive()
