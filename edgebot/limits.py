"""Default caps of the tables that grow with traffic, in one place (numpy-free, so the config can import it).

The agent's ``[limits]`` settings default to these, and so do the library classes that take the
same cap (``HostWindows(max_hosts=...)``), so that changing a default changes it everywhere.
"""

from __future__ import annotations

__all__ = ["MAX_HOSTS", "MAX_ACTIVE_FLOWS"]

#: Hosts whose feature windows are kept at once (least recently seen evicted, counted).
MAX_HOSTS = 2048
#: Open flows in the meter at once (oldest evicted, counted).
MAX_ACTIVE_FLOWS = 20_000
