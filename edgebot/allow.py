"""Operator feedback: allow rules (a host, or a host and a peer) kept in the state dir, applied without a restart.

``edgebot allow HOST [--peer IP[:PORT]] [--reason TEXT]``, ``edgebot allow --incident ID`` and the
MQTT command topic all write the same file, ``allow.json`` in the state dir (atomic, 0600). A
running agent re-reads it when it changes. A flow matching a rule is *suppressed*: still
scored and counted (per rule), never evidence. A rule for a host the agent has not seen is
accepted and listed as such (devices come and go).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from edgebot.errors import ConfigError

log = logging.getLogger(__name__)

ALLOW_FILE = "allow.json"
SCHEMA = "edgebot-allow"
SCHEMA_VERSION = 1
#: Rules kept; adding one more refuses with a clear message (the operator removes old ones first).
MAX_RULES = 1000


@dataclass(frozen=True)
class AllowRule:
    """One suppression rule: every flow of ``host``, or only those to ``peer`` (and ``port``)."""

    id: str
    host: str
    peer: Optional[str] = None
    port: Optional[int] = None
    reason: str = ""
    incident_id: Optional[str] = None
    created: float = 0.0

    def matches(self, host: str, dest: str, port: int) -> bool:
        if host != self.host:
            return False
        if self.peer is not None and dest != self.peer:
            return False
        return self.port is None or port == self.port

    @property
    def whole_host(self) -> bool:
        return self.peer is None and self.port is None

    def describe(self) -> str:
        target = self.host if self.whole_host else f"{self.host} -> {self.peer or '*'}:{self.port or '*'}"
        return f"{self.id} {target}" + (f" ({self.reason})" if self.reason else "")


def _address(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not an IP address") from None


def parse_peer(text: str) -> tuple[str, Optional[int]]:
    """``"1.2.3.4"``, ``"1.2.3.4:443"``, ``"[fe80::1]:443"`` or ``"fe80::1"`` -> (address, port or None).

    Raises
    ------
    ConfigError
        Not an address, or a port outside 0-65535.
    """
    text = text.strip()
    port: Optional[str] = None
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        addr, port = text.split(":")
    else:
        addr = text
    host = _address(addr, "peer")
    if port is None or port == "":
        return host, None
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"peer port {port!r} must be a number from 0 to 65535")
    return host, int(port)


def make_rule(host: str, peer: Optional[str] = None, reason: str = "", incident_id: Optional[str] = None,
              now: Optional[float] = None) -> AllowRule:
    """A validated rule (addresses normalized, a stable id from its content)."""
    h = _address(host, "host")
    dest, port = parse_peer(peer) if peer else (None, None)
    if len(reason) > 500:
        raise ConfigError("reason is longer than 500 characters")
    rid = hashlib.sha1(f"{h}|{dest}|{port}".encode()).hexdigest()[:10]
    return AllowRule(id=rid, host=h, peer=dest, port=port, reason=reason, incident_id=incident_id,
                     created=time.time() if now is None else now)


class AllowList:
    """The allow rules of one state dir; :meth:`refresh` re-reads the file when it changed.

    Parameters
    ----------
    state_dir
        Where ``allow.json`` lives.
    """

    def __init__(self, state_dir: str | os.PathLike[str]):
        self.path = Path(state_dir) / ALLOW_FILE
        self.rules: list[AllowRule] = []
        self._by_host: dict[str, list[AllowRule]] = {}
        self._stamp: Optional[tuple[int, int]] = None
        self.suppressed: dict[str, int] = {}
        self.refresh()

    def __len__(self) -> int:
        return len(self.rules)

    def _index(self) -> None:
        by_host: dict[str, list[AllowRule]] = {}
        for r in self.rules:
            by_host.setdefault(r.host, []).append(r)
        self._by_host = by_host

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read; True when the rules changed.

        A corrupt or foreign file is moved aside with a one-line warning (the rules are then empty).
        """
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self.rules = self._read() if stamp is not None else []
        self._index()
        return True

    def _read(self) -> list[AllowRule]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("schema") != SCHEMA:
                raise ValueError("not an edgebot allow list")
            if not isinstance(data.get("version"), int) or data["version"] > SCHEMA_VERSION:
                raise ValueError(f"version {data.get('version')!r} is newer than this edgebot reads")
            rules = []
            for item in data["rules"][:MAX_RULES]:
                rule = make_rule(item["host"], _peer_text(item.get("peer"), item.get("port")),
                                 str(item.get("reason", "")), item.get("incident_id"), float(item.get("created", 0)))
                rules.append(rule)
            return rules
        except (OSError, ValueError, TypeError, KeyError, ConfigError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            try:
                os.replace(self.path, aside)
            except OSError:
                aside = self.path
            log.warning("allow list %s unreadable (%s); moved to %s, no rules apply", self.path, exc, aside.name)
            self._stamp = None
            return []

    def match(self, host: str, dest: str, port: int) -> Optional[AllowRule]:
        """The first rule a flow matches (None if none); counted per rule."""
        rules = self._by_host.get(host)
        if not rules:
            return None
        for r in rules:
            if r.matches(host, dest, port):
                self.suppressed[r.id] = self.suppressed.get(r.id, 0) + 1
                return r
        return None

    def has_host(self, host: str) -> bool:
        return host in self._by_host

    # ------------------------------------------------------------------------------ editing
    def add(self, rule: AllowRule) -> bool:
        """Add ``rule`` and save; False when an identical rule already exists (its reason is updated)."""
        self.refresh()
        for i, r in enumerate(self.rules):
            if r.id == rule.id:
                self.rules[i] = rule
                self.save()
                return False
        if len(self.rules) >= MAX_RULES:
            raise ConfigError(f"the allow list already holds {MAX_RULES} rules; remove some with `edgebot allow --remove ID`")
        self.rules.append(rule)
        self.save()
        return True

    def remove(self, rule_id: str) -> bool:
        """Remove a rule by id (or id prefix) and save; False when none matches."""
        self.refresh()
        kept = [r for r in self.rules if not r.id.startswith(rule_id)]
        if len(kept) == len(self.rules):
            return False
        self.rules = kept
        self.save()
        return True

    def save(self) -> None:
        from edgebot.statefiles import atomic_write_private

        data = {"schema": SCHEMA, "version": SCHEMA_VERSION, "rules": [asdict(r) for r in self.rules]}
        atomic_write_private(self.path, (json.dumps(data, indent=2) + "\n").encode())
        self._index()
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)

    def listing(self, known_hosts: Optional[set[str]] = None) -> list[dict[str, Any]]:
        """Rules with their suppressed-flow counts; ``known`` says whether the host was seen."""
        out = []
        for r in self.rules:
            d = asdict(r)
            d["suppressed_flows"] = self.suppressed.get(r.id, 0)
            if known_hosts is not None:
                d["known_host"] = r.host in known_hosts
            out.append(d)
        return out


def _peer_text(peer: Any, port: Any) -> Optional[str]:
    if peer is None and port is None:
        return None
    if peer is None:
        raise ValueError("a rule with a port needs a peer address")
    peer = str(peer)
    if port is None:
        return peer
    return f"[{peer}]:{int(port)}" if ":" in peer else f"{peer}:{int(port)}"
