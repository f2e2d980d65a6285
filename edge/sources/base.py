"""The flow-source plug-in contract: an abstract ``FlowSource`` and a registry keyed by type."""

from __future__ import annotations

import abc
import importlib
import logging
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Type, TypeVar

from edgebot.errors import ConfigError
from edgebot.flow import FlowRecord

logger = logging.getLogger(__name__)

__all__ = ["FlowSource", "register_source", "source_class", "create_source", "available_sources"]


class FlowSource(abc.ABC):
    """Where the agent's flows come from: a pcap, a live interface, a Zeek log, a CSV.

    Iterating a source yields completed :class:`~edgebot.flow.FlowRecord` objects in the
    order they complete, and ends when the input ends (or :meth:`stop` is called on a live
    source). A live source also yields ``None`` as a tick while it is idle (once per poll
    interval), so that a consumer can act on time passing (score a partial batch, end
    quiet incidents); consumers skip ``None``. ``stats()`` reports counters at any time;
    ``close()`` releases files and sockets; ``description`` says what the source reads.
    Sources are context managers.

    To add a source: subclass, set nothing else than the methods below, decorate the class
    with ``@register_source("my-type")``, and list its module in ``_BUILTIN_MODULES`` so
    that ``create_source("my-type", ...)`` can import it on demand.
    """

    #: The registry key, set by :func:`register_source`.
    type_name: ClassVar[str] = ""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        """Yield completed flows until the input ends (live sources: ``None`` ticks too)."""

    @property
    def description(self) -> str:
        """One line for logs and summaries, e.g. ``pcap capture.pcap``."""
        return self.type_name or type(self).__name__

    @abc.abstractmethod
    def stats(self) -> Dict[str, Any]:
        """Counters so far (packets or rows read, flows emitted, what was dropped and why)."""

    def close(self) -> None:
        """Release files and sockets; safe to call twice."""

    def stop(self) -> None:
        """Ask an endless source to finish: iteration flushes and ends soon after."""

    def __enter__(self) -> "FlowSource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_REGISTRY: Dict[str, Type[FlowSource]] = {}

#: Modules that define the built-in sources, imported on first use so that e.g. the pcap
#: reader is never loaded by an agent that follows a Zeek log.
_BUILTIN_MODULES: Dict[str, str] = {
    "pcap": "edgebot.edge.sources.pcap",
    "iface": "edgebot.edge.sources.iface",
    "zeek-log": "edgebot.edge.sources.zeeklog",
    "csv": "edgebot.edge.sources.zeeklog",
}

S = TypeVar("S", bound=Type[FlowSource])


def register_source(type_name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`FlowSource` subclass available as ``type_name``."""

    def decorate(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, FlowSource)):
            raise TypeError(f"{cls!r} is not a FlowSource subclass")
        existing = _REGISTRY.get(type_name)
        if existing is not None and existing is not cls and (
                existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"flow source type {type_name!r} is already registered by {existing.__qualname__}")
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls

    return decorate


def available_sources() -> List[str]:
    """Every source type that can be created (registered or built in)."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def source_class(type_name: str) -> Type[FlowSource]:
    """The class registered for ``type_name``, importing a built-in one on demand.

    Raises
    ------
    ConfigError
        No source of that type exists.
    """
    cls = _REGISTRY.get(type_name)
    if cls is None and type_name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[type_name])
        cls = _REGISTRY.get(type_name)
    if cls is None:
        raise ConfigError(f"unknown source type {type_name!r}; choose one of {', '.join(available_sources())}")
    return cls


def create_source(type_name: str, **options: Any) -> FlowSource:
    """Build a source from its type name and options, e.g. ``create_source("pcap", path=...)``.

    Raises
    ------
    ConfigError
        Unknown type, or options the source does not take.
    """
    cls = source_class(type_name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"source {type_name!r}: {exc}") from None
