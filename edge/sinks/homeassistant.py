"""Home Assistant MQTT discovery for the MQTT sink: the gateway, and each flagged host as a device of its own.

The gateway device has one binary sensor (any open incident). Every host with an incident becomes
an HA device (``via_device`` the gateway) with three entities, all retained and all available
while the gateway's ``status`` is ``online``:

- binary sensor ``Botnet activity <host>``: ``ON`` while the host has an open incident;
- sensor ``Last incident <host>``: the severity of its latest incident, the incident's fields as
  attributes;
- button ``Mark <host> as false alarm`` (only with ``[mqtt] commands``): pressing it publishes the
  ``allow`` command for the host on ``<base>/cmd``; the agent adds the allow rule, ends the
  incident and replies on ``<base>/cmd/result``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from edgebot import __version__
from edgebot.edge.sinks.base import encode_message

__all__ = ["HomeAssistantDiscovery", "host_slug"]

#: Hosts whose discovery was published, at most (least recently flagged forgotten first).
MAX_DISCOVERED_HOSTS = 4096


def host_slug(host: str) -> str:
    """A host address as a topic level and HA object id: ``192.168.1.7`` -> ``192_168_1_7``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(host)).strip("_") or "unknown"


class HomeAssistantDiscovery:
    """What to publish (retained, QoS 1) so that Home Assistant shows the gateway and each flagged host.

    Parameters
    ----------
    gateway_id : str
        Names the device.
    topic_base : str
        ``<topic_prefix>/<gateway_id>``.
    discovery_prefix : str
        Home Assistant's discovery prefix.
    commands : bool
        The agent takes commands on ``<topic_base>/cmd``: add the "mark as false alarm" button.
    """

    def __init__(self, gateway_id: str, topic_base: str, discovery_prefix: str, *, commands: bool = False) -> None:
        self.gateway_id = gateway_id
        self.topic_base = topic_base
        self.discovery_prefix = discovery_prefix
        self.topic_status = f"{topic_base}/status"
        self.topic_stats = f"{topic_base}/stats"
        self.topic_state = f"{topic_base}/state"
        self.topic_command = f"{topic_base}/cmd"
        self.commands = commands
        self._active_hosts: set[str] = set()
        self._discovered: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def _device(self) -> dict[str, Any]:
        return {
            "identifiers": [f"edgebot_{self.gateway_id}"],
            "name": f"edgebot {self.gateway_id}",
            "manufacturer": "edgebot",
            "model": "IoT botnet detector",
            "sw_version": __version__,
        }

    def _host_device(self, host: str) -> dict[str, Any]:
        return {
            "identifiers": [f"edgebot_{self.gateway_id}_{host_slug(host)}"],
            "name": f"{host} (edgebot {self.gateway_id})",
            "manufacturer": "edgebot",
            "model": "flagged host",
            "via_device": f"edgebot_{self.gateway_id}",
        }

    def _availability(self) -> dict[str, Any]:
        return {"availability_topic": self.topic_status,
                "payload_available": "online", "payload_not_available": "offline"}

    def gateway_messages(self) -> list[tuple[str, str]]:
        """``(topic, payload)`` of the gateway's sensor config and its state, sent on every connect."""
        object_id = f"edgebot_{host_slug(self.gateway_id)}"
        config = {
            "name": "Botnet activity",
            "unique_id": f"{object_id}_botnet",
            "object_id": f"{object_id}_botnet",
            "device_class": "problem",
            "state_topic": self.topic_state,
            "payload_on": "ON",
            "payload_off": "OFF",
            "json_attributes_topic": self.topic_stats,
            "device": self._device(),
            **self._availability(),
        }
        topic = f"{self.discovery_prefix}/binary_sensor/{object_id}/botnet/config"
        with self._lock:
            state = "ON" if self._active_hosts else "OFF"
        return [(topic, encode_message(config)), (self.topic_state, state)]

    def host_discovery(self, host: str) -> list[tuple[str, str]]:
        """``(topic, payload)`` of a host's entities: binary sensor, last-incident sensor, false-alarm button."""
        slug = host_slug(host)
        host_base = f"{self.topic_base}/hosts/{slug}"
        node = f"edgebot_{host_slug(self.gateway_id)}"
        object_id = f"{node}_{slug}"
        common = {"device": self._host_device(host), **self._availability()}
        entities: list[tuple[str, dict[str, Any]]] = [
            (f"binary_sensor/{node}/{slug}", {
                "name": f"Botnet activity {host}", "unique_id": object_id, "object_id": object_id,
                "device_class": "problem", "state_topic": f"{host_base}/state", "payload_on": "ON",
                "payload_off": "OFF", "json_attributes_topic": f"{host_base}/attributes"}),
            (f"sensor/{node}/{slug}_last_incident", {
                "name": f"Last incident {host}", "unique_id": f"{object_id}_last_incident",
                "object_id": f"{object_id}_last_incident", "icon": "mdi:shield-alert",
                "state_topic": f"{host_base}/attributes", "value_template": "{{ value_json.severity }}",
                "json_attributes_topic": f"{host_base}/attributes"}),
        ]
        if self.commands:
            press = {"command": "allow", "host": host, "reason": "false alarm (marked in Home Assistant)"}
            entities.append((f"button/{node}/{slug}_false_alarm", {
                "name": f"Mark {host} as false alarm", "unique_id": f"{object_id}_false_alarm",
                "object_id": f"{object_id}_false_alarm", "icon": "mdi:check-circle-outline",
                "command_topic": self.topic_command, "payload_press": encode_message(press), "qos": 1}))
        return [(f"{self.discovery_prefix}/{path}/config", encode_message({**config, **common}))
                for path, config in entities]

    def host_messages(self, incident: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(topic, payload)`` to queue for an incident: discovery (first time a host is flagged),
        its attributes and state, and the gateway's state when it changes."""
        host = str(incident.get("host", ""))
        if not host:
            return []
        slug = host_slug(host)
        host_base = f"{self.topic_base}/hosts/{slug}"
        active = incident.get("type") != "end"
        with self._lock:
            was_any = bool(self._active_hosts)
            (self._active_hosts.add if active else self._active_hosts.discard)(host)
            is_any = bool(self._active_hosts)
            new_host = host not in self._discovered
            if new_host:
                if len(self._discovered) >= MAX_DISCOVERED_HOSTS:
                    self._discovered.popitem(last=False)
                self._discovered[host] = None
            else:
                self._discovered.move_to_end(host)
        messages = self.host_discovery(host) if new_host else []
        attributes = {k: incident.get(k) for k in
                      ("incident_id", "type", "severity", "score", "threshold", "first_seen",
                       "last_seen", "flows", "malicious_flows", "rules", "peers", "model") if k in incident}
        messages.append((f"{host_base}/attributes", encode_message(attributes)))
        messages.append((f"{host_base}/state", "ON" if active else "OFF"))
        if was_any != is_any:
            messages.append((self.topic_state, "ON" if is_any else "OFF"))
        return messages
