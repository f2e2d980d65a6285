"""Alert sinks for the agent: JSON lines, MQTT with an on-disk queue (one module per sink type)."""

from __future__ import annotations

from edgebot.edge.sinks.base import (
    MultiSink,
    NullSink,
    Sink,
    create_sink,
    get_sink_class,
    register_sink,
    sink_types,
    sinks_from_config,
)

#: The name the agent uses: ``build_sinks(config) -> Sink`` (a MultiSink when several).
build_sinks = sinks_from_config

__all__ = [
    "Sink",
    "NullSink",
    "MultiSink",
    "build_sinks",
    "create_sink",
    "get_sink_class",
    "register_sink",
    "sink_types",
    "sinks_from_config",
]
