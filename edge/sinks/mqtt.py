"""MQTT sink: incidents through an on-disk queue with QoS 1, availability with Last Will, stats, HA discovery.

Topics (``<base>`` is ``<topic_prefix>/<gateway_id>``, e.g. ``edgebot/pi-livingroom``):

==============================  =====  =======  ==========================================
topic                           QoS    retain   payload
==============================  =====  =======  ==========================================
<base>/status                   1      yes      ``online`` / ``offline`` (also Last Will)
<base>/incidents                1      no       incident JSON plus a ``message_id``
<base>/stats                    0      no       stats JSON (only sent while connected)
<base>/state                    1      yes      ``ON`` while any host has an open incident
<base>/hosts/<host>/state       1      yes      ``ON`` / ``OFF`` per flagged host   (HA only)
<base>/hosts/<host>/attributes  1      yes      last incident of that host (HA only)
==============================  =====  =======  ==========================================

Delivery is **at least once**: every incident is first written to the SQLite queue, then
published in queue order, and removed from the queue only when the broker's PUBACK
arrives. After a reconnect the in-flight window is re-sent (by paho, same packet ids, DUP
flag) before anything newer, and after a restart of the agent every unacknowledged message
is re-sent from the queue; a consumer can therefore see a duplicate and should dedupe on
``message_id``. When the queue is full the oldest incidents are dropped and counted.
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from edgebot.edge.plugins import YEAR_S, Flag, redacted, setting
from edgebot.edge.sinks.base import SINKS, Sink, encode_message
from edgebot.edge.sinks.homeassistant import HomeAssistantDiscovery, host_slug
from edgebot.edge.sinks.mqtt_url import (
    ENV_MQTT_PASSWORD,
    ENV_MQTT_USERNAME,
    broker_problems,
    parse_mqtt_url,
    redact_url,
    topic_part_problem,
)
from edgebot.edge.sinks.queue import DiskQueue
from edgebot.errors import ConfigError, RuntimeMissingError, SinkError
from edgebot.statefiles import writable_file_problem

if TYPE_CHECKING:
    import paho.mqtt.client as paho

    from edgebot.edge.config import AgentConfig

logger = logging.getLogger(__name__)

__all__ = ["MqttConfig", "MqttSink", "host_slug"]

_AUTH_REFUSALS = {
    "Bad user name or password": "bad user name or password (check username/password)",
    "Not authorized": "not authorized (check username/password)",
}


class _Paho(NamedTuple):
    client: Any
    CallbackAPIVersion: Any
    MQTTErrorCode: Any


def _import_paho() -> _Paho:
    """paho-mqtt, imported when a sink is built (the config and ``--help`` load this module without it)."""
    try:
        import paho.mqtt.client as client
        from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
    except ModuleNotFoundError as exc:
        raise RuntimeMissingError(f"the mqtt sink needs {exc.name}, which is not installed; "
                                  "pip install 'edgebot[edge]'") from exc
    return _Paho(client, CallbackAPIVersion, MQTTErrorCode)


@dataclass(repr=False)
class MqttConfig:
    """``[mqtt]``: the broker, credentials, TLS, topics and the on-disk queue.

    Credentials come from the URL's ``user:pass@``, else ``username``/``password``, else the
    environment variables ``EDGEBOT_MQTT_USERNAME``/``EDGEBOT_MQTT_PASSWORD`` (so that a secret can
    stay out of the file).
    """

    url: str | None = setting(None, secret=True, redact=redact_url)
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; unset = no MQTT."""
    username: str | None = setting(None)
    password: str | None = setting(None, secret=True)
    ca_file: str | None = setting(None, path=True)
    certfile: str | None = setting(None, path=True)
    keyfile: str | None = setting(None, path=True)
    tls_insecure: bool = setting(False)
    """Skip the check that the certificate matches the host name (never on by default)."""
    client_id: str | None = setting(None)
    """Default ``edgebot-<gateway_id>``."""
    topic_prefix: str = setting("edgebot")
    keepalive: int = setting(60, low=0, high=65535)
    stats_interval_s: float = setting(60.0, low=0, high=YEAR_S, low_open=True)
    """How often the agent publishes its stats (to every sink)."""
    homeassistant: bool = setting(False)
    discovery_prefix: str = setting("homeassistant")
    queue_path: str | None = setting(None, path=True)
    """Default ``<state dir>/mqtt-queue-<gateway_id>.sqlite``."""
    queue_max_messages: int = setting(10_000, low=1, high=10_000_000)
    commands: bool = setting(True)
    """Carry out operator commands from ``<topic_prefix>/<gateway_id>/cmd`` (who may send them: the broker's ACL)."""

    def __repr__(self) -> str:
        return f"MqttConfig({', '.join(f'{k}={v!r}' for k, v in redacted(self).items())})"

    def credentials(self, environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
        """The username and password to use: URL, else these keys, else the environment."""
        env = os.environ if environ is None else environ
        url_user = url_password = None
        if self.url:
            try:
                parsed = parse_mqtt_url(self.url)
                url_user, url_password = parsed.username, parsed.password
            except ConfigError:
                pass
        if url_user is not None:
            return url_user, url_password
        if self.username is not None:
            return self.username, self.password
        return env.get(ENV_MQTT_USERNAME) or None, env.get(ENV_MQTT_PASSWORD) or None

    def client_id_for(self, gateway_id: str) -> str:
        """``client_id`` or ``edgebot-<gateway_id>``."""
        return self.client_id or f"edgebot-{gateway_id}"

    def queue_file(self, state_dir: Path, gateway_id: str) -> Path:
        """``queue_path`` or ``<state_dir>/mqtt-queue-<gateway_id>.sqlite``."""
        if self.queue_path:
            return Path(self.queue_path)
        return state_dir / f"mqtt-queue-{gateway_id}.sqlite"

    def problems(self, config: AgentConfig) -> list[str]:
        """The URL, the TLS files (parsed with ``ssl``), topic parts and a queue file start-up can open."""
        problems = broker_problems(self.url, self.ca_file, self.certfile, self.keyfile)
        for name in ("topic_prefix", "discovery_prefix"):
            problem = topic_part_problem(f"mqtt.{name}", getattr(self, name))
            if problem:
                problems.append(problem)
        if self.client_id is not None and not self.client_id:
            problems.append("mqtt.client_id: must not be empty (leave it unset for the default)")
        if self.url is not None:
            name = "mqtt.queue_path" if self.queue_path else "mqtt.queue_path (default)"
            why = writable_file_problem(self.queue_file(config.state_path(), config.gateway_id), sqlite=True)
            if why:
                problems.append(f"{name}: {why}")
        return problems


_DEFAULT = MqttConfig()  # the constructor's defaults are the section's (one default per setting)


@SINKS.register
class MqttSink(Sink):
    """Publish incidents and stats to an MQTT broker without ever blocking the agent.

    ``start()`` opens the queue and connects in the background (``connect_async`` +
    ``loop_start``); a missing broker is logged once and incidents wait on disk. paho
    reconnects with exponential backoff between ``reconnect_delay`` bounds. If the broker
    refuses our credentials, ``fatal_error`` is set, logged once, and ``check()`` raises
    ``SinkError`` so the agent can stop with a clear message.

    Parameters
    ----------
    url : str
        ``mqtt://[user:pass@]host[:1883]`` or ``mqtts://[user:pass@]host[:8883]``.
    gateway_id : str
        Names this gateway in every topic.
    queue_path : str or os.PathLike
        SQLite file of the outgoing queue.
    username, password : str, optional
        Used when the URL has no ``user:pass@``; else ``EDGEBOT_MQTT_USERNAME`` /
        ``EDGEBOT_MQTT_PASSWORD`` from the environment.
    ca_file, certfile, keyfile : str, optional
        TLS (``mqtts://`` only): CA bundle to trust (system CAs when unset), client
        certificate and key.
    tls_insecure : bool
        Do not check that the broker's certificate matches its host name.
    client_id : str, optional
        Default ``edgebot-<gateway_id>``.
    topic_prefix : str
        First topic level (default ``edgebot``).
    keepalive : int
        MQTT keepalive in seconds.
    homeassistant : bool
        Publish Home Assistant discovery for the gateway and each flagged host.
    discovery_prefix : str
        Home Assistant's discovery prefix.
    queue_max_messages, queue_max_bytes : int
        Bounds of the on-disk queue (oldest dropped first).
    queue_own_dir : bool
        The queue's directory is edgebot's state directory (narrowed to 0700 if more open).
    max_inflight : int
        Incidents sent but not yet acknowledged, at most.
    reconnect_delay : (float, float)
        Minimum and maximum seconds between reconnection attempts.
    """

    type = "mqtt"
    order = 10
    Settings = MqttConfig
    flags = (Flag("--mqtt", "mqtt.url", "Broker URL: mqtt://host:1883 or mqtts://host:8883. Give the password in "
                  "EDGEBOT_MQTT_PASSWORD (or a 0600 config), not as user:pass@ here: every local user sees it in ps."),)

    @classmethod
    def wanted(cls, config: AgentConfig) -> bool:
        """``[mqtt] url`` is set."""
        return bool(config.mqtt.url)

    def __init__(
        self,
        url: str,
        *,
        gateway_id: str,
        queue_path: str | os.PathLike[str],
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        tls_insecure: bool = _DEFAULT.tls_insecure,
        client_id: str | None = None,
        topic_prefix: str = _DEFAULT.topic_prefix,
        keepalive: int = _DEFAULT.keepalive,
        homeassistant: bool = _DEFAULT.homeassistant,
        discovery_prefix: str = _DEFAULT.discovery_prefix,
        queue_max_messages: int = _DEFAULT.queue_max_messages,
        queue_max_bytes: int | None = None,
        queue_own_dir: bool = False,
        max_inflight: int = 20,
        reconnect_delay: tuple[float, float] = (1.0, 60.0),
        commands: bool = _DEFAULT.commands,
    ) -> None:
        super().__init__()
        self._paho = _import_paho()
        self.url = parse_mqtt_url(url)
        if (ca_file or certfile) and not self.url.tls:
            raise ConfigError("mqtt.url: TLS files are set but the URL is mqtt://; use mqtts://")
        if self.url.username is not None:  # credentials: URL, then arguments, then environment
            username, password = self.url.username, self.url.password
        elif username is None:
            username = os.environ.get(ENV_MQTT_USERNAME) or None
            if password is None:
                password = os.environ.get(ENV_MQTT_PASSWORD) or None
        self.username = username
        self._password = password
        self.gateway_id = gateway_id
        self.queue_path = Path(queue_path)
        self.ca_file = ca_file
        self.certfile = certfile
        self.keyfile = keyfile
        self.tls_insecure = tls_insecure
        self.client_id = client_id or f"edgebot-{gateway_id}"
        self.keepalive = keepalive
        self.homeassistant = homeassistant
        self.discovery_prefix = discovery_prefix.strip("/")
        self.queue_max_messages = queue_max_messages
        self.queue_max_bytes = queue_max_bytes
        self.queue_own_dir = queue_own_dir
        self.max_inflight = max(1, int(max_inflight))
        self.reconnect_delay = reconnect_delay

        base = f"{topic_prefix.strip('/')}/{gateway_id}"
        self.topic_base = base
        self.topic_status = f"{base}/status"
        self.topic_incidents = f"{base}/incidents"
        self.topic_stats = f"{base}/stats"
        self.topic_state = f"{base}/state"

        self.fatal_error: str | None = None
        self._client: paho.Client | None = None
        self._queue: DiskQueue | None = None
        self._connected = threading.Event()
        self._first_outcome = threading.Event()  # the first CONNACK (accepted or refused) or connect failure
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._idle = threading.Condition()
        self._acks: queue_module.SimpleQueue[int] = queue_module.SimpleQueue()
        # paho mid -> (queue id, is an incident); touched by the pump thread only
        self._inflight: dict[int, tuple[int, bool]] = {}
        self._last_handed = 0                 # highest queue id handed to paho
        self._draining = False                # after a reconnect: wait for the old window
        self._pump: threading.Thread | None = None
        self._outage_logged = False
        self._logged_errors: set[str] = set()
        self._connects = 0
        self.commands = commands
        self.inbox: Any = None  # a CommandInbox (edge/sinks/mqtt_commands.py) once the agent enables commands
        self._ha = HomeAssistantDiscovery(gateway_id, base, self.discovery_prefix, commands=commands)

    @classmethod
    def from_config(cls, config: AgentConfig) -> MqttSink:
        """Build from ``[mqtt]`` (credentials: URL, then keys, then environment)."""
        mqtt = config.mqtt
        if not mqtt.url:
            raise ConfigError("mqtt.url: not set; the MQTT sink needs a broker URL")
        username, password = mqtt.credentials()
        return cls(
            mqtt.url,
            gateway_id=config.gateway_id,
            queue_path=mqtt.queue_file(config.state_path(), config.gateway_id),
            username=username,
            password=password,
            ca_file=mqtt.ca_file,
            certfile=mqtt.certfile,
            keyfile=mqtt.keyfile,
            tls_insecure=mqtt.tls_insecure,
            client_id=mqtt.client_id_for(config.gateway_id),
            topic_prefix=mqtt.topic_prefix,
            keepalive=mqtt.keepalive,
            homeassistant=mqtt.homeassistant,
            discovery_prefix=mqtt.discovery_prefix,
            queue_max_messages=mqtt.queue_max_messages,
            queue_own_dir=mqtt.queue_path is None,
            commands=mqtt.commands,
        )

    # -- start ----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the queue, configure the client and connect in the background. Never blocks."""
        if self._started:
            return
        self._require_open()
        self._queue = DiskQueue(self.queue_path, max_messages=self.queue_max_messages,
                                max_bytes=self.queue_max_bytes, own_dir=self.queue_own_dir)
        if len(self._queue):
            logger.info("%d incident message(s) left in %s from an earlier run will be sent first",
                        len(self._queue), self.queue_path)
        try:
            self._client = self._make_client()
        except Exception:
            self._queue.close()
            self._queue = None
            raise
        self._client.connect_async(self.url.host, self.url.port, keepalive=self.keepalive)
        self._client.loop_start()
        self._pump = threading.Thread(target=self._run_pump, name="edgebot-mqtt-pump", daemon=True)
        self._pump.start()
        super().start()

    def _make_client(self) -> paho.Client:
        import ssl

        client = self._paho.client.Client(self._paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                          protocol=self._paho.client.MQTTv311, clean_session=True)
        if self.username is not None:
            client.username_pw_set(self.username, self._password)
        if self.url.tls:
            try:
                client.tls_set(ca_certs=self.ca_file, certfile=self.certfile, keyfile=self.keyfile,
                               cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as exc:
                raise SinkError(f"cannot load the TLS files (ca_file={self.ca_file}, "
                                f"certfile={self.certfile}): {exc}") from exc
            client.tls_insecure_set(self.tls_insecure)
        client.will_set(self.topic_status, "offline", qos=1, retain=True)
        client.reconnect_delay_set(self.reconnect_delay[0], self.reconnect_delay[1])  # type: ignore[arg-type]
        client.max_inflight_messages_set(self.max_inflight + 8)  # room for status/discovery
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self.inbox is not None:
            client.message_callback_add(self.inbox.topic, self.inbox.on_message)
        return client

    def enable_commands(self, inbox: Any) -> None:
        """Subscribe to ``inbox.topic`` on every connect and hand its messages to ``inbox.on_message``."""
        self.inbox = inbox
        inbox.client = self._client
        if self._client is not None:
            self._client.message_callback_add(inbox.topic, inbox.on_message)
            if self._connected.is_set():
                self._client.subscribe(inbox.topic, qos=1)

    # -- paho callbacks (network thread) ----------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            name = reason.getName()
            if name in _AUTH_REFUSALS:
                self.fatal_error = f"MQTT broker refused the connection: {_AUTH_REFUSALS[name]}"
                self._log_once(self.fatal_error, logging.ERROR,
                               "%s (broker %s, user %r)", self.fatal_error, self.url.display(),
                               self.username)
            else:
                self._log_once(f"refused:{name}", logging.WARNING,
                               "MQTT broker %s refused the connection: %s; retrying",
                               self.url.display(), name)
            self._first_outcome.set()  # after fatal_error: a waiter then sees the refusal
            return
        self.fatal_error = None
        self._connects += 1
        logger.info("connected to MQTT broker %s as %s (%d message(s) queued)",
                   self.url.display(), self.client_id, len(self._queue or ()))
        self._outage_logged = False
        self._logged_errors.clear()
        client.publish(self.topic_status, "online", qos=1, retain=True)
        if self.inbox is not None:
            self.inbox.client = client
            client.subscribe(self.inbox.topic, qos=1)
        if self.homeassistant:
            for topic, payload in self._ha.gateway_messages():
                client.publish(topic, payload, qos=1, retain=True)
        self._draining = True  # the pump resumes after paho has re-sent the old window
        self._connected.set()
        self._first_outcome.set()
        self._wakeup.set()

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` block, so the cause is at hand.
        import ssl

        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLCertVerificationError):
            self.fatal_error = (f"TLS certificate of the MQTT broker {self.url.display()} "
                                f"was rejected: {exc.verify_message} (check mqtt.ca_file)")
            self._log_once(self.fatal_error, logging.ERROR, "%s", self.fatal_error)
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning("broker unreachable at %s (%s); queueing incidents to %s",
                           self.url.display(), exc or "connection failed", self.queue_path)
        self._first_outcome.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping.is_set() and not self._outage_logged:
            self._outage_logged = True
            logger.warning("lost the connection to MQTT broker %s (%s); queueing incidents to %s",
                           self.url.display(), reason, self.queue_path)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        # Called with paho's message lock held: only hand the mid over, no other locks here.
        self._acks.put(mid)
        self._wakeup.set()

    # -- the pump thread: queue -> paho, PUBACK -> ack ------------------------------------
    def _run_pump(self) -> None:
        while True:
            self._wakeup.wait(0.5)
            self._wakeup.clear()
            try:
                self._process_acks()
                if self._stopping.is_set():
                    break
                if self._connected.is_set():
                    self._hand_over()
            except Exception:  # keep the pump alive whatever happens
                self._count("errors")
                logger.exception("MQTT sender failed; retrying")
                time.sleep(0.5)
            with self._idle:
                self._idle.notify_all()

    def _process_acks(self) -> None:
        ids = []
        incidents = 0
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue_module.Empty:
                break
            entry = self._inflight.pop(mid, None)
            if entry is not None:
                ids.append(entry[0])
                incidents += entry[1]
        if ids and self._queue is not None:
            self._queue.ack(ids)
            self._count("published", incidents)
            self._count("other_published", len(ids) - incidents)
        if self._draining and not self._inflight:
            self._draining = False

    def _hand_over(self) -> None:
        if self._draining or self._client is None or self._queue is None:
            return
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for message in self._queue.peek(room, after_id=self._last_handed):
            info = self._client.publish(message.topic, message.payload, qos=message.qos,
                                        retain=message.retain)
            codes = self._paho.MQTTErrorCode
            if info.rc not in (codes.MQTT_ERR_SUCCESS, codes.MQTT_ERR_NO_CONN):
                # Not accepted by paho at all: leave it in the queue for the next round.
                self._count("errors")
                self._log_once(f"publish:{info.rc}", logging.WARNING,
                               "paho refused a publish (%s); will retry", info.rc)
                break
            # Accepted (sent now, or kept by paho and re-sent after the reconnect).
            self._inflight[info.mid] = (message.id, message.topic == self.topic_incidents)
            self._last_handed = message.id

    # -- publishing (agent thread) ----------------------------------------------------------
    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Queue the incident on disk; the sender thread publishes it (QoS 1)."""
        self._require_open()
        if not self._started:
            self.start()
        disk_queue = self._queue
        if disk_queue is None:  # start() failed earlier and raised
            raise SinkError("the MQTT sink did not start; see the error raised by start()")
        message = {**incident, "message_id": uuid.uuid4().hex}
        disk_queue.put(encode_message(message), self.topic_incidents, qos=1)
        if self.homeassistant:
            for topic, payload in self._ha.host_messages(incident):
                disk_queue.put(payload, topic, qos=1, retain=True)
        self._wakeup.set()

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Publish a stats snapshot at QoS 0 if connected; skipped (and counted) otherwise."""
        self._require_open()
        if self._client is None or not self._connected.is_set():
            self._count("stats_skipped")
            return
        info = self._client.publish(self.topic_stats, encode_message(stats), qos=0)
        if info.rc == self._paho.MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._count("stats_published")
        else:
            self._count("stats_skipped")

    # -- flush, close, check, stats -------------------------------------------------------
    def _undelivered(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued message is acknowledged by the broker (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self._undelivered():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._pump is None or not self._pump.is_alive():
                return False
            self._wakeup.set()
            with self._idle:
                self._idle.wait(min(remaining, 0.2))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout``, publish ``offline``, disconnect.

        Undelivered incidents stay in the queue file and are sent at the next start.
        """
        if self._closed:
            return
        deadline = time.monotonic() + timeout
        if self._started:
            if self._connected.is_set():
                self.flush(max(0.0, deadline - time.monotonic()))
            self._stopping.set()
            self._wakeup.set()
            if self._pump is not None:
                self._pump.join(timeout=2.0)
            client = self._client
            if client is not None and self._connected.is_set():
                info = client.publish(self.topic_status, "offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(max(0.5, deadline - time.monotonic()))
                except (RuntimeError, ValueError):
                    pass
            if client is not None:
                client.disconnect()
                client.loop_stop()
            self._connected.clear()
            left = self._undelivered()
            if left:
                logger.warning("closing with %d undelivered message(s) kept in %s for the next start",
                               left, self.queue_path)
            if self._queue is not None:
                self._queue.close()
        super().close(timeout)

    def check(self) -> None:
        """Raise ``SinkError`` if the broker refused our credentials or TLS certificate."""
        if self.fatal_error:
            raise SinkError(self.fatal_error)

    @property
    def connected(self) -> bool:
        """True while a CONNACK-accepted connection is up."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a connection (for tests and start-up checks)."""
        return self._connected.wait(timeout)

    def wait_ready(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for the first connection outcome (accepted, refused, failed).

        Returns True once it is known; then :meth:`check` raises if the broker refused us.
        """
        if not self._started:
            return True
        return self._first_outcome.wait(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters plus ``connected``, ``connects``, ``inflight`` and the queue's own counters."""
        base = super().stats()
        queue_stats = self._queue.stats() if self._queue is not None else {}
        return {
            **base,
            "queued": queue_stats.get("queued", 0),
            "dropped": base["dropped"] + queue_stats.get("dropped", 0),
            "errors": base["errors"] + queue_stats.get("errors", 0),
            "queued_bytes": queue_stats.get("queued_bytes", 0),
            "dropped_disk_full": queue_stats.get("dropped_disk_full", 0),
            "connected": self.connected,
            "connects": self._connects,
            "inflight": len(self._inflight),
            "queue_path": str(self.queue_path),
            "fatal_error": self.fatal_error,
        }

    def _log_once(self, key: str, level: int, message: str, *args: Any) -> None:
        if key in self._logged_errors:
            return
        self._logged_errors.add(key)
        logger.log(level, message, *args)
