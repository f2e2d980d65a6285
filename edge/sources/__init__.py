"""Traffic sources for the agent: pcap replay, live interface, Zeek log follower, CSV (one module each)."""

from __future__ import annotations

from typing import Any, Optional

from edgebot.edge.sources.base import FlowSource, available_sources, create_source, register_source
from edgebot.errors import SourceError


def build_source(cfg: Any, profile: Optional[str] = None) -> FlowSource:
    """The source named by a validated :class:`edgebot.config.AgentConfig` (exactly one kind).

    ``profile`` is the bundle's feature profile: a ``cicflowmeter`` bundle can only be fed
    CICFlowMeter CSVs (``--csv``); the CSV source refuses a file of the other profile.

    Raises
    ------
    SourceError
        A cicflowmeter bundle with a pcap, interface or Zeek log source.
    """
    kind = cfg.source.kind
    if profile == "cicflowmeter" and kind != "csv":
        raise SourceError(
            f"the bundle was trained on the cicflowmeter profile, but --{kind.replace('_', '-')} gives zeek profile "
            "flows: use --csv with CICFlowMeter CSVs, or a zeek bundle"
        )
    meter = {"max_flows": cfg.limits.max_active_flows}
    if kind == "pcap":
        return create_source("pcap", path=cfg.source.pcap, meter_options=meter, ticks=True)
    if kind == "iface":
        return create_source("iface", iface=cfg.source.iface, meter_options=meter)
    if kind == "zeek_log":
        return create_source("zeek-log", path=cfg.source.zeek_log, follow=cfg.source.follow)
    return create_source("csv", path=cfg.source.csv, profile=profile)


__all__ = ["FlowSource", "available_sources", "build_source", "create_source", "register_source"]
