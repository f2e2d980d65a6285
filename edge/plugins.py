"""The plug-in kit of the agent: the Source and Sink protocols, the one registry type, settings and flags.

Sources (``edge/sources/``) and sinks (``edge/sinks/``) are plug-ins in the manner of Frigate's
detectors: one file per implementation, a small abstract base, a registry keyed by a ``type``
string. Each plug-in class declares, next to its code,

- ``type``: its registry key (``"pcap"``, ``"zeek-log"``, ``"mqtt"``...);
- ``Settings``: the dataclass of its config section, every field a :func:`setting` with its one
  default and its bounds (None: no settings);
- ``flags``: the :class:`Flag` s it adds to ``edgebot run``;
- ``order``: where it is listed (``--help``, error messages, the order sinks are built in).

The config schema (the ``[source]`` keys, the sink sections ``[mqtt]``, ``[jsonl]``...) and the
flags of ``edgebot run`` are derived from the registries (``edgebot.edge.config.schema`` and
``edgebot.cli``), so adding a source or a sink is one new file in its folder: the registry
imports every module of the folder the first time it is asked (:meth:`PluginRegistry.classes`).

A plug-in module is imported whenever the config is loaded or ``edgebot run --help`` is shown,
so it imports its heavy or optional dependencies (paho-mqtt, the flow meter) where they are
used, not at the top, and must not import ``edgebot.edge.config`` (which is derived from it).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import pkgutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Generic,
    Optional,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from edgebot.errors import ConfigError
from edgebot.flow import FlowRecord

logger = logging.getLogger(__name__)

__all__ = [
    "Source",
    "Sink",
    "Flag",
    "PluginRegistry",
    "setting",
    "bounds_problems",
    "file_problem",
    "redacted",
    "YEAR_S",
]

#: The longest interval a setting in seconds may take (a year and a day).
YEAR_S = 366 * 86400.0


# -- the agent's collaborators -------------------------------------------------------------
@runtime_checkable
class Source(Protocol):
    """What the agent needs of a flow source (:class:`edgebot.edge.sources.base.FlowSource` implements it).

    Iterating yields completed flows, and ``None`` as a tick while a live source is idle. An
    endless source also has ``stop()`` (thread-safe: iteration ends soon after); the agent
    calls it when present.
    """

    @property
    def description(self) -> str:
        """One line for logs and summaries, e.g. ``pcap capture.pcap``."""

    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        """Completed flows until the input ends (live sources: ``None`` ticks too)."""

    def stats(self) -> dict[str, Any]:
        """Counters so far (a JSON-serializable dict with a ``type`` key)."""

    def close(self) -> None:
        """Release files and sockets; safe to call twice."""


@runtime_checkable
class Sink(Protocol):
    """What the agent needs of an alert sink (:class:`edgebot.edge.sinks.base.Sink` implements it)."""

    def start(self) -> None:
        """Open files or connections without blocking; idempotent."""

    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Send one incident (new/update/end); transient trouble is counted, not raised."""

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Send one stats snapshot."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s for delivery; True if nothing is left undelivered."""

    def close(self, timeout: float = 5.0) -> None:
        """Flush (bounded), announce going offline, release resources; idempotent."""

    def check(self) -> None:
        """Raise ``SinkError`` on a problem the sink cannot recover from alone."""

    def wait_ready(self, timeout: float) -> bool:
        """Block up to ``timeout`` s until the sink knows whether it can deliver."""

    def stats(self) -> dict[str, Any]:
        """Counters: ``type``, ``published``, ``queued``, ``dropped``, ``errors``, ``stats_published``..."""


