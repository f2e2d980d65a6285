"""Operator commands over MQTT: ``<prefix>/<gateway>/cmd`` in, ``<prefix>/<gateway>/cmd/result`` out.

The MQTT sink subscribes to the command topic on every connect (``[mqtt] commands``, on by default;
who may publish there is the broker's ACL) and hands each message to a :class:`CommandInbox`. The
inbox only queues it (bounded): the commands are carried out by
:class:`edgebot.edge.commands.CommandHandler` on the agent's own thread, in its once-a-second
housekeeping (:meth:`CommandInbox.run_pending`), so they never race the scoring. The reply (QoS 1,
not retained) repeats the command's ``id``; a command with an unknown key or a bad value gets
``{"ok": false, "error": ...}`` and changes nothing. Commands published while the agent is offline
are not kept (the sink's session is clean).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional

from edgebot.edge.sinks.base import MultiSink, encode_message

logger = logging.getLogger(__name__)

__all__ = ["CommandInbox", "attach_commands", "MAX_PENDING_COMMANDS"]

#: Commands waiting for the agent's thread, at most; more get an error reply at once.
MAX_PENDING_COMMANDS = 32


class CommandInbox:
    """The command topic of one MQTT sink: queued on the network thread, carried out on the agent's.

    Parameters
    ----------
    topic_base
        ``<topic_prefix>/<gateway_id>``.
    handler
        Has ``handle(payload: bytes) -> dict`` (:class:`edgebot.edge.commands.CommandHandler`).
    """

    def __init__(self, topic_base: str, handler: Any) -> None:
        self.topic = f"{topic_base}/cmd"
        self.reply_topic = f"{topic_base}/cmd/result"
        self.handler = handler
        self.client: Any = None
        self._pending: deque[bytes] = deque()
        self._lock = threading.Lock()
        self.received = 0
        self.refused_busy = 0

    # -- network thread ----------------------------------------------------------------------
    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        """paho callback: queue the payload (or refuse at once when too many wait)."""
        self.client = client
        payload = bytes(message.payload)
        with self._lock:
            self.received += 1
            if len(self._pending) < MAX_PENDING_COMMANDS:
                self._pending.append(payload)
                return
            self.refused_busy += 1
        self._reply({"ok": False, "error": f"too many commands pending (at most {MAX_PENDING_COMMANDS}); "
                                          "send it again later"})

    # -- agent thread --------------------------------------------------------------------------
    def run_pending(self) -> int:
        """Carry out every queued command and publish its reply; returns how many were handled."""
        done = 0
        while True:
            with self._lock:
                if not self._pending:
                    return done
                payload = self._pending.popleft()
            try:
                reply = self.handler.handle(payload)
            except Exception as exc:  # a bug in one command must not stop the agent
                logger.exception("MQTT command failed")
                reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
            self._reply(reply)
            done += 1

    def _reply(self, reply: dict[str, Any]) -> None:
        client = self.client
        if client is None:
            return
        try:
            client.publish(self.reply_topic, encode_message(reply), qos=1)
        except Exception as exc:  # noqa: BLE001 - a reply that cannot go out is logged, never fatal
            logger.warning("cannot publish the command reply on %s: %s", self.reply_topic, exc)

    def stats(self) -> dict[str, int]:
        """``received``, ``handled``, ``refused`` (bad commands) and ``refused_busy``."""
        return {"received": self.received, "handled": int(getattr(self.handler, "handled", 0)),
                "refused": int(getattr(self.handler, "refused", 0)), "refused_busy": self.refused_busy}


class _Inboxes:
    """Every command inbox of the agent's sinks (one per MQTT sink with commands on)."""

    def __init__(self, inboxes: list[CommandInbox]) -> None:
        self.inboxes = inboxes

    def run_pending(self) -> int:
        return sum(inbox.run_pending() for inbox in self.inboxes)


def _mqtt_sinks(sink: Any) -> list[Any]:
    parts = sink.sinks if isinstance(sink, MultiSink) else [sink]
    return [s for s in parts if getattr(s, "type", None) == "mqtt" and getattr(s, "commands", False)
            and hasattr(s, "enable_commands")]


def attach_commands(sink: Any, judge: Any, state_dir: Path | str,
                    publish: Callable[[list[dict]], None]) -> Optional[_Inboxes]:
    """Give every MQTT sink (with ``commands`` on) an inbox whose commands act on ``judge``.

    Returns an object whose ``run_pending()`` the agent calls in its housekeeping, or None when no
    sink takes commands.
    """
    if sink is None or judge is None:
        return None
    targets = _mqtt_sinks(sink)
    if not targets:
        return None
    from edgebot.edge.commands import CommandHandler

    inboxes = []
    for target in targets:
        inbox = CommandInbox(target.topic_base, CommandHandler(judge, Path(state_dir), publish))
        target.enable_commands(inbox)
        inboxes.append(inbox)
    return _Inboxes(inboxes)
