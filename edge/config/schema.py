"""The agent's settings as dataclasses: the core sections, and the ``[source]`` keys and sink sections
derived from the plug-in registries.

The annotated example is ``examples/edgebot.toml``. Every setting has its one default and its
bounds here or, for a source or a sink, in the plug-in's own file (its ``Settings`` dataclass,
see :mod:`edgebot.edge.plugins`): ``[source]`` has one key per registered source (``pcap``,
``iface``, ``zeek_log``, ``csv``) plus their options (``follow``), and there is one section per
registered sink that has settings (``[mqtt]``, ``[jsonl]``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from edgebot.edge.plugins import YEAR_S, bounds_problems, redacted, setting
from edgebot.edge.sinks.base import SINKS
from edgebot.edge.sources.base import SOURCES
from edgebot.incidents import EvidenceRule
from edgebot.limits import MAX_ACTIVE_FLOWS, MAX_HOSTS
from edgebot.site import SiteSettings

__all__ = [
    "AgentConfig",
    "SourceConfig",
    "ScoringConfig",
    "LimitsConfig",
    "IncidentsConfig",
    "SiteConfig",
    "default_gateway_id",
    "default_state_dir",
    "section_name",
]

GATEWAY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_gateway_id() -> str:
    """The short host name, with characters that MQTT topics cannot hold replaced by ``-``."""
    name = socket.gethostname().split(".")[0] or "gateway"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name).strip("-.") or "gateway"
    return name[:64]


def default_state_dir() -> Path:
    """Where the agent keeps state: systemd's ``$STATE_DIRECTORY``, else XDG state home."""
    systemd_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd_dir:
        return Path(systemd_dir)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "edgebot"


def section_name(sink: Any) -> str:
    """The config section (and attribute) of a sink: its type with ``_`` for ``-``."""
    return sink.type.replace("-", "_")


def _copy_fields(settings: type) -> list[tuple[str, Any, Any]]:
    """``(name, type, Field)`` of a plug-in's settings dataclass, for :func:`dataclasses.make_dataclass`."""
    hints = typing.get_type_hints(settings)
    out = []
    for spec in dataclasses.fields(settings):
        kwargs: dict[str, Any] = {"metadata": spec.metadata}
        if spec.default is not dataclasses.MISSING:
            kwargs["default"] = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            kwargs["default_factory"] = spec.default_factory
        else:
            raise TypeError(f"{settings.__qualname__}.{spec.name} has no default (every setting needs one)")
        out.append((spec.name, hints[spec.name], field(**kwargs)))
    return out


# -- [source] ---------------------------------------------------------------------------------
class SourceSection:
    """``[source]``: where flows come from; exactly one source key must be set.

    The keys are derived from :data:`~edgebot.edge.sources.base.SOURCES`: one per source (its
    type with ``_`` for ``-``), then the options each source declares in its ``Settings``.
    """

    #: The source keys, in listing order (``pcap``, ``iface``, ``zeek_log``, ``csv``).
    KINDS: ClassVar[tuple[str, ...]] = ()

    @property
    def kind(self) -> str | None:
        """The one source key that is set (None if none or several are)."""
        chosen = self.chosen()
        return chosen[0] if len(chosen) == 1 else None

    @property
    def location(self) -> str | None:
        """The value of the chosen source (a path or an interface name)."""
        kind = self.kind
        return getattr(self, kind) if kind else None

    def chosen(self) -> list[str]:
        """Every source key that is set."""
        return [k for k in self.KINDS if getattr(self, k) is not None]

    def problems(self, config: AgentConfig) -> list[str]:
        """Exactly one source, and a location that each set source can use."""
        problems: list[str] = []
        chosen = self.chosen()
        if len(chosen) != 1:
            got = ", ".join(f"source.{k}" for k in chosen) if chosen else "none"
            problems.append(f"source: set exactly one of {', '.join(self.KINDS)} (got {got})")
        for cls in SOURCES.classes():
            value = getattr(self, cls.key())
            if value is not None:
                problems.extend(cls.location_problems(value))
        return problems

    if TYPE_CHECKING:
        def __init__(self, **settings: Any) -> None: ...

        def __getattr__(self, key: str) -> Any: ...


