"""Syslog sink: every incident as an RFC 5424 message over UDP, TCP or TLS, through an on-disk queue.

``--syslog udp://host[:514]`` (RFC 5426: one datagram per message), ``tcp://host[:514]`` (RFC 6587
octet counting: ``LEN SP MSG``) or ``tls://host[:6514]`` (RFC 5425, same framing, the server's
certificate checked against ``ca_file`` or the system CAs, its name against the host). A message::

    <187>1 2026-12-01T22:11:13.123456Z gw-livingroom edgebot 4242 incident [edgebot@32473
    type="new" incident_id="3f2a9c0d1e4b5a69" host="192.168.1.195" severity="high" score="0.98"
    peer="185.244.25.235:6667/tcp"] {"type":"new","incident_id":"3f2a9c0d1e4b5a69",...}

PRI is ``facility * 8 + severity`` (``critical`` 2, ``high`` 3, ``medium`` 4, ``low`` 5, ``end``
6); the HOSTNAME is the gateway id; the MSG is the incident as JSON (ASCII, so no BOM). The SD-ID
``edgebot@32473`` uses the enterprise number that RFC 5612 reserves for documentation (edgebot has
none of its own). Stats snapshots are not sent (counted as ``stats_skipped``).

Delivery: each message is first written to an SQLite queue (``<state dir>/syslog-queue-<gw>.sqlite``)
and removed once the socket took it, so an unreachable or restarting server loses nothing the agent
accepted: a one-line warning, then reconnection with backoff, and what is still queued at exit is
sent at the next start. Syslog itself has no acknowledgements: over TCP/TLS a message the kernel
took just before the connection broke can still be lost, and over UDP nothing is confirmed at all.
A rejected TLS certificate is fatal: ``check()`` raises and ``edgebot run`` exits 2.
"""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional
from urllib.parse import urlsplit

from edgebot.edge.plugins import Flag, file_problem, setting
from edgebot.edge.sinks.base import SINKS, Sink, encode_message
from edgebot.edge.sinks.queue import DiskQueue
from edgebot.errors import ConfigError, SinkError
from edgebot.statefiles import writable_file_problem

if TYPE_CHECKING:
    from edgebot.edge.config import AgentConfig

logger = logging.getLogger(__name__)

__all__ = ["SyslogConfig", "SyslogSink", "SyslogUrl", "parse_syslog_url", "format_rfc5424", "FACILITIES"]

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "solaris-cron",
              "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
#: incident severity (or ``end``) -> syslog severity (2 crit, 3 err, 4 warning, 5 notice, 6 info)
SEVERITIES = {"critical": 2, "high": 3, "medium": 4, "low": 5, "end": 6}
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
SD_ID = "edgebot@32473"
#: Messages sent per round of the sender thread.
_BATCH = 64


