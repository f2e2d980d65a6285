"""The flow-source plug-in contract: the abstract ``FlowSource`` and the registry ``SOURCES``."""

from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Iterator, Optional, Type

from edgebot.edge.plugins import Flag, PluginRegistry, file_problem
from edgebot.flow import FlowRecord

if TYPE_CHECKING:
    from edgebot.edge.config import AgentConfig

logger = logging.getLogger(__name__)

__all__ = ["FlowSource", "SOURCES", "available_sources", "source_class", "create_source"]


class FlowSource(abc.ABC):
    """Where the agent's flows come from: a pcap, a live interface, a Zeek log, a CSV.

    Iterating a source yields completed :class:`~edgebot.flow.FlowRecord` objects in the
    order they complete, and ends when the input ends (or :meth:`stop` is called on a live
    source). A live source also yields ``None`` as a tick while it is idle (once per poll
    interval), so that a consumer can act on time passing (score a partial batch, end
    quiet incidents); consumers skip ``None``. ``stats()`` reports counters at any time;
    ``close()`` releases files and sockets; ``description`` says what the source reads.
    Sources are context managers.

    To add a source, write one module in ``edge/sources/``: subclass, declare the class
    attributes below, implement the abstract methods and :meth:`from_config`, and decorate the
    class with ``@SOURCES.register``. The ``[source]`` key ``<type with '_' for '-'>``, the
    settings of ``Settings`` (also under ``[source]``) and the ``flags`` of ``edgebot run``
    follow from the declaration. Heavy imports go inside the methods (see
    :mod:`edgebot.edge.plugins`). ``tests/edge/test_plugin_contracts.py`` runs the contract over it.
    """

    #: The registry key, e.g. ``"zeek-log"``; its ``[source]`` key is ``zeek_log``.
    type: ClassVar[str] = ""
    #: Listing position in ``--help`` and messages.
    order: ClassVar[int] = 100
    #: Options of this source that live in ``[source]`` (a dataclass of settings), or None.
    Settings: ClassVar[Optional[Type[Any]]] = None
    #: The flags of ``edgebot run``: the one that sets the location (``--pcap``) and options.
    flags: ClassVar[tuple[Flag, ...]] = ()
    #: The location is a file path (relative paths in a config file are relative to it).
    location_is_path: ClassVar[bool] = True
    #: What the location is, for ``[source]`` documentation.
    location_doc: ClassVar[str] = ""
    #: A live source (the site profile is kept across runs with ``site.persist = "auto"``).
    live: ClassVar[bool] = False
    #: The bundle feature profiles whose flows this source gives.
    profiles: ClassVar[tuple[str, ...]] = ("zeek",)

    @classmethod
    def key(cls) -> str:
        """The ``[source]`` key that selects this source: the type with ``_`` for ``-``."""
        return cls.type.replace("-", "_")

    @classmethod
    def location_problems(cls, value: str) -> list[str]:
        """Why ``[source] <key> = value`` cannot work (checked by ``--check-config``); default: a file."""
        problem = file_problem(f"source.{cls.key()}", value) if cls.location_is_path else None
        return [problem] if problem else []

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: AgentConfig, *, profile: Optional[str] = None) -> FlowSource:
        """Build the source the validated config selects (``config.source.<key>`` is set)."""

    @property
    def type_name(self) -> str:
        """The registry key (also ``type``)."""
        return self.type

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        """Yield completed flows until the input ends (live sources: ``None`` ticks too)."""

    @property
    def description(self) -> str:
        """One line for logs and summaries, e.g. ``pcap capture.pcap``."""
        return self.type or type(self).__name__

    @abc.abstractmethod
    def stats(self) -> Dict[str, Any]:
        """Counters so far (packets or rows read, flows emitted, what was dropped and why)."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release files and sockets; safe to call twice."""

    def stop(self) -> None:  # noqa: B027  (optional hook)
        """Ask an endless source to finish: iteration flushes and ends soon after."""

    def __enter__(self) -> "FlowSource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: Every flow source, keyed by type; the modules of ``edgebot.edge.sources`` register into it.
SOURCES: PluginRegistry[type[FlowSource]] = PluginRegistry("source", "edgebot.edge.sources", FlowSource)


def available_sources() -> list[str]:
    """All registered source type names, sorted."""
    return SOURCES.names()


def source_class(type_name: str) -> type[FlowSource]:
    """The class of a source type (``ConfigError`` naming the closest type when unknown)."""
    return SOURCES.get(type_name)


def create_source(type_name: str, **options: Any) -> FlowSource:
    """Build a source from its type name and options, e.g. ``create_source("pcap", path=...)``."""
    return SOURCES.create(type_name, **options)
