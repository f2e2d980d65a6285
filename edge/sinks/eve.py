"""Suricata EVE JSON sink: one ``event_type: "alert"`` record per ``new`` and ``update`` incident.

SIEMs that already read Suricata's ``eve.json`` (Wazuh, Elastic's Filebeat ``suricata`` module,
Splunk, Security Onion) read this file as it is (recipes: docs/integrations.md). A record::

    {"timestamp": "2018-12-21T15:51:02.123456+0000", "flow_id": 1234567890123, "event_type": "alert",
     "src_ip": "192.168.1.195", "dest_ip": "185.244.25.235", "dest_port": 6667, "proto": "TCP",
     "community_id": "1:...", "alert": {"action": "allowed", "gid": 1, "signature_id": 1900001,
     "rev": 1, "signature": "EDGEBOT IoT botnet activity (model confident)",
     "category": "A Network Trojan was detected", "severity": 1, "metadata": {...}},
     "edgebot": {<the incident: incident_id, type, host, score, severity, rules, evidence...>}}

How the fields are filled:

- ``timestamp``: the incident's ``last_seen`` (flow time, as Suricata uses packet time), UTC,
  Suricata's format ``YYYY-MM-DDTHH:MM:SS.ffffff+0000``;
- ``flow_id``: the incident id as a 51-bit integer (Suricata keeps its flow ids within 51 bits so
  JavaScript and JSON tools read them exactly): every record of one incident shares it;
- ``src_ip``: the flagged host; ``dest_ip``/``dest_port``/``proto``: its most frequent peer
  (left out when the incident lists none); ``src_port`` is left out (an incident spans many flows);
- ``community_id``: the Community ID of the incident's latest flagged flow (left out when unknown);
- ``alert.signature_id``/``signature``/``category``: one per evidence rule (the most specific rule
  that fired: oneway, flood, scan, beacon, retry, then confident), in Suricata's local range 1000000-1999999
  (:data:`SIGNATURES`); ``alert.severity``: 1 for ``critical``/``high``, 2 ``medium``, 3 ``low``;
  ``alert.action`` is ``allowed`` (edgebot detects, it does not block);
- ``edgebot``: every field of the incident (the one key outside Suricata's own schema).

``end`` incidents and stats snapshots are not written (EVE has no record for either), and counted
as ``skipped`` / ``stats_skipped``. The file is appended to, one record per line, flushed and (by
default) fsync'ed after every record, and rotated at ``max_bytes`` (``eve.json`` -> ``eve.json.1``
... ``eve.json.<backups>``), a rename that Filebeat and Wazuh's logcollector follow.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Optional

from edgebot.edge.plugins import Flag, setting
from edgebot.edge.sinks.base import SINKS, Sink, encode_message
from edgebot.errors import SinkError
from edgebot.statefiles import writable_file_problem

if TYPE_CHECKING:
    from edgebot.edge.config import AgentConfig

logger = logging.getLogger(__name__)

__all__ = ["EveConfig", "EveSink", "eve_record", "eve_timestamp", "eve_flow_id", "SIGNATURES"]

#: Evidence rule -> (signature_id, signature, Suricata classification), most specific rule first.
SIGNATURES: dict[str, tuple[int, str, str]] = {
    "oneway": (1900006, "EDGEBOT IoT botnet activity (unanswered flood)", "Attempted Denial of Service"),
    "flood": (1900003, "EDGEBOT IoT botnet activity (flood)", "Attempted Denial of Service"),
    "scan": (1900002, "EDGEBOT IoT botnet activity (scan)", "Detection of a Network Scan"),
    "beacon": (1900005, "EDGEBOT IoT botnet activity (periodic beacon)", "A Network Trojan was detected"),
    "retry": (1900004, "EDGEBOT IoT botnet activity (failed connections)", "Potentially Bad Traffic"),
    "confident": (1900001, "EDGEBOT IoT botnet activity (model confident)", "A Network Trojan was detected"),
}
#: When an incident names no rule (older messages, tests).
GENERIC_SIGNATURE = (1900000, "EDGEBOT IoT botnet activity", "A Network Trojan was detected")
#: edgebot severity -> Suricata alert severity (1 is the highest).
SEVERITY = {"critical": 1, "high": 1, "medium": 2, "low": 3}
#: Suricata's protocol names.
_PROTOS = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "icmp6": "IPv6-ICMP", "ipv6-icmp": "IPv6-ICMP",
           "sctp": "SCTP"}
_FLOW_ID_MASK = (1 << 51) - 1


def eve_timestamp(ts: float) -> str:
    """``1545407462.5`` -> ``2018-12-21T15:51:02.500000+0000`` (UTC, Suricata's format)."""
    moment = _dt.datetime.fromtimestamp(float(ts), tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def eve_flow_id(incident_id: str) -> int:
    """The incident id (hex) as a positive 51-bit integer; any other string is hashed first."""
    try:
        value = int(str(incident_id), 16)
    except ValueError:
        import hashlib

        value = int(hashlib.sha1(str(incident_id).encode()).hexdigest()[:16], 16)
    return (value & _FLOW_ID_MASK) or 1


def _peer(peers: Any) -> tuple[Optional[str], Optional[int], Optional[str]]:
    """``"185.244.25.235:6667/tcp"`` (or ``[fe80::1]``-less ``fe80::1:443/udp``) -> (ip, port, proto)."""
    if not isinstance(peers, (list, tuple)) or not peers:
        return None, None, None
    text = str(peers[0])
    address, _, proto = text.partition("/")
    ip, _, port = address.rpartition(":")
    try:
        ip = str(ipaddress.ip_address(ip))
        port_n: Optional[int] = int(port)
        if not 0 <= port_n <= 65535:  # type: ignore[operator]
            port_n = None
    except ValueError:
        return None, None, None
    return ip, port_n, _PROTOS.get(proto.lower(), proto.upper() or None) if proto else None


def _signature(rules: Any) -> tuple[int, str, str]:
    fired = set(rules) if isinstance(rules, (list, tuple)) else set()
    for rule, signature in SIGNATURES.items():
        if rule in fired:
            return signature
    return GENERIC_SIGNATURE


def eve_record(incident: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The EVE ``alert`` record of a ``new`` or ``update`` incident (None for ``end`` and anything else)."""
    if incident.get("type") not in ("new", "update"):
        return None
    host = str(incident.get("host", ""))
    ts = incident.get("last_seen") or incident.get("first_seen") or 0.0
    sid, signature, category = _signature(incident.get("rules"))
    severity = str(incident.get("severity", "high"))
    record: dict[str, Any] = {
        "timestamp": eve_timestamp(ts),
        "flow_id": eve_flow_id(str(incident.get("incident_id", host))),
        "event_type": "alert",
        "src_ip": host,
    }
    dest_ip, dest_port, proto = _peer(incident.get("peers"))
    if dest_ip is not None:
        record["dest_ip"] = dest_ip
        if dest_port is not None:
            record["dest_port"] = dest_port
    if proto:
        record["proto"] = proto
    community = incident.get("community_id")
    if isinstance(community, str) and community:
        record["community_id"] = community
    record["alert"] = {
        "action": "allowed",
        "gid": 1,
        "signature_id": sid,
        "rev": 1,
        "signature": signature,
        "category": category,
        "severity": SEVERITY.get(severity, 1),
        "metadata": {"tag": ["edgebot", "iot-botnet"], "signature_severity": [severity.capitalize()]},
    }
    record["edgebot"] = dict(incident)
    return record


@dataclass
class EveConfig:
    """``[eve]``: Suricata-EVE-compatible alert records, appended to a file."""

    path: str | None = setting(None, path=True)
    """Unset: no EVE file."""
    fsync: bool = setting(True)
    """``os.fsync`` after every record (an alert survives a power cut)."""
    max_bytes: int = setting(64 * 1024 * 1024, low=4096, high=2**40)
    """Rotate the file when it reaches this size."""
    backups: int = setting(3, low=0, high=100)
    """Rotated files kept (``eve.json.1`` is the newest); 0: the full file is removed."""

    def problems(self, config: AgentConfig) -> list[str]:
        """A path that start-up could not open for appending."""
        if self.path is None:
            return []
        why = writable_file_problem(Path(self.path), create_dirs=False, devices_ok=True)
        return [f"eve.path: {why}"] if why else []


_DEFAULT = EveConfig()


@SINKS.register
class EveSink(Sink):
    """Append Suricata EVE ``alert`` records for ``new`` and ``update`` incidents to a file.

    Parameters
    ----------
    path : str or os.PathLike
        The EVE file (appended, never truncated; a character device such as /dev/stdout works).
    fsync : bool
        ``os.fsync`` after every record.
    max_bytes : int
        Rotate at this size (regular files only).
    backups : int
        Rotated files kept.
    """

    type = "eve"
    order = 30
    Settings = EveConfig
    flags = (Flag("--eve", "eve.path", "Append Suricata-EVE alert records (JSON lines) here, for SIEMs.",
                  path=True),)

    @classmethod
    def wanted(cls, config: AgentConfig) -> bool:
        """``[eve] path`` is set."""
        return config.eve.path is not None

    @classmethod
    def from_config(cls, config: AgentConfig) -> EveSink:
        """Build from ``[eve]``."""
        eve = config.eve
        if eve.path is None:
            raise SinkError("eve.path: not set; the EVE sink needs a file")
        return cls(eve.path, fsync=eve.fsync, max_bytes=eve.max_bytes, backups=eve.backups)

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = _DEFAULT.fsync,
                 max_bytes: int = _DEFAULT.max_bytes, backups: int = _DEFAULT.backups) -> None:
        super().__init__()
        self.path = Path(path)
        self.fsync = fsync
        self.max_bytes = int(max_bytes)
        self.backups = int(backups)
        self._stream: IO[str] | None = None
        self._size = 0
        self._regular = True
        self._lock = threading.Lock()
        self._error_logged = False
        self._counts.update({"skipped": 0, "stats_skipped": 0, "rotations": 0})

    def _open(self) -> None:
        try:
            self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            st = os.fstat(self._stream.fileno())
        except OSError as exc:
            raise SinkError(f"cannot open the EVE file {self.path}: {exc.strerror}; "
                            "create its directory or change [eve] path") from exc
        import stat

        self._regular = stat.S_ISREG(st.st_mode)
        self._size = st.st_size if self._regular else 0

    def start(self) -> None:
        """Open the file for appending."""
        self._require_open()
        if self._stream is None:
            self._open()
        super().start()

    def _rotate(self) -> None:
        """``eve.json`` -> ``eve.json.1`` -> ... (the oldest beyond ``backups`` removed); reopen."""
        assert self._stream is not None
        self._stream.close()
        self._stream = None
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest.unlink(missing_ok=True)
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._count("rotations")
        self._open()

    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Append the incident's alert record (``end`` is counted as ``skipped``)."""
        self._require_open()
        record = eve_record(incident)
        if record is None:
            self._count("skipped")
            return
        if self._stream is None:
            self.start()
        line = encode_message(record) + "\n"
        size = len(line.encode("utf-8"))
        with self._lock:
            try:
                if self._regular and self._size and self._size + size > self.max_bytes:
                    self._rotate()
                stream = self._stream
                if stream is None:
                    raise ValueError("the EVE file is not open")
                stream.write(line)
                stream.flush()
                if self.fsync and self._regular:
                    os.fsync(stream.fileno())
                self._size += size
            except (OSError, ValueError) as exc:
                self._count("errors")
                self._count("dropped")
                if not self._error_logged:
                    self._error_logged = True
                    logger.error("cannot write to the EVE file %s (%s); alerts are being lost", self.path, exc)
                return
        self._count("published")

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Counted as ``stats_skipped``: the EVE file carries alerts only."""
        self._require_open()
        self._count("stats_skipped")

    def flush(self, timeout: float = 5.0) -> bool:
        """Every record is flushed when written; True unless the stream fails now."""
        with self._lock:
            if self._stream is not None and not self._stream.closed:
                try:
                    self._stream.flush()
                except OSError:
                    return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Close the file; idempotent."""
        if self._closed:
            return
        with self._lock:
            if self._stream is not None:
                try:
                    self._stream.close()
                except OSError as exc:
                    logger.warning("closing %s failed: %s", self.path, exc)
                self._stream = None
        super().close(timeout)

    def stats(self) -> dict[str, Any]:
        """Common counters plus ``skipped``, ``rotations`` and the ``path``."""
        return {**super().stats(), "path": str(self.path)}