class SyslogUrl(NamedTuple):
    """A parsed ``udp://``, ``tcp://`` or ``tls://`` server address."""

    scheme: str
    host: str
    port: int

    def display(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_syslog_url(url: str) -> SyslogUrl:
    """``tcp://127.0.0.1:5140`` -> ``SyslogUrl("tcp", "127.0.0.1", 5140)``; ``ConfigError`` naming ``syslog.url``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"syslog.url: {url!r} is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(f"syslog.url: {url!r} must start with udp://, tcp:// or tls://")
    if not parts.hostname:
        raise ConfigError(f"syslog.url: {url!r} names no host")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"syslog.url: {url!r} must be scheme://host[:port] only")
    return SyslogUrl(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, else ``-``."""
    text = "".join(c for c in str(value) if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def _sd_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(incident: Mapping[str, Any], *, hostname: str, facility: str = "local5",
                   app_name: str = "edgebot", procid: Optional[int] = None, now: Optional[float] = None) -> bytes:
    """One incident as an RFC 5424 message (without transport framing)."""
    kind = str(incident.get("type", ""))
    severity = SEVERITIES["end"] if kind == "end" else SEVERITIES.get(str(incident.get("severity")), 3)
    pri = FACILITIES.index(facility) * 8 + severity
    moment = _dt.datetime.fromtimestamp(time.time() if now is None else now, tz=_dt.timezone.utc)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = {"type": kind, "incident_id": incident.get("incident_id"), "host": incident.get("host"),
              "severity": incident.get("severity"), "score": incident.get("score")}
    peers = incident.get("peers")
    if isinstance(peers, (list, tuple)) and peers:
        params["peer"] = peers[0]
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items() if v is not None) + "]"
    header = (f"<{pri}>1 {stamp} {_header_field(hostname, 255)} {_header_field(app_name, 48)} "
              f"{os.getpid() if procid is None else procid} incident")
    return f"{header} {sd} {encode_message(incident)}".encode("utf-8")


@dataclass
class SyslogConfig:
    """``[syslog]``: RFC 5424 messages to a syslog server (rsyslog, syslog-ng, a SIEM's collector)."""

    url: str | None = setting(None)
    """``udp://host[:514]``, ``tcp://host[:514]`` or ``tls://host[:6514]``; unset = no syslog."""
    ca_file: str | None = setting(None, path=True)
    """tls://: the CA bundle that signed the server's certificate (system CAs when unset)."""
    certfile: str | None = setting(None, path=True)
    keyfile: str | None = setting(None, path=True)
    facility: str = setting("local5", choices=FACILITIES)
    """Suricata's default syslog facility."""
    app_name: str = setting("edgebot")
    timeout_s: float = setting(5.0, low=0.1, high=300.0)
    """Connect and send timeout."""
    queue_path: str | None = setting(None, path=True)
    """Default ``<state dir>/syslog-queue-<gateway_id>.sqlite``."""
    queue_max_messages: int = setting(10_000, low=1, high=10_000_000)

    def queue_file(self, state_dir: Path, gateway_id: str) -> Path:
        """``queue_path`` or ``<state_dir>/syslog-queue-<gateway_id>.sqlite``."""
        return Path(self.queue_path) if self.queue_path else state_dir / f"syslog-queue-{gateway_id}.sqlite"

    def problems(self, config: AgentConfig) -> list[str]:
        """The URL, TLS files only with tls://, files that exist, a queue file start-up can open."""
        if self.url is None:
            return []
        problems: list[str] = []
        try:
            parsed = parse_syslog_url(self.url)
        except ConfigError as exc:
            return [str(exc)]
        if parsed.scheme != "tls" and (self.ca_file or self.certfile):
            problems.append(f"syslog.url: TLS files are set but the URL is {parsed.scheme}://; use tls://")
        for name in ("ca_file", "certfile", "keyfile"):
            problem = file_problem(f"syslog.{name}", getattr(self, name))
            if problem:
                problems.append(problem)
        if self.keyfile and not self.certfile:
            problems.append("syslog.keyfile: set syslog.certfile too (the client certificate)")
        why = writable_file_problem(self.queue_file(config.state_path(), config.gateway_id), sqlite=True)
        if why:
            problems.append(f"syslog.queue_path{'' if self.queue_path else ' (default)'}: {why}")
        return problems


_DEFAULT = SyslogConfig()


@SINKS.register
class SyslogSink(Sink):
    """Send every incident (new, update, end) as RFC 5424 to a syslog server, never blocking the agent.

    Parameters
    ----------
    url : str
        ``udp://``, ``tcp://`` or ``tls://`` ``host[:port]``.
    gateway_id : str
        The HOSTNAME of every message.
    queue_path : str or os.PathLike
        SQLite file of the outgoing queue.
    ca_file, certfile, keyfile : str, optional
        TLS: the CA to trust, a client certificate and key.
    facility, app_name : str
        RFC 5424 facility and APP-NAME.
    timeout_s : float
        Connect and send timeout.
    queue_max_messages : int
        Bound of the queue (oldest dropped first, counted).
    reconnect_delay : (float, float)
        Minimum and maximum seconds between connection attempts.
    """

    type = "syslog"
    order = 40
    Settings = SyslogConfig
    flags = (Flag("--syslog", "syslog.url", "Send incidents as RFC 5424 syslog: udp://host:514, tcp://host:514 "
                  "or tls://host:6514 ([syslog] ca_file for a private CA)."),)

    @classmethod
    def wanted(cls, config: AgentConfig) -> bool:
        """``[syslog] url`` is set."""
        return bool(config.syslog.url)

    @classmethod
    def from_config(cls, config: AgentConfig) -> SyslogSink:
        """Build from ``[syslog]``."""
        s = config.syslog
        if not s.url:
            raise ConfigError("syslog.url: not set; the syslog sink needs a server URL")
        return cls(s.url, gateway_id=config.gateway_id, queue_path=s.queue_file(config.state_path(), config.gateway_id),
                   ca_file=s.ca_file, certfile=s.certfile, keyfile=s.keyfile, facility=s.facility,
                   app_name=s.app_name, timeout_s=s.timeout_s, queue_max_messages=s.queue_max_messages,
                   queue_own_dir=s.queue_path is None)

    def __init__(self, url: str, *, gateway_id: str, queue_path: str | os.PathLike[str],
                 ca_file: str | None = None, certfile: str | None = None, keyfile: str | None = None,
                 facility: str = _DEFAULT.facility, app_name: str = _DEFAULT.app_name,
                 timeout_s: float = _DEFAULT.timeout_s, queue_max_messages: int = _DEFAULT.queue_max_messages,
                 queue_own_dir: bool = False, reconnect_delay: tuple[float, float] = (1.0, 30.0)) -> None:
        super().__init__()
        self.url = parse_syslog_url(url)
        if facility not in FACILITIES:
            raise ConfigError(f"syslog.facility: must be one of {', '.join(FACILITIES)}, got {facility!r}")
        self.gateway_id = gateway_id
        self.queue_path = Path(queue_path)
        self.ca_file, self.certfile, self.keyfile = ca_file, certfile, keyfile
        self.facility, self.app_name = facility, app_name
        self.timeout_s = float(timeout_s)
        self.queue_max_messages = int(queue_max_messages)
        self.queue_own_dir = queue_own_dir
        self.reconnect_delay = reconnect_delay
        self.fatal_error: str | None = None
        self._queue: DiskQueue | None = None
        self._sock: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._idle = threading.Condition()
        self._first_outcome = threading.Event()
        self._connected = False
        self._connects = 0
        self._outage_logged = False
        self._counts.update({"stats_skipped": 0})

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open the queue and start the sender thread (it connects in the background)."""
        if self._started:
            return
        self._require_open()
        self._queue = DiskQueue(self.queue_path, max_messages=self.queue_max_messages, own_dir=self.queue_own_dir)
        if len(self._queue):
            logger.info("%d syslog message(s) left in %s from an earlier run will be sent first",
                        len(self._queue), self.queue_path)
        self._thread = threading.Thread(target=self._run, name="edgebot-syslog", daemon=True)
        self._thread.start()
        super().start()

    def _connect(self) -> Any:
        family = socket.SOCK_DGRAM if self.url.scheme == "udp" else socket.SOCK_STREAM
        info = socket.getaddrinfo(self.url.host, self.url.port, type=family)[0]
        sock = socket.socket(info[0], info[1], info[2])
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(info[4])
            if self.url.scheme == "tls":
                import ssl

                context = ssl.create_default_context(cafile=self.ca_file)
                if self.certfile:
                    context.load_cert_chain(self.certfile, self.keyfile)
                sock = context.wrap_socket(sock, server_hostname=self.url.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def _send(self, payload: bytes) -> None:
        if self.url.scheme == "udp":
            self._sock.send(payload)
        else:
            self._sock.sendall(str(len(payload)).encode("ascii") + b" " + payload)

    def _drop_connection(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._connected = False

    def _run(self) -> None:
        delay = self.reconnect_delay[0]
        while not self._stopping.is_set():
            if self._sock is None:
                try:
                    self._sock = self._connect()
                except OSError as exc:
                    self._on_connect_failed(exc)
                    self._first_outcome.set()
                    self._stopping.wait(delay)
                    delay = min(self.reconnect_delay[1], delay * 2)
                    continue
                if self._stopping.is_set():
                    break
                self._connected, delay = True, self.reconnect_delay[0]
                self._connects += 1
                self._first_outcome.set()
                if self._outage_logged:
                    logger.warning("syslog server %s reachable again; sending %d queued message(s)",
                                   self.url.display(), len(self._queue or ()))
                self._outage_logged = False
            try:
                sent = self._send_batch()
            except Exception:  # keep the sender alive whatever happens
                if self._stopping.is_set():
                    break
                self._count("errors")
                logger.exception("syslog sender failed; retrying")
                sent = 0
                self._stopping.wait(0.5)
            with self._idle:
                self._idle.notify_all()
            if not sent:
                self._wakeup.wait(0.5)
                self._wakeup.clear()

    def _on_connect_failed(self, exc: OSError) -> None:
        import ssl

        if isinstance(exc, ssl.SSLCertVerificationError):
            self.fatal_error = (f"TLS certificate of the syslog server {self.url.display()} was rejected: "
                                f"{exc.verify_message} (check syslog.ca_file)")
            if not self._outage_logged:
                logger.error("%s", self.fatal_error)
        elif not self._outage_logged:
            logger.warning("syslog server unreachable at %s (%s); queueing incidents to %s",
                           self.url.display(), exc.strerror or exc, self.queue_path)
        self._outage_logged = True

    def _send_batch(self) -> int:
        queue = self._queue
        if queue is None or self._sock is None:
            return 0
        batch = queue.peek(_BATCH)
        done: list[int] = []
        try:
            for message in batch:
                try:
                    self._send(message.payload)
                except OSError as exc:
                    if exc.errno != errno.EMSGSIZE:
                        raise
                    self._count("dropped")  # larger than a datagram can be: it never will fit
                    logger.warning("dropping a %d-byte syslog message: too large for %s",
                                   len(message.payload), self.url.scheme)
                done.append(message.id)
        except OSError as exc:
            if not self._outage_logged:
                self._outage_logged = True
                logger.warning("lost the connection to syslog server %s (%s); queueing incidents to %s",
                               self.url.display(), exc.strerror or exc, self.queue_path)
            self._drop_connection()
        if done:
            queue.ack(done)
            self._count("published", len(done))
        return len(done)

    # -- publishing (agent thread) ---------------------------------------------------------------
    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Queue the incident on disk; the sender thread sends it."""
        self._require_open()
        if not self._started:
            self.start()
        if self._queue is None:
            raise SinkError("the syslog sink did not start; see the error raised by start()")
        payload = format_rfc5424(incident, hostname=self.gateway_id, facility=self.facility, app_name=self.app_name)
        self._queue.put(payload, "syslog")
        self._wakeup.set()

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Counted as ``stats_skipped``: syslog carries incidents only."""
        self._require_open()
        self._count("stats_skipped")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self._queue is not None and len(self._queue):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                return False
            self._wakeup.set()
            with self._idle:
                self._idle.wait(min(remaining, 0.2))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what can be sent within ``timeout``, then stop; the rest stays queued for the next start."""
        if self._closed:
            return
        if self._started:
            if self._connected:
                self.flush(timeout)
            self._stopping.set()
            self._wakeup.set()
            if self._thread is not None:
                self._thread.join(timeout=max(0.5, min(timeout, self.timeout_s + 1.0)))
            self._drop_connection()
            if self._queue is not None:
                left = len(self._queue)
                if left:
                    logger.warning("closing with %d undelivered syslog message(s) kept in %s for the next start",
                                   left, self.queue_path)
                self._queue.close()
        super().close(timeout)

    def check(self) -> None:
        """Raise ``SinkError`` if the server's TLS certificate was rejected."""
        if self.fatal_error:
            raise SinkError(self.fatal_error)

    def wait_ready(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for the first connection outcome."""
        return True if not self._started else self._first_outcome.wait(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters plus ``connected``, ``connects``, the queue's own counters and ``fatal_error``."""
        base = super().stats()
        q = self._queue.stats() if self._queue is not None else {}
        return {**base, "queued": q.get("queued", 0),
                "dropped": base["dropped"] + q.get("dropped", 0), "errors": base["errors"] + q.get("errors", 0),
                "connected": self._connected, "connects": self._connects, "url": self.url.display(),
                "queue_path": str(self.queue_path), "fatal_error": self.fatal_error}
