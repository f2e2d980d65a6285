"""Moved: the agent's settings are :mod:`edgebot.edge.config` (the edge wing owns them).

Only ``edge/bench_worker.py`` still imports ``load_config`` from here; switch it to
``edgebot.edge.config`` and delete this module.
"""

from __future__ import annotations

from edgebot.edge.config import load_config

__all__ = ["load_config"]