# -- settings --------------------------------------------------------------------------------
def setting(default: Any = None, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, choices: tuple[str, ...] | None = None, path: bool = False,
            secret: bool = False, redact: Callable[[str], str] | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """One setting of a config section: its only default, and the bounds the checks enforce.

    Parameters
    ----------
    default
        The default value (the one place it is written).
    low, high
        The value must lie in ``[low, high]`` (``(low, high]`` with ``low_open``); None values of
        an optional setting are not checked. The message reads
        ``scoring.batch_size: must be in [1, 65536], got 0``.
    choices
        The value must be one of these strings.
    path
        A file path: relative paths in a config file are taken relative to that file.
    secret
        May hold a password: error messages show only the kind of a wrong value, ``repr`` and
        ``as_dict`` show ``***`` (or ``redact(value)``, e.g. a URL without its password).
    redact
        How a secret value is shown.
    factory
        A default computed at construction (e.g. the host name) instead of ``default``.
    """
    metadata: dict[str, Any] = {}
    if low is not None or high is not None:
        metadata["range"] = (low, high, low_open)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if path:
        metadata["path"] = True
    if secret:
        metadata["secret"] = True
    if redact is not None:
        metadata["redact"] = redact
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def bounds_problems(section: Any, prefix: str) -> list[str]:
    """The range and choice violations of one section, each naming its key path (``prefix`` + name)."""
    problems: list[str] = []
    for spec in dataclasses.fields(section):
        value = getattr(section, spec.name)
        if value is None or isinstance(value, bool):
            continue
        name = prefix + spec.name
        bounds = spec.metadata.get("range")
        if bounds is not None and isinstance(value, (int, float)):
            low, high, low_open = bounds
            low_v = float("-inf") if low is None else low
            high_v = float("inf") if high is None else high
            if (value <= low_v if low_open else value < low_v) or value > high_v:
                bracket = "(" if low_open else "["
                problems.append(f"{name}: must be in {bracket}{low_v:g}, {high_v:g}], got {value:g}")
        choices = spec.metadata.get("choices")
        if choices is not None and value not in choices:
            listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
            problems.append(f"{name}: must be {listed}, got {value!r}")
    return problems


def redacted(section: Any) -> dict[str, Any]:
    """The settings of one section by name, each secret replaced by ``***`` or its ``redact`` form."""
    shown: dict[str, Any] = {}
    for spec in dataclasses.fields(section):
        value = getattr(section, spec.name)
        if spec.metadata.get("secret") and value is not None:
            redact = spec.metadata.get("redact")
            value = (redact(value) if value else value) if redact is not None else "***"
        shown[spec.name] = value
    return shown


def file_problem(name: str, value: str | None, what: str = "file") -> str | None:
    """``source.pcap: no such file: x.pcap`` when a path setting names no regular file."""
    if value is not None and not Path(value).is_file():
        return f"{name}: no such {what}: {value}"
    return None


# -- flags -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    """A flag a plug-in adds to ``edgebot run``; the CLI turns it into a click option.

    Parameters
    ----------
    name
        ``"--pcap"``, or ``"--follow/--no-follow"`` for a switch.
    key
        The dotted config key the flag overrides (``"source.pcap"``, ``"mqtt.url"``); an unset flag
        leaves the config file's value.
    help
        One line for ``--help``.
    path
        The value is a file path (shown as ``PATH``).
    """

    name: str
    key: str
    help: str
    path: bool = False

    @property
    def switch(self) -> bool:
        """A ``--x/--no-x`` boolean flag."""
        return "/" in self.name

    @property
    def dest(self) -> str:
        """The Python name of the option: ``--zeek-log`` -> ``zeek_log``."""
        return self.name.split("/")[0].lstrip("-").replace("-", "_")


# -- the registry ----------------------------------------------------------------------------
P = TypeVar("P", bound=type)


class PluginRegistry(Generic[P]):
    """Plug-ins of one kind (``"source"`` or ``"sink"``) keyed by their ``type``, discovered in a package.

    Register a class with the decorator ``@SOURCES.register`` (or ``@SINKS.register``) in a module
    of the registry's package; :meth:`classes` imports every module of that package once, so a new
    file is found without being listed anywhere.

    Parameters
    ----------
    kind
        ``"source"`` or ``"sink"``: used in messages (``unknown sink type 'mqt'``).
    package
        The package whose modules hold the plug-ins, e.g. ``"edgebot.edge.sinks"``.
    base
        The class every plug-in subclasses.
    """

    def __init__(self, kind: str, package: str, base: type) -> None:
        self.kind = kind
        self.package = package
        self.base = base
        self._classes: dict[str, Any] = {}
        self._discovered = False

    def register(self, cls: P) -> P:
        """Class decorator: make ``cls`` available under its ``type``; checks the declarations."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} is not a {self.base.__name__} subclass")
        type_name = cls.__dict__.get("type")
        if not isinstance(type_name, str) or not type_name or not type_name.replace("-", "_").isidentifier():
            raise TypeError(f"{cls.__qualname__} must declare its own `type = \"name\"` (letters, digits, '-', '_')")
        settings = getattr(cls, "Settings", None)
        if settings is not None and not dataclasses.is_dataclass(settings):
            raise TypeError(f"{cls.__qualname__}.Settings must be a dataclass (or None)")
        existing = self._classes.get(type_name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"{self.kind} type {type_name!r} is already registered by {existing.__qualname__}")
        self._classes[type_name] = cls
        return cls

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__, self.package + "."):
            module = importlib.import_module(info.name)
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                # imported half-way (an import cycle through the config): its plug-ins would be missing
                raise ImportError(f"{info.name} is still being imported while the {self.kind} registry is "
                                  "built; a plug-in module must not import edgebot.edge.config at the top")

    def classes(self) -> list[Any]:
        """Every registered class, in declaration ``order`` (then type name)."""
        self._discover()
        return sorted(self._classes.values(), key=lambda c: (getattr(c, "order", 100), c.type))

    def names(self) -> list[str]:
        """Every registered type name, sorted alphabetically."""
        self._discover()
        return sorted(self._classes)

    def get(self, type_name: str) -> Any:
        """The class registered as ``type_name``.

        Raises
        ------
        ConfigError
            No such type (the message suggests the closest one and lists them all).
        """
        self._discover()
        cls = self._classes.get(type_name)
        if cls is None:
            close = difflib.get_close_matches(type_name, list(self._classes), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {self.kind} type {type_name!r}{hint}; known: {', '.join(self.names())}")
        return cls

    def create(self, type_name: str, **params: Any) -> Any:
        """Construct a plug-in from its type name and constructor parameters.

        Raises
        ------
        ConfigError
            Unknown type, or parameters the class does not take.
        """
        cls = self.get(type_name)
        try:
            return cls(**params)
        except TypeError as exc:
            raise ConfigError(f"{self.kind} {type_name!r}: {exc}") from None

    def flags(self) -> list[Flag]:
        """The flags of every plug-in, in plug-in order."""
        return [flag for cls in self.classes() for flag in getattr(cls, "flags", ())]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.classes())

    def __contains__(self, type_name: object) -> bool:
        self._discover()
        return type_name in self._classes
