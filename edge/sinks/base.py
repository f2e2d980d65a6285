"""The alert-sink contract: the abstract Sink, the registry ``SINKS``, MultiSink fan-out and NullSink."""

from __future__ import annotations

import abc
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Type

from edgebot.edge.plugins import Flag, PluginRegistry
from edgebot.errors import ConfigError, SinkError
from edgebot.jsonsafe import dumps, plain

if TYPE_CHECKING:
    from edgebot.edge.config import AgentConfig

logger = logging.getLogger(__name__)

__all__ = [
    "Sink",
    "NullSink",
    "MultiSink",
    "SINKS",
    "sink_types",
    "get_sink_class",
    "create_sink",
    "sinks_from_config",
    "encode_message",
]


def encode_message(message: Mapping[str, Any]) -> str:
    """Encode one message as compact, strict JSON (one line, no NaN).

    numpy scalars and arrays are converted to Python numbers and lists; non-finite
    floats become ``null`` so that any JSON parser can read the result.

    Parameters
    ----------
    message : Mapping
        A JSON-like mapping (an incident or a stats dict).

    Returns
    -------
    str
        The JSON text, without a trailing newline.
    """
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False, default=plain)
    except ValueError:  # a NaN or an infinity somewhere: the slow path replaces them
        return dumps(message, compact=True)


class Sink(abc.ABC):
    """Where the agent sends incidents and periodic stats.

    Lifecycle: construct (stores parameters, does no I/O) -> ``start()`` -> any number of
    ``publish_incident`` / ``publish_stats`` -> ``flush`` -> ``close()``. ``publish_*``
    never raise for transient trouble (a broker outage, a full disk): they count it in
    ``stats()`` instead. Misconfiguration found at ``start()`` raises ``SinkError``; a
    fatal problem found later (e.g. the broker refuses our credentials) is raised by
    ``check()``, which the agent polls. Publishing to a closed sink raises ``SinkError``.
    Sinks are context managers (``with sink: ...`` starts and closes).

    To add a sink, write one module in ``edge/sinks/``: subclass, declare the class attributes
    below, implement the abstract methods, :meth:`wanted` and :meth:`from_config`, and decorate
    the class with ``@SINKS.register``. Its config section ``[<type>]`` (the fields of
    ``Settings``; checks beyond the bounds in ``Settings.problems(config)``) and its ``flags`` of
    ``edgebot run`` follow from the declaration. Heavy imports
    go inside the methods (see :mod:`edgebot.edge.plugins`). ``tests/edge/test_plugin_contracts.py``
    runs the contract over it.
    """

    #: The registry key; also the name of the config section (``[mqtt]``) and of ``config.mqtt``.
    type: ClassVar[str] = ""
    #: Position in listings and in the order sinks are built (and messages fan out).
    order: ClassVar[int] = 100
    #: The dataclass of the section's settings (None: the sink has no section).
    Settings: ClassVar[Optional[Type[Any]]] = None
    #: The flags of ``edgebot run``.
    flags: ClassVar[tuple[Flag, ...]] = ()
    #: Used when the config asks for no sink at all (JSON lines to standard output).
    fallback: ClassVar[bool] = False

    def __init__(self) -> None:
        self._started = False
        self._closed = False
        self._counts: dict[str, int] = {
            "published": 0,
            "stats_published": 0,
            "dropped": 0,
            "errors": 0,
        }
        self._counts_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Open files or connections. Idempotent."""
        self._started = True

    @abc.abstractmethod
    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Send one incident (a JSON-serializable dict with a ``type`` of new/update/end)."""

    @abc.abstractmethod
    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Send one stats snapshot (a JSON-serializable dict)."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until everything published so far is delivered.

        Returns
        -------
        bool
            True if nothing is left undelivered.
        """
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush (bounded by ``timeout``), announce that we go offline, release resources.

        Idempotent.
        """
        self._closed = True

    def check(self) -> None:  # noqa: B027  (optional hook: most sinks check nothing)
        """Raise ``SinkError`` if the sink hit a problem it cannot recover from alone."""

    def wait_ready(self, timeout: float) -> bool:
        """Block up to ``timeout`` s until the sink knows whether it can deliver; True if it knows.

        For MQTT: the first connection attempt's outcome (CONNACK accepted or refused, or the
        connection failed). The agent calls it at the end of a short input, then :meth:`check`,
        so that refused credentials exit 2 whatever the timing.
        """
        return True

    def stats(self) -> dict[str, Any]:
        """Counters: ``published``, ``queued``, ``dropped``, ``errors``, ``stats_published``..."""
        with self._counts_lock:
            counts = dict(self._counts)
        return {"type": self.type, "queued": 0, **counts}

    # -- helpers for subclasses ---------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def _require_open(self) -> None:
        if self._closed:
            raise SinkError(f"the {self.type or type(self).__name__} sink is closed; "
                            "create a new sink to publish again")

    @classmethod
    def wanted(cls, config: AgentConfig) -> bool:
        """Whether the config asks for this sink (e.g. ``mqtt.url`` is set)."""
        return False

    @classmethod
    def from_config(cls, config: AgentConfig) -> Sink:
        """Build this sink from the agent's configuration."""
        raise ConfigError(f"sink type {cls.type!r} cannot be built from the agent config")

    def __enter__(self) -> Sink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: Every alert sink, keyed by type; the modules of ``edgebot.edge.sinks`` register into it.
