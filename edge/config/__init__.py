"""Every setting of the edge agent: the schema (with the plug-ins' sections), loading, overrides, checks.

=================  =====================================================================
module             what lives there
=================  =====================================================================
``schema``         the core sections, and ``[source]`` and the sink sections derived from
                   the plug-ins (each source or sink declares its own ``Settings``)
``load``           TOML file and command-line overrides -> :data:`AgentConfig` (structured
                   and coerced by msgspec), key-path errors with "did you mean"
``checks``         the semantic checks of ``--check-config`` and start-up
=================  =====================================================================

The annotated example is ``examples/edgebot.toml``. The sections of the sinks are declared in the
sinks' own files (``MqttConfig`` in :mod:`edgebot.edge.sinks.mqtt`, ``JsonlConfig`` in
:mod:`edgebot.edge.sinks.jsonl`), and so is the broker URL parser (:mod:`edgebot.edge.sinks.mqtt_url`).
"""

from __future__ import annotations

from edgebot.edge.config.checks import bundle_problems, config_problems
from edgebot.edge.config.load import all_paths, check_config, config_error, load_config
from edgebot.edge.config.schema import (
    AgentConfig,
    IncidentsConfig,
    LimitsConfig,
    ScoringConfig,
    SiteConfig,
    SourceConfig,
    default_gateway_id,
    default_state_dir,
)

__all__ = [
    "AgentConfig",
    "SourceConfig",
    "ScoringConfig",
    "LimitsConfig",
    "IncidentsConfig",
    "SiteConfig",
    "load_config",
    "check_config",
    "config_error",
    "config_problems",
    "bundle_problems",
    "all_paths",
    "default_gateway_id",
    "default_state_dir",
]
