"""Operator commands over MQTT (``<prefix>/<gateway>/cmd``, JSON): allow rules, site status and reset.

The same actions as ``edgebot allow`` and ``edgebot site``; a reply goes to ``.../cmd/result``.
Access control is the broker's (an ACL on the command topic). A command with an unknown key or
a bad value gets an error reply and changes nothing.

Commands (every one may carry an ``"id"`` that the reply repeats)::

    {"command": "allow", "host": "192.168.1.20", "peer": "52.1.2.3:8883", "reason": "vendor cloud"}
    {"command": "allow", "incident": "3f2a9c0d1e4b5a69"}
    {"command": "unallow", "rule": "0d5e04f85e"}
    {"command": "rules"}
    {"command": "site-status"}
    {"command": "site-reset", "host": "192.168.1.20"}      # or without "host": the whole site
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Optional

from edgebot.errors import ConfigError

log = logging.getLogger(__name__)

#: Command -> the keys it accepts besides ``command`` and ``id``.
COMMANDS: dict[str, frozenset[str]] = {
    "allow": frozenset({"host", "peer", "reason", "incident"}),
    "unallow": frozenset({"rule"}),
    "rules": frozenset(),
    "site-status": frozenset(),
    "site-reset": frozenset({"host"}),
}
#: Largest command payload accepted (bytes).
MAX_COMMAND_BYTES = 4096


class CommandError(ConfigError):
    """A command that cannot be carried out; its message is the error reply."""


def parse_command(payload: bytes) -> dict[str, Any]:
    """Decode and check one command; raises :class:`CommandError` with what is wrong."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command is {len(payload)} bytes; at most {MAX_COMMAND_BYTES}")
    try:
        cmd = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"command is not JSON: {exc}") from None
    if not isinstance(cmd, dict):
        raise CommandError("command must be a JSON object with a \"command\" key")
    name = cmd.get("command")
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    extra = set(cmd) - COMMANDS[name] - {"command", "id"}
    if extra:
        raise CommandError(f"unknown key(s) {sorted(extra)} for {name}; it takes {sorted(COMMANDS[name]) or 'none'}")
    for key, value in cmd.items():
        if key != "id" and not isinstance(value, str):
            raise CommandError(f"{key} must be a string, got {type(value).__name__}")
    return cmd


def _lenient_id(payload: bytes) -> Any:
    """The ``id`` of a command (a string or an integer), read before its checks; None if there is none."""
    if len(payload) > MAX_COMMAND_BYTES:
        return None
    try:
        cmd = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    cmd_id = cmd.get("id") if isinstance(cmd, dict) else None
    return cmd_id if isinstance(cmd_id, (str, int)) and not isinstance(cmd_id, bool) else None


class CommandHandler:
    """Carries out commands against a running agent's judge (allow rules, site profile).

    Parameters
    ----------
    judge
        The agent's :class:`edgebot.judge.FlowJudge`.
    state_dir
        Where the allow rules and recent incidents live.
    publish
        Called with the messages a command produces (e.g. ``end`` of an incident now allowed).
    """

    def __init__(self, judge: Any, state_dir: Any, publish: Callable[[list[dict]], None]):
        self.judge = judge
        self.state_dir = state_dir
        self.publish = publish
        self.handled = 0
        self.refused = 0

    def handle(self, payload: bytes) -> dict[str, Any]:
        """One command -> its reply (``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``)."""
        cmd_id: Optional[Any] = _lenient_id(payload)  # an error reply repeats it too
        try:
            cmd = parse_command(payload)
            result = getattr(self, "_" + cmd["command"].replace("-", "_"))(cmd)
            self.handled += 1
            reply = {"ok": True, "command": cmd["command"], **result}
        except ConfigError as exc:
            self.refused += 1
            log.warning("MQTT command refused: %s", exc)
            reply = {"ok": False, "error": str(exc)}
        if cmd_id is not None:
            reply["id"] = cmd_id
        return reply

    # ------------------------------------------------------------------------------ commands
    def _allow(self, cmd: dict) -> dict:
        from edgebot.allow import make_rule
        from edgebot.site import known_incident

        host, incident = cmd.get("host"), cmd.get("incident")
        reason = cmd.get("reason", "")
        if incident:
            if host:
                raise CommandError("give host or incident, not both")
            found = known_incident(self.state_dir, incident)
            if found is None and self.judge.tracker.open_incident_by_id(incident) is None:
                raise CommandError(f"unknown incident {incident!r}")
            host = (found or self.judge.tracker.open_incident_by_id(incident))["host"]
            reason = reason or f"false alarm (incident {incident})"
        if not host:
            raise CommandError("allow needs a host or an incident")
        rule = make_rule(host, cmd.get("peer"), reason, incident)
        allow = self._allow_list()
        added = allow.add(rule)
        self.publish(self.judge.apply_allow_changes(changed=True))
        return {"rule": rule.id, "added": added, "host": rule.host, "peer": rule.peer, "port": rule.port}

    def _unallow(self, cmd: dict) -> dict:
        if not cmd.get("rule"):
            raise CommandError("unallow needs a rule id")
        if not self._allow_list().remove(cmd["rule"]):
            raise CommandError(f"no allow rule {cmd['rule']!r}")
        self.judge.apply_allow_changes(changed=True)
        return {"rule": cmd["rule"], "removed": True}

    def _rules(self, cmd: dict) -> dict:
        site = self.judge.site
        known = set(site.devices) if site is not None else None
        return {"rules": self._allow_list().listing(known)}

    def _site_status(self, cmd: dict) -> dict:
        site = self.judge.site
        if site is None:
            return {"learning": False, "devices": {}}
        status = site.status()
        return {"devices": status["devices"], "site_start": status["site_start"],
                "site_learn_until": status["site_learn_until"], "evicted": status["evicted"]}

    def _site_reset(self, cmd: dict) -> dict:
        site = self.judge.site
        if site is None:
            raise CommandError("site learning is off on this gateway (site.learn_s = 0)")
        n = site.reset(cmd.get("host"))
        return {"reset": cmd.get("host") or "site", "devices_forgotten": n}

    def _allow_list(self):
        if self.judge.allow is None:
            from edgebot.allow import AllowList

            self.judge.allow = AllowList(self.state_dir)
        return self.judge.allow
