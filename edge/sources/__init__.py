"""Traffic sources for the agent: pcap replay, live interface, Zeek log follower, CSV (one module each)."""

from __future__ import annotations

from typing import Any, Optional

from edgebot.edge.sources.base import (
    SOURCES,
    FlowSource,
    available_sources,
    create_source,
    source_class,
)
from edgebot.errors import SourceError


def source_for_key(key: str) -> type[FlowSource]:
    """The source class selected by the ``[source]`` key ``key`` (``zeek_log`` -> the ``zeek-log`` source)."""
    for cls in SOURCES.classes():
        if cls.key() == key:
            return cls
    return SOURCES.get(key)  # raises the registry's "unknown source type" error


def build_source(cfg: Any, profile: Optional[str] = None) -> FlowSource:
    """The source named by a validated :class:`edgebot.edge.config.AgentConfig` (exactly one kind).

    ``profile`` is the bundle's feature profile: a ``cicflowmeter`` bundle can only be fed
    CICFlowMeter CSVs (``--csv``); the CSV source refuses a file of the other profile.

    Raises
    ------
    SourceError
        A source that does not give flows of the bundle's profile (a cicflowmeter bundle with a
        pcap, interface or Zeek log source).
    """
    cls = source_for_key(cfg.source.kind)
    if profile is not None and profile not in cls.profiles:
        usable = " or ".join(c.flags[0].name for c in SOURCES.classes() if profile in c.profiles and c.flags)
        raise SourceError(
            f"the bundle was trained on the {profile} profile, but --{cls.type} gives {cls.profiles[0]} profile "
            f"flows: use {usable} with CICFlowMeter CSVs, or a zeek bundle"
        )
    return cls.from_config(cfg, profile=profile)


__all__ = ["SOURCES", "FlowSource", "available_sources", "build_source", "create_source", "source_class",
           "source_for_key"]
