"""Moved to :mod:`edgebot.edge.config` (the agent's settings belong to the edge wing)."""

from __future__ import annotations

from edgebot.edge.config import *  # noqa: F401,F403
from edgebot.edge.config.schema import _all_paths  # noqa: F401
