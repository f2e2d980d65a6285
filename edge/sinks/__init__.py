"""Alert sinks for the agent: JSON lines, Suricata EVE, syslog, MQTT with an on-disk queue (one module per sink type)."""

from __future__ import annotations

from edgebot.edge.sinks.base import (
    SINKS,
    MultiSink,
    NullSink,
    Sink,
    create_sink,
    get_sink_class,
    sink_types,
    sinks_from_config,
)

#: The name the agent uses: ``build_sinks(config) -> Sink`` (a MultiSink when several).
build_sinks = sinks_from_config

__all__ = [
    "SINKS",
    "Sink",
    "NullSink",
    "MultiSink",
    "build_sinks",
    "create_sink",
    "get_sink_class",
    "sink_types",
    "sinks_from_config",
]
