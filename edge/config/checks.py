"""The semantic checks of the agent's config (what ``--check-config`` and start-up refuse), each naming its key path.

The checks are gathered from the schema: every section's bounds (:func:`~edgebot.edge.plugins.setting`)
and every section's own ``problems(config)`` (the ``[source]`` keys ask each source, ``[mqtt]``
and ``[jsonl]`` are the sinks' own sections), then the bundle as start-up reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgebot.edge.config.schema import GATEWAY_ID
from edgebot.edge.plugins import bounds_problems

if TYPE_CHECKING:
    from edgebot.edge.config.schema import AgentConfig

__all__ = ["config_problems", "bundle_problems"]


def config_problems(config: AgentConfig) -> list[str]:
    """Every problem of a loaded config but the bundle's contents (:meth:`AgentConfig.problems`)."""
    problems: list[str] = []
    if not GATEWAY_ID.match(config.gateway_id or ""):
        problems.append(f"gateway_id: {config.gateway_id!r} must be 1-64 letters, digits, '_', '.' "
                        "or '-' (it is part of MQTT topics)")
    if config.bundle is None:
        problems.append("bundle: not set and this edgebot ships no default bundle; add "
                        "bundle = \"path/to/bundle\" to the config file or pass --bundle")
    elif not Path(config.bundle).is_dir():
        problems.append(f"bundle: no such directory: {config.bundle} "
                        "(copy the output of 'edgebot convert' there)")
    problems.extend(bounds_problems(config, ""))
    for name, section in config.sections().items():
        problems.extend(bounds_problems(section, name + "."))
        own = getattr(section, "problems", None)
        if callable(own):
            problems.extend(own(config))
    return problems


def bundle_problems(config: AgentConfig) -> list[str]:
    """What start-up checks of the bundle before it loads the models: manifest, files, featurizer, signature."""
    if config.trust_key is not None and not Path(config.trust_key).is_file():
        return [f"trust_key: no such file: {config.trust_key}"]
    if config.bundle is None or not Path(config.bundle).is_dir():
        return []
    from edgebot.bundle import check_featurizer, load_manifest, verify_files
    from edgebot.errors import EdgebotError

    try:
        manifest = load_manifest(config.bundle, trust=config.trust_key)
        verify_files(config.bundle, manifest)
        check_featurizer(manifest)
    except EdgebotError as exc:
        return [f"bundle: {exc}"]
    return []