SINKS: PluginRegistry[type[Sink]] = PluginRegistry("sink", "edgebot.edge.sinks", Sink)


@SINKS.register
class NullSink(Sink):
    """Counts and discards everything; for benchmarks and dry runs."""

    type = "null"

    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Count the incident and forget it."""
        self._require_open()
        self._count("published")

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Count the stats and forget them."""
        self._require_open()
        self._count("stats_published")

    @classmethod
    def from_config(cls, config: AgentConfig) -> NullSink:
        """A NullSink ignores the configuration."""
        return cls()


class MultiSink(Sink):
    """Fan out every message to several sinks; one failing sink does not stop the others."""

    type = "multi"

    def __init__(self, sinks: list[Sink]) -> None:
        super().__init__()
        if not sinks:
            raise ConfigError("MultiSink needs at least one sink")
        self.sinks = list(sinks)

    def start(self) -> None:
        """Start every sink; if one fails, close those already started and re-raise."""
        started: list[Sink] = []
        try:
            for sink in self.sinks:
                sink.start()
                started.append(sink)
        except Exception:
            for sink in started:
                sink.close(timeout=1.0)
            raise
        super().start()

    def _each(self, method: str, *args: Any) -> None:
        self._require_open()
        for sink in self.sinks:
            try:
                getattr(sink, method)(*args)
            except SinkError:
                raise
            except Exception:  # one broken sink must not silence the others
                self._count("errors")
                logger.exception("%s sink failed in %s", sink.type, method)

    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Send the incident to every sink."""
        self._each("publish_incident", incident)

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Send the stats to every sink."""
        self._each("publish_stats", stats)

    def flush(self, timeout: float = 5.0) -> bool:
        """Flush the sinks one after another, sharing ``timeout``."""
        deadline = time.monotonic() + timeout
        ok = True
        for sink in self.sinks:
            ok = sink.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def close(self, timeout: float = 5.0) -> None:
        """Close every sink (each gets the remaining share of ``timeout``)."""
        if self._closed:
            return
        deadline = time.monotonic() + timeout
        for sink in self.sinks:
            try:
                sink.close(max(0.5, deadline - time.monotonic()))
            except Exception:
                logger.exception("closing the %s sink failed", sink.type)
        super().close(timeout)

    def check(self) -> None:
        """Raise the first fatal error of any sink."""
        for sink in self.sinks:
            sink.check()

    def wait_ready(self, timeout: float) -> bool:
        """Wait for every sink, sharing ``timeout``."""
        deadline = time.monotonic() + timeout
        return all([sink.wait_ready(max(0.0, deadline - time.monotonic())) for sink in self.sinks])

    def stats(self) -> dict[str, Any]:
        """Each sink's stats under ``sinks``, plus totals.

        ``published`` and ``stats_published`` are the minimum over the sinks (delivered
        everywhere); ``queued``, ``dropped`` and ``errors`` are sums.
        """
        per_sink = [sink.stats() for sink in self.sinks]
        total: dict[str, Any] = {"type": self.type}
        for key in ("published", "stats_published"):
            total[key] = min(int(s.get(key, 0)) for s in per_sink)
        for key in ("queued", "dropped", "errors"):
            total[key] = sum(int(s.get(key, 0)) for s in per_sink)
        total["errors"] += self._counts["errors"]
        total["sinks"] = per_sink
        return total


# -- registry ---------------------------------------------------------------------------
def sink_types() -> list[str]:
    """All registered sink type names, sorted."""
    return SINKS.names()


def get_sink_class(type_name: str) -> type[Sink]:
    """The class of a sink type (``ConfigError`` naming the closest type when unknown)."""
    return SINKS.get(type_name)


def create_sink(type_name: str, **params: Any) -> Sink:
    """Construct a sink by type name, e.g. ``create_sink("jsonl", path="-")``."""
    return SINKS.create(type_name, **params)


def sinks_from_config(config: AgentConfig) -> Sink:
    """Build the sinks the configuration asks for (see ``AgentConfig.sink_types``).

    Returns the sink itself when there is one, else a MultiSink over all of them.
    """
    sinks = [get_sink_class(name).from_config(config) for name in config.sink_types()]
    return sinks[0] if len(sinks) == 1 else MultiSink(sinks)
