"""Every setting of the edge agent (the TOML schema, loading, overrides and checks)."""

from __future__ import annotations

from edgebot.edge.config.schema import *  # noqa: F401,F403
from edgebot.edge.config.schema import __all__  # noqa: F401