def _derive_source_config() -> type:
    fields: list[tuple[str, Any, Any]] = []
    for cls in SOURCES.classes():
        fields.append((cls.key(), Optional[str], setting(None, path=cls.location_is_path)))
    kinds = tuple(name for name, _, _ in fields)
    for cls in SOURCES.classes():
        if cls.Settings is not None:
            fields.extend(_copy_fields(cls.Settings))
    names = [name for name, _, _ in fields]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise TypeError(f"[source] keys declared twice by the sources: {clash}")
    doc = (SourceSection.__doc__ or "") + "\n    Keys:\n\n" + "\n".join(
        f"    ``{cls.key()}``: {cls.location_doc}" for cls in SOURCES.classes()) + "\n"
    return dataclasses.make_dataclass("SourceConfig", fields, bases=(SourceSection,),
                                      namespace={"KINDS": kinds, "__doc__": doc, "__module__": __name__})


if TYPE_CHECKING:
    SourceConfig = SourceSection
else:
    SourceConfig = _derive_source_config()


# -- the core sections ------------------------------------------------------------------------
@dataclass
class ScoringConfig:
    """``[scoring]``: micro-batching and the decision threshold."""

    batch_size: int = setting(256, low=1, high=65_536)
    max_batch_delay_s: float = setting(0.2, low=0, high=3600)
    threshold: Optional[float] = setting(None, low=0, high=1, low_open=True)
    """Overrides the bundle's threshold when set."""


@dataclass
class LimitsConfig:
    """``[limits]``: memory bounds; what is evicted is counted in the stats."""

    max_hosts: int = setting(MAX_HOSTS, low=1, high=10_000_000)
    max_active_flows: int = setting(MAX_ACTIVE_FLOWS, low=1, high=10_000_000)


_RULE = EvidenceRule()
_SITE = SiteSettings()


@dataclass
class IncidentsConfig:
    """``[incidents]``: the evidence rule that turns flagged flows into new/update/end incidents per host.

    The defaults of the rule are :class:`edgebot.incidents.EvidenceRule`'s, and so are its checks
    (one default per setting).
    """

    update_interval_s: float = setting(30.0, low=0, high=YEAR_S, low_open=True)
    quiet_period_s: float = setting(300.0, low=0, high=YEAR_S, low_open=True)
    max_peers: int = setting(5, low=0, high=1000)
    """Example peer addresses carried in each message."""
    window_s: float = _RULE.window_s
    confident_fraction: float = _RULE.confident_fraction
    confident_flows: int = _RULE.confident_flows
    confident_share: float = _RULE.confident_share
    confident_per_peer: bool = _RULE.confident_per_peer
    scan_destinations: int = _RULE.scan_destinations
    scan_ports: int = _RULE.scan_ports
    scan_failed_share: float = _RULE.scan_failed_share
    flood_rate: float = _RULE.flood_rate
    flood_burst: float = _RULE.flood_burst
    retry_rate: float = _RULE.retry_rate
    retry_burst: float = _RULE.retry_burst
    beacon_flows: int = _RULE.beacon_flows
    beacon_jitter: float = _RULE.beacon_jitter
    beacon_min_excess: float = _RULE.beacon_min_excess
    oneway_pps: float = _RULE.oneway_pps
    high_confidence: float = _RULE.high_confidence
    max_pending_hosts: int = _RULE.max_pending_hosts
    max_open_incidents: int = _RULE.max_open_incidents
    max_peers_tracked: int = _RULE.max_peers_tracked

    def rule(self) -> EvidenceRule:
        """The :class:`EvidenceRule` these settings describe."""
        return EvidenceRule.from_config(self)

    def problems(self, config: AgentConfig) -> list[str]:
        """The rule's own checks (:class:`EvidenceRule` raises ``ValueError`` naming the key)."""
        try:
            self.rule()
        except ValueError as exc:
            return [str(exc)]
        return []


@dataclass
class SiteConfig:
    """``[site]``: site learning (per-device baselines and thresholds) and where its profile lives.

    The defaults are :class:`edgebot.site.SiteSettings`'s, and so are its checks (one default per
    setting).
    """

    learn_s: float = _SITE.learn_s
    """Learning period of the site from its first flow; 0 disables site learning."""
    device_learn_s: float = _SITE.device_learn_s
    """Learning period of a device first seen after the site's."""
    quantile: float = _SITE.quantile
    min_support: int = _SITE.min_support
    min_learned_flows: int = _SITE.min_learned_flows
    max_threshold: float = _SITE.max_threshold
    max_devices: int = _SITE.max_devices
    max_peers: int = _SITE.max_peers
    save_interval_s: float = _SITE.save_interval_s
    persist: str = setting("auto", choices=("auto", "yes", "no"))
    """``auto`` (keep the profile in the state dir for live sources, not for file replays), ``yes`` or ``no``."""

    def settings(self) -> SiteSettings:
        """The :class:`SiteSettings` these settings describe."""
        return SiteSettings.from_config(self)

    def problems(self, config: AgentConfig) -> list[str]:
        """The site settings' own checks (:class:`SiteSettings` raises ``ValueError`` naming the key)."""
        try:
            self.settings()
        except ValueError as exc:
            return [str(exc)]
        return []


