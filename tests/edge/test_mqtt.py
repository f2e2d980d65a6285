"""MQTT sink against a real Mosquitto: ordering, availability, Last Will, outages, auth, TLS, HA."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (edgebot[edge])")

from brokers import fill_disk, free_port, make_tls_files  # noqa: E402
from edgebot.edge.sinks.mqtt import MqttSink  # noqa: E402
from edgebot.errors import SinkError  # noqa: E402

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]

GW = "gw-test"
BASE = f"edgebot/{GW}"


def incident(i: int, host: str = "192.168.1.7", kind: str = "new") -> dict:
    return {
        "type": kind, "incident_id": f"inc-{i:05d}", "gateway_id": GW, "host": host,
        "first_seen": 1_700_000_000.0 + i, "last_seen": 1_700_000_001.0 + i, "flows": i,
        "malicious_flows": 1, "score": 0.9, "threshold": 0.5, "severity": "high",
        "model": "m1", "peers": [], "community_id": None,
    }


def make_sink(url: str, tmp_path: Path, **kwargs) -> MqttSink:
    kwargs.setdefault("gateway_id", GW)
    kwargs.setdefault("queue_path", tmp_path / "queue.sqlite")
    kwargs.setdefault("reconnect_delay", (0.1, 0.5))
    return MqttSink(url, **kwargs)


def ids_of(messages) -> list[str]:
    return [m.json()["incident_id"] for m in messages]


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_incidents_arrive_in_order_at_qos1(mosquitto, mqtt_collector, tmp_path):
    collector = mqtt_collector(mosquitto, [f"{BASE}/#"])
    with make_sink(mosquitto.url, tmp_path) as sink:
        assert sink.wait_connected(10)
        for i in range(300):
            sink.publish_incident(incident(i))
        assert sink.flush(20)
        stats = sink.stats()
    got = collector.wait_for(f"{BASE}/incidents", 300, timeout=20)
    assert ids_of(got) == [f"inc-{i:05d}" for i in range(300)]
    assert all(m.qos == 1 and not m.retain for m in got)
    assert len({m.json()["message_id"] for m in got}) == 300
    assert got[0].json()["host"] == "192.168.1.7"
    assert stats["published"] == 300 and stats["queued"] == 0 and stats["dropped"] == 0


def test_status_online_then_offline_retained(mosquitto, mqtt_collector, tmp_path):
    collector = mqtt_collector(mosquitto, [f"{BASE}/status"])
    sink = make_sink(mosquitto.url, tmp_path)
    sink.start()
    assert collector.wait_for(f"{BASE}/status", 1)[-1].text == "online"
    sink.close()
    got = collector.wait_for(f"{BASE}/status", 2)
    assert [m.text for m in got] == ["online", "offline"]
    late = mqtt_collector(mosquitto, [f"{BASE}/status"])  # a new subscriber gets the retained value
    retained = late.wait_for(f"{BASE}/status", 1)
    assert [(m.text, m.retain) for m in retained] == [("offline", True)]


def test_stats_are_published_while_connected(mosquitto, mqtt_collector, tmp_path):
    collector = mqtt_collector(mosquitto, [f"{BASE}/stats"])
    with make_sink(mosquitto.url, tmp_path) as sink:
        sink.publish_stats({"flows_scored": 1})          # maybe before the CONNACK: skipped
        assert sink.wait_connected(10)
        sink.publish_stats({"flows_scored": 42, "uptime_s": 3.5})
        got = collector.wait_for(f"{BASE}/stats", 1, predicate=lambda ms: any(
            m.json()["flows_scored"] == 42 for m in ms))
        stats = sink.stats()
    assert got[-1].json() == {"flows_scored": 42, "uptime_s": 3.5}
    assert not got[-1].retain
    assert stats["stats_published"] + stats.get("stats_skipped", 0) == 2


AGENT_SCRIPT = textwrap.dedent("""
    import sys, time
    from edgebot.edge.sinks.mqtt import MqttSink
    url, queue_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sink = MqttSink(url, gateway_id="gw-test", queue_path=queue_path, keepalive=5,
                    reconnect_delay=(0.1, 0.5))
    sink.start()
    for i in range(n):
        sink.publish_incident({"type": "new", "incident_id": "inc-%05d" % i, "host": "h"})
    if sys.argv[4] == "wait-connected":
        assert sink.wait_connected(10)
        sink.flush(10)
    print("ready", flush=True)
    time.sleep(60)
