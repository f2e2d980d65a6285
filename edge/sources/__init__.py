"""Traffic sources for the agent: pcap replay, live interface, Zeek log follower, CSV (one module each)."""

from __future__ import annotations

from typing import Any

from edgebot.edge.sources.base import FlowSource, available_sources, create_source, register_source


def build_source(cfg: Any) -> FlowSource:
    """The source named by a validated :class:`edgebot.config.AgentConfig` (exactly one kind)."""
    kind = cfg.source.kind
    meter = {"max_flows": cfg.limits.max_active_flows}
    if kind == "pcap":
        return create_source("pcap", path=cfg.source.pcap, meter_options=meter, ticks=True)
    if kind == "iface":
        return create_source("iface", iface=cfg.source.iface, meter_options=meter)
    if kind == "zeek_log":
        return create_source("zeek-log", path=cfg.source.zeek_log, follow=cfg.source.follow)
    return create_source("csv", path=cfg.source.csv)


__all__ = ["FlowSource", "available_sources", "build_source", "create_source", "register_source"]