# -- the whole configuration ------------------------------------------------------------------
@dataclass
class CoreConfig:
    """The settings of ``edgebot run`` that are not a sink's section (:data:`AgentConfig` adds those)."""

    gateway_id: str = setting(factory=default_gateway_id)
    bundle: Optional[str] = setting(None, path=True)
    trust_key: Optional[str] = setting(None, path=True)
    """Public key file (``edgebot keygen``): refuse a bundle not signed by it. Unset: no check."""
    source: SourceConfig = field(default_factory=SourceConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    incidents: IncidentsConfig = field(default_factory=IncidentsConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    state_dir: Optional[str] = setting(None, path=True)
    """Where the site profile, allow rules and MQTT queue live; default ``$STATE_DIRECTORY`` or XDG state."""
    config_path: Optional[str] = field(default=None, metadata={"internal": True})
    """The file this was loaded from (not a setting)."""

    def sections(self) -> dict[str, Any]:
        """Every section (``source``, ``scoring``... and one per sink) by name."""
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)
                if dataclasses.is_dataclass(getattr(self, spec.name))}

    def sink_types(self) -> list[str]:
        """The sinks to build, in sink order: every sink the config asks for (``mqtt`` if a URL is
        set, ``jsonl`` if a path is set), else the fallback (``jsonl`` to standard output)."""
        wanted = [cls.type for cls in SINKS.classes() if cls.wanted(self)]
        return wanted or [cls.type for cls in SINKS.classes() if cls.fallback]

    def state_path(self) -> Path:
        """``state_dir`` or :func:`default_state_dir`."""
        return Path(self.state_dir) if self.state_dir else default_state_dir()

    def persist_site(self) -> bool:
        """Whether the site profile is kept in the state dir (``site.persist``; ``auto``: live sources only)."""
        if self.site.persist == "auto":
            from edgebot.edge.sources import source_for_key

            return self.source.kind is not None and source_for_key(self.source.kind).live
        return self.site.persist == "yes"

    def mqtt_client_id(self) -> str:
        """``mqtt.client_id`` or ``edgebot-<gateway_id>`` (:meth:`MqttConfig.client_id_for`)."""
        return self.mqtt.client_id_for(self.gateway_id)

    def mqtt_queue_path(self) -> Path:
        """``mqtt.queue_path`` or ``<state dir>/mqtt-queue-<gateway_id>.sqlite`` (:meth:`MqttConfig.queue_file`)."""
        return self.mqtt.queue_file(self.state_path(), self.gateway_id)

    def problems(self) -> list[str]:
        """Every semantic problem (missing source, bad numbers, files that do not exist...)."""
        from edgebot.edge.config.checks import config_problems

        return config_problems(self)

    def validate(self) -> AgentConfig:
        """Raise ``ConfigError`` naming the first problem (all are in ``.problems``); return self."""
        from edgebot.edge.config.load import config_error

        found = self.problems()
        if found:
            raise config_error(found)
        return self

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        """The settings as nested dicts (secrets such as the MQTT password shown as ``"***"`` when ``redact``)."""
        data = dataclasses.asdict(self)
        data.pop("config_path", None)
        if redact:
            for name, section in self.sections().items():
                data[name] = redacted(section)
        return data

    if TYPE_CHECKING:  # the sink sections (``config.mqtt``...) are added by AgentConfig
        def __getattr__(self, section: str) -> Any: ...


def _derive_agent_config() -> type:
    core = {spec.name for spec in dataclasses.fields(CoreConfig)}
    fields = []
    for cls in SINKS.classes():
        if cls.Settings is None:
            continue
        name = section_name(cls)
        if name in core:
            raise TypeError(f"sink type {cls.type!r} would shadow the core setting {name!r}")
        fields.append((name, cls.Settings, field(default_factory=cls.Settings)))
    return dataclasses.make_dataclass(
        "AgentConfig", fields, bases=(CoreConfig,),
        namespace={"__doc__": "The whole configuration of ``edgebot run``: the core settings and one "
                              "section per sink.", "__module__": __name__})


if TYPE_CHECKING:
    AgentConfig = CoreConfig
else:
    AgentConfig = _derive_agent_config()


def section_bounds(config: AgentConfig) -> list[str]:
    """The range and choice violations of every section (:func:`~edgebot.edge.plugins.bounds_problems`)."""
    problems = bounds_problems(config, "")
    for name, section in config.sections().items():
        problems.extend(bounds_problems(section, name + "."))
    return problems
