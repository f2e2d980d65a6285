"""JSON-lines sink: one incident or stats record per line, to a file (appended) or stdout."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edgebot.edge.plugins import Flag, setting
from edgebot.edge.sinks.base import SINKS, Sink, encode_message
from edgebot.errors import SinkError
from edgebot.statefiles import writable_file_problem

if TYPE_CHECKING:
    from edgebot.edge.config import AgentConfig

logger = logging.getLogger(__name__)

__all__ = ["JsonlConfig", "JsonlSink"]


@dataclass
class JsonlConfig:
    """``[jsonl]``: JSON lines output; ``"-"`` is standard output."""

    path: str | None = setting(None, path=True)
    """Unset: standard output when no other sink is configured (no mqtt.url), else no JSON lines."""

    def problems(self, config: AgentConfig) -> list[str]:
        """A path that start-up could not open for appending."""
        if self.path in (None, "-"):
            return []
        why = writable_file_problem(Path(self.path), create_dirs=False, devices_ok=True)
        return [f"jsonl.path: {why}"] if why else []


@SINKS.register

class JsonlSink(Sink):
    """Write incidents and stats as JSON lines.

    Every line is one JSON object whose first key is ``"kind"``: ``"incident"`` (followed by
    the incident's own keys: ``type``, ``incident_id``, ``host``...) or ``"stats"``
    (followed by the stats keys). A ``kind`` key already in the record is overwritten.
    A file is opened in append mode and never truncated; it is line-buffered, so every
    complete line is visible to ``tail -f`` as soon as it is written. ``path="-"`` writes
    to standard output (the agent logs to standard error, so stdout stays pure JSON lines).

    Parameters
    ----------
    path : str or os.PathLike
        File to append to, or ``"-"`` for standard output.
    fsync : bool
        Call ``os.fsync`` after every incident (slower; survives a power cut).
    """

    type = "jsonl"
    order = 20
    Settings = JsonlConfig
    fallback = True
    flags = (Flag("--jsonl", "jsonl.path", "Write incidents as JSON lines here ('-' = stdout).", path=True),)

    @classmethod
    def wanted(cls, config: AgentConfig) -> bool:
        """``[jsonl] path`` is set (else JSON lines are the fallback when no other sink is wanted)."""
        return config.jsonl.path is not None

    def __init__(self, path: str | os.PathLike[str] = "-", *, fsync: bool = False) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.fsync = fsync
        self._stream: IO[str] | None = None
        self._lock = threading.Lock()
        self._write_error_logged = False

    @classmethod
    def from_config(cls, config: AgentConfig) -> JsonlSink:
        """Use ``[jsonl] path`` (standard output when unset)."""
        return cls(config.jsonl.path or "-")

    def start(self) -> None:
        """Open the file for appending (or bind to the current standard output)."""
        if self._stream is not None:
            return
        if self.path == "-":
            self._stream = sys.stdout
        else:
            try:
                self._stream = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise SinkError(f"cannot open the JSON lines file {self.path}: {exc.strerror}; "
                                "create its directory or change [jsonl] path") from exc
        super().start()

    def _write(self, kind: str, record: Mapping[str, Any]) -> bool:
        self._require_open()
        if self._stream is None:
            self.start()
        line = encode_message({"kind": kind, **{k: v for k, v in record.items() if k != "kind"}})
        with self._lock:
            stream = self._stream
            try:
                if stream is None:
                    raise ValueError("the stream is not open")
                stream.write(line + "\n")
                if self.path == "-":
                    stream.flush()
                elif self.fsync and kind == "incident":
                    stream.flush()
                    os.fsync(stream.fileno())
            except (OSError, ValueError) as exc:
                self._count("errors")
                self._count("dropped")
                if not self._write_error_logged:
                    self._write_error_logged = True
                    logger.error("cannot write to %s (%s); incidents are being lost", self.path, exc)
                return False
        return True

    def publish_incident(self, incident: Mapping[str, Any]) -> None:
        """Append one ``{"kind": "incident", ...}`` line."""
        if self._write("incident", incident):
            self._count("published")

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Append one ``{"kind": "stats", ...}`` line."""
        if self._write("stats", stats):
            self._count("stats_published")

    def flush(self, timeout: float = 5.0) -> bool:
        """Flush the stream buffer."""
        with self._lock:
            if self._stream is not None and not self._stream.closed:
                try:
                    self._stream.flush()
                except OSError:
                    return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush and close the file (standard output is flushed, never closed)."""
        if self._closed:
            return
        self.flush(timeout)
        with self._lock:
            if self._stream is not None and self.path != "-":
                try:
                    self._stream.close()
                except OSError as exc:
                    logger.warning("closing %s failed: %s", self.path, exc)
            self._stream = None
        super().close(timeout)

    def stats(self) -> dict[str, Any]:
        """Common counters plus the ``path``."""
        return {**super().stats(), "path": self.path}