""")


def start_agent(url: str, queue_path: Path, n: int, mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, url, str(queue_path), str(n), mode],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.poll() is not None else line
    return process


def test_last_will_offline_when_the_agent_is_killed(mosquitto, mqtt_collector, tmp_path):
    collector = mqtt_collector(mosquitto, [f"{BASE}/status"])
    agent = start_agent(mosquitto.url, tmp_path / "q.sqlite", 0, "wait-connected")
    try:
        assert collector.wait_for(f"{BASE}/status", 1)[-1].text == "online"
        agent.kill()  # SIGKILL: no clean disconnect, the broker must publish the Will
        agent.wait(10)
        got = collector.wait_for(f"{BASE}/status", 2, timeout=15)
        assert [m.text for m in got] == ["online", "offline"]
    finally:
        agent.kill()
    late = mqtt_collector(mosquitto, [f"{BASE}/status"])
    assert [(m.text, m.retain) for m in late.wait_for(f"{BASE}/status", 1)] == [("offline", True)]


def test_incidents_queued_before_a_crash_are_sent_after_restart(mosquitto_factory, mqtt_collector,
                                                                  tmp_path):
    port = free_port()
    queue_path = tmp_path / "q.sqlite"
    agent = start_agent(f"mqtt://127.0.0.1:{port}", queue_path, 40, "no-broker")
    agent.kill()  # the broker never came up: all 40 are only on disk
    agent.wait(10)
    broker = mosquitto_factory(port)
    collector = mqtt_collector(broker, [f"{BASE}/incidents"])
    with make_sink(broker.url, tmp_path, queue_path=queue_path) as sink:
        assert sink.flush(20)
    got = collector.wait_for(f"{BASE}/incidents", 40)
    assert ids_of(got) == [f"inc-{i:05d}" for i in range(40)]


def test_broker_down_at_start_then_up_delivers_everything_in_order(
        mosquitto_factory, mqtt_collector, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edgebot")
    broker = mosquitto_factory()
    collector = mqtt_collector(broker, [f"{BASE}/incidents"])  # persistent session on the broker
    collector.stop()
    broker.stop()

    sink = make_sink(broker.url, tmp_path)
    began = time.monotonic()
    sink.start()
    assert time.monotonic() - began < 1.0, "start() must not block on a missing broker"
    for i in range(100):
        sink.publish_incident(incident(i))
    time.sleep(1.5)  # several reconnection attempts
    stats = sink.stats()
    assert (stats["queued"], stats["published"], stats["connected"]) == (100, 0, False)
    unreachable = [r for r in caplog.records if "broker unreachable at" in r.getMessage()]
    assert len(unreachable) == 1, "logged once, not once per attempt"
    assert str(tmp_path / "queue.sqlite") in unreachable[0].getMessage()

    broker.start()
    try:
        assert sink.flush(20), sink.stats()
        assert sink.stats()["published"] == 100
    finally:
        sink.close()
    again = mqtt_collector(broker, [f"{BASE}/incidents"], client_id=collector.client_id)
    got = again.wait_for(f"{BASE}/incidents", 100, timeout=20)
    assert ids_of(got) == [f"inc-{i:05d}" for i in range(100)]


def test_broker_restart_mid_stream_loses_nothing(mosquitto, mqtt_collector, tmp_path):
    """At least once: publisher count == subscriber count after dedupe on message_id."""
    total = 400
    collector = mqtt_collector(mosquitto, [f"{BASE}/incidents"])
    sink = make_sink(mosquitto.url, tmp_path)
    sink.start()
    assert sink.wait_connected(10)

    def produce() -> None:
        for i in range(total):
            sink.publish_incident(incident(i))
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    assert wait_until(lambda: sink.stats()["published"] >= 100)
    mosquitto.restart()  # SIGTERM + start on the same port; the session and queue persist
    producer.join()
    try:
        assert sink.flush(30), sink.stats()
        stats = sink.stats()
    finally:
        sink.close()
    assert stats["connects"] >= 2
    got = collector.wait_for(f"{BASE}/incidents", predicate=lambda ms: len(
        {m.json()["message_id"] for m in ms}) >= total, timeout=30)
    unique: dict[str, str] = {}
    for message in got:
        unique.setdefault(message.json()["message_id"], message.json()["incident_id"])
    assert stats["published"] == total
    assert len(unique) == total
    assert list(unique.values()) == [f"inc-{i:05d}" for i in range(total)]  # first copies in order


def test_queue_overflow_drops_the_oldest(mosquitto_factory, mqtt_collector, tmp_path):
    broker = mosquitto_factory()
    collector = mqtt_collector(broker, [f"{BASE}/incidents"])
    collector.stop()
    broker.stop()
    sink = make_sink(broker.url, tmp_path, queue_max_messages=10)
    sink.start()
    for i in range(25):
        sink.publish_incident(incident(i))
    assert sink.stats()["dropped"] == 15 and sink.stats()["queued"] == 10
    broker.start()
    try:
        assert sink.flush(20)
    finally:
        sink.close()
    again = mqtt_collector(broker, [f"{BASE}/incidents"], client_id=collector.client_id)
    got = again.wait_for(f"{BASE}/incidents", 10)
    assert ids_of(got) == [f"inc-{i:05d}" for i in range(15, 25)]


def test_full_disk_never_raises_and_recovers(mosquitto, mqtt_collector, tiny_tmpfs):
    collector = mqtt_collector(mosquitto, [f"{BASE}/incidents"])
    with make_sink(mosquitto.url, tiny_tmpfs) as sink:
        assert sink.wait_connected(10)
        filler = fill_disk(tiny_tmpfs)
        for i in range(10):
            sink.publish_incident(incident(i))   # must not raise
        assert sink.stats()["dropped_disk_full"] == 10
        filler.unlink()
        for i in range(10, 15):
            sink.publish_incident(incident(i))
        assert sink.flush(10)
        assert sink.stats()["dropped"] == 10
    got = collector.wait_for(f"{BASE}/incidents", 5)
    assert ids_of(got) == [f"inc-{i:05d}" for i in range(10, 15)]


def test_wrong_password_is_a_clear_error(mosquitto_auth, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="edgebot")
    url = mosquitto_auth.url.replace("mqtt://", "mqtt://edgebot:wrong@")
    sink = make_sink(url, tmp_path)
    sink.start()
    try:
        assert wait_until(lambda: sink.fatal_error is not None)
        with pytest.raises(SinkError, match=r"^MQTT broker refused the connection: "
                                            r"(not authorized|bad user name or password) "
                                            r"\(check username/password\)$"):
            sink.check()
        sink.publish_incident(incident(1))  # still accepted: it waits on disk
        time.sleep(1.0)                      # more refused attempts...
        refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
        assert len(refusals) == 1            # ...logged once
        assert "wrong" not in refusals[0].getMessage()
        assert sink.stats()["queued"] == 1 and not sink.connected
    finally:
        sink.close(timeout=1)


def test_credentials_from_the_environment(mosquitto_auth, mqtt_collector, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEBOT_MQTT_USERNAME", "edgebot")
    monkeypatch.setenv("EDGEBOT_MQTT_PASSWORD", "s3cret")
    collector = mqtt_collector(mosquitto_auth, [f"{BASE}/incidents"],
                               username="edgebot", password="s3cret")
    with make_sink(mosquitto_auth.url, tmp_path) as sink:
        sink.publish_incident(incident(1))
        assert sink.flush(10)
        sink.check()
    assert ids_of(collector.wait_for(f"{BASE}/incidents", 1)) == ["inc-00001"]


def test_tls_with_a_private_ca(mosquitto_factory, mqtt_collector, tls_certs, tmp_path):
    broker = mosquitto_factory(tls=tls_certs)
    assert broker.url.startswith("mqtts://localhost:")
    collector = mqtt_collector(broker, [f"{BASE}/incidents"])
    with make_sink(broker.url, tmp_path, ca_file=str(tls_certs.ca_file)) as sink:
        sink.publish_incident(incident(7))
        assert sink.flush(10), sink.stats()
    assert ids_of(collector.wait_for(f"{BASE}/incidents", 1)) == ["inc-00007"]


def test_tls_with_the_wrong_ca_is_a_clear_error(mosquitto_factory, tls_certs, tmp_path):
    broker = mosquitto_factory(tls=tls_certs)
    other = make_tls_files(tmp_path, "other")
    sink = make_sink(broker.url, tmp_path, ca_file=str(other.ca_file))
    sink.start()
    try:
        assert wait_until(lambda: sink.fatal_error is not None)
        with pytest.raises(SinkError, match=r"TLS certificate .* was rejected: .*check mqtt\.ca_file"):
            sink.check()
        assert not sink.connected
    finally:
        sink.close(timeout=1)


def test_home_assistant_discovery(mosquitto, mqtt_collector, tmp_path):
    collector = mqtt_collector(mosquitto, ["homeassistant/#", f"{BASE}/#"])
    with make_sink(mosquitto.url, tmp_path, homeassistant=True) as sink:
        gateway_topic = f"homeassistant/binary_sensor/edgebot_{GW}/botnet/config"
        gateway = collector.wait_for(gateway_topic, 1)[0]
        config = gateway.json()
        assert config["availability_topic"] == f"{BASE}/status"
        assert config["state_topic"] == f"{BASE}/state"
        assert config["device_class"] == "problem"
        assert collector.wait_for(f"{BASE}/state", 1)[-1].text == "OFF"

        sink.publish_incident(incident(1, host="192.168.1.7"))
        sink.publish_incident(incident(2, host="192.168.1.7", kind="update"))
        sink.publish_incident(incident(3, host="192.168.1.7", kind="end"))
        assert sink.flush(10)
        host_topic = f"homeassistant/binary_sensor/edgebot_{GW}/192_168_1_7/config"
        host = collector.wait_for(host_topic, 1)
        assert len(host) == 1, "discovery once per host"
        host_config = host[0].json()
        assert host_config["state_topic"] == f"{BASE}/hosts/192_168_1_7/state"
        assert host_config["availability_topic"] == f"{BASE}/status"
        assert host_config["unique_id"] != config["unique_id"]
        states = collector.wait_for(f"{BASE}/hosts/192_168_1_7/state", 3)
        assert [m.text for m in states] == ["ON", "ON", "OFF"]
        gateway_states = collector.wait_for(f"{BASE}/state", 3)
        assert [m.text for m in gateway_states] == ["OFF", "ON", "OFF"]
        attributes = collector.wait_for(f"{BASE}/hosts/192_168_1_7/attributes", 3)[-1].json()
        assert attributes["incident_id"] == "inc-00003" and attributes["type"] == "end"
    assert json.loads(json.dumps(sink.stats()))["published"] == 3
    # discovery and states are retained: Home Assistant restarting later still sees them
    late = mqtt_collector(mosquitto, ["homeassistant/#", f"{BASE}/#"])
    expected = {gateway_topic, host_topic, f"{BASE}/hosts/192_168_1_7/state", f"{BASE}/status"}
    assert wait_until(lambda: expected <= {m.topic for m in list(late.messages)})
    retained = {m.topic: m for m in list(late.messages)}
    assert retained[gateway_topic].retain and retained[host_topic].retain
    assert retained[f"{BASE}/hosts/192_168_1_7/state"].text == "OFF"
    assert retained[f"{BASE}/status"].text == "offline"
    assert f"{BASE}/incidents" not in retained


def test_wait_ready_reports_a_refusal_at_once(mosquitto_auth, tmp_path):
    """The agent's end-of-input check (issue 12 item 9): the first CONNACK outcome is waited for."""
    url = mosquitto_auth.url.replace("mqtt://", "mqtt://edgebot:wrong@")
    sink = make_sink(url, tmp_path)
    sink.start()
    try:
        assert sink.wait_ready(10)
        with pytest.raises(SinkError, match="refused the connection"):
            sink.check()
    finally:
        sink.close(timeout=1)


def test_wait_ready_with_no_broker_returns_without_a_fatal_error(tmp_path):
    sink = make_sink(f"mqtt://127.0.0.1:{free_port()}", tmp_path)
    sink.start()
    try:
        began = time.monotonic()
        assert sink.wait_ready(10) and time.monotonic() - began < 5
        sink.check()  # unreachable is not fatal: incidents wait in the queue
    finally:
        sink.close(timeout=1)
