"""Home Assistant discovery read back from a real Mosquitto (issue 15 item 5, issue 11 item 4).

Per host with an incident: an HA device (via the gateway) with a binary sensor, a last-incident
sensor and a "mark as false alarm" button, all retained and available with the gateway's status;
pressing the button (publishing its ``payload_press`` on its ``command_topic``, as HA does) allows
the host, ends its incident and turns the sensor OFF.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (edgebot[edge])")

from edgebot.allow import ALLOW_FILE  # noqa: E402
from test_mqtt_commands import BASE, GW, HOST, Gateway  # noqa: E402

pytestmark = [pytest.mark.broker, pytest.mark.timeout(90)]

SLUG = HOST.replace(".", "_")
NODE = f"edgebot_{GW}"
BINARY = f"homeassistant/binary_sensor/{NODE}/{SLUG}/config"
SENSOR = f"homeassistant/sensor/{NODE}/{SLUG}_last_incident/config"
BUTTON = f"homeassistant/button/{NODE}/{SLUG}_false_alarm/config"


def _retained(mqtt_collector, broker, topics: set[str], timeout: float = 10.0) -> dict:
    """What a Home Assistant starting now would read: the retained messages under the prefixes."""
    late = mqtt_collector(broker, ["homeassistant/#", f"{BASE}/#"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not topics <= {m.topic for m in list(late.messages)}:
        time.sleep(0.05)
    return {m.topic: m for m in list(late.messages) if m.retain}


@pytest.fixture
def gateway(mosquitto, mqtt_collector, tmp_path):
    gw = Gateway(mosquitto, mqtt_collector, tmp_path, homeassistant=True)
    yield gw
    gw.close()


def test_discovery_per_flagged_host_is_retained_with_availability(gateway, mosquitto, mqtt_collector):
    incident = gateway.open_incident()
    assert gateway.sink.flush(10)
    retained = _retained(mqtt_collector, mosquitto, {BINARY, SENSOR, BUTTON, f"{BASE}/hosts/{SLUG}/attributes"})
    assert {BINARY, SENSOR, BUTTON} <= set(retained), sorted(retained)
    configs = {topic: retained[topic].json() for topic in (BINARY, SENSOR, BUTTON)}
    for config in configs.values():
        assert config["availability_topic"] == f"{BASE}/status"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["device"]["identifiers"] == [f"edgebot_{GW}_{SLUG}"]
        assert config["device"]["via_device"] == f"edgebot_{GW}" and HOST in config["device"]["name"]
    assert len({c["unique_id"] for c in configs.values()}) == 3
    binary, sensor, button = configs[BINARY], configs[SENSOR], configs[BUTTON]
    assert binary["state_topic"] == f"{BASE}/hosts/{SLUG}/state" and binary["device_class"] == "problem"
    assert retained[binary["state_topic"]].text == "ON"
    # the last-incident sensor reads the retained attributes; its template picks the severity
    attributes = retained[sensor["state_topic"]].json()
    assert sensor["value_template"] == "{{ value_json.severity }}" and sensor["json_attributes_topic"] == sensor["state_topic"]
    assert attributes["incident_id"] == incident["incident_id"] and attributes["severity"] == incident["severity"]
    assert attributes["type"] == "new" and attributes["peers"] == incident["peers"]
    assert button["command_topic"] == f"{BASE}/cmd"
    assert json.loads(button["payload_press"]) == {"command": "allow", "host": HOST,
                                                   "reason": "false alarm (marked in Home Assistant)"}
    assert retained[f"{BASE}/status"].text == "online"


def test_pressing_the_button_marks_a_false_alarm(gateway, mosquitto, mqtt_collector):
    incident = gateway.open_incident()
    assert gateway.sink.flush(10)
    button = _retained(mqtt_collector, mosquitto, {BUTTON})[BUTTON].json()
    reply = None
    for _ in range(40):  # press as HA does; pump as the agent's housekeeping does
        gateway.results.client.publish(button["command_topic"], button["payload_press"], qos=1)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and reply is None:
            gateway.inboxes.run_pending()
            got = gateway.results.on(f"{BASE}/cmd/result")
            reply = got[0].json() if got else None
            time.sleep(0.05)
        if reply is not None:
            break
    assert reply is not None and reply["ok"] and reply["host"] == HOST, reply
    rules = json.loads((gateway.state_dir / ALLOW_FILE).read_text())["rules"]
    assert [r["host"] for r in rules] == [HOST] and "Home Assistant" in rules[0]["reason"]
    assert gateway.judge.tracker.open_incident(HOST) is None
    assert gateway.sink.flush(10)
    retained = _retained(mqtt_collector, mosquitto, {f"{BASE}/hosts/{SLUG}/state"})
    assert retained[f"{BASE}/hosts/{SLUG}/state"].text == "OFF"
    last = retained[f"{BASE}/hosts/{SLUG}/attributes"].json()
    assert last["incident_id"] == incident["incident_id"] and last["type"] == "end"


def test_no_button_without_commands(mosquitto, mqtt_collector, tmp_path):
    gw = Gateway(mosquitto, mqtt_collector, tmp_path, homeassistant=True, commands=False)
    try:
        gw.open_incident()
        assert gw.sink.flush(10)
        retained = _retained(mqtt_collector, mosquitto, {BINARY, SENSOR})
        assert {BINARY, SENSOR} <= set(retained) and BUTTON not in retained
    finally:
        gw.close()


def test_offline_makes_every_entity_unavailable(gateway, mosquitto, mqtt_collector):
    gateway.open_incident()
    assert gateway.sink.flush(10)
    gateway.close()  # "offline" on the availability topic every entity names
    retained = _retained(mqtt_collector, mosquitto, {BINARY, f"{BASE}/status"})
    assert retained[f"{BASE}/status"].text == "offline"
    assert {retained[t].json()["availability_topic"] for t in (BINARY, SENSOR, BUTTON)} == {f"{BASE}/status"}
