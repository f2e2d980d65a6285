"""Flows from a Zeek conn.log (TSV or JSON), followed as it grows and across rotation, or from any flow file read once."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from edgebot.edge.plugins import Flag, setting
from edgebot.edge.sources.base import SOURCES, FlowSource
from edgebot.errors import ConfigError, DataFormatError, EdgebotError, SourceError
from edgebot.flow import CicFlowRecord, FlowRecord

if TYPE_CHECKING:  # imported where used: the config and `edgebot run --help` load this module
    from edgebot.edge.config import AgentConfig

log = logging.getLogger(__name__)


@SOURCES.register
class FlowFileSource(FlowSource):
    """Every flow of a flow file (Zeek log, IoT-23 CSV, CICFlowMeter CSV), read once (``--csv``).

    Labels in the file are ignored by the agent; malformed rows are counted, as the readers do.
    ``profile`` (the bundle's feature profile, ``"zeek"`` or ``"cicflowmeter"``) makes a file of
    the other profile a one-line :class:`SourceError` at open time.
    """

    type = "csv"
    order = 40
    location_doc = "A CSV of flows (CICFlowMeter or Zeek columns)."
    profiles = ("zeek", "cicflowmeter")
    flags = (Flag("--csv", "source.csv", "Score flows already metered (Zeek-like or CICFlowMeter CSV).",
                  path=True),)

    @classmethod
    def from_config(cls, config: AgentConfig, *, profile: Optional[str] = None) -> FlowFileSource:
        """Read ``[source] csv`` once, refusing a file of another profile than the bundle's."""
        return cls(config.source.csv, profile=profile)

    def __init__(self, path: str | os.PathLike, *, accept_cic: bool = False, profile: Optional[str] = None):
        from edgebot.features import profile_for_format
        from edgebot.readers import open_flows

        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file")
        self.reader = open_flows(self.path)
        if profile is not None:
            file_profile = profile_for_format(self.reader.format).name
            if file_profile != profile:
                raise SourceError(
                    f"{self.path} is a {self.reader.format} file ({file_profile} profile) but the bundle was trained on "
                    f"the {profile} profile: feed it {profile} flows or use a {file_profile} bundle"
                )
            accept_cic = profile == "cicflowmeter"
        self.accept_cic = accept_cic
        self._description = f"{self.reader.format} file {self.path.name}"
        self._stop = threading.Event()
        self.damaged = 0

    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        """Yield every flow of the file.

        A file whose compressed data breaks part-way ends with the reader's one-line
        :class:`DataFormatError`, raised after the flows before the damage were yielded and
        one ``None`` tick, so that the agent scores them before the error ends its loop.
        """
        rows = iter(self.reader)
        while True:
            try:
                rec = next(rows)
            except StopIteration:
                return
            except DataFormatError:
                self.damaged = 1
                yield None
                raise
            if isinstance(rec, CicFlowRecord) and not self.accept_cic:
                raise SourceError(
                    f"{self.path}: CICFlowMeter flows need a bundle trained on the cicflowmeter profile; "
                    "this bundle expects Zeek-like flows"
                )
            yield rec
            if self._stop.is_set():
                return

    @property
    def description(self) -> str:
        return self._description

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict:
        return {"type": self.type, "flows": self.reader.rows_read, "rows_skipped": self.reader.rows_skipped,
                "skipped_reasons": dict(self.reader.skipped_reasons), "damaged": self.damaged}

    def close(self) -> None:
        pass


@dataclass
class ZeekLogSettings:
    """The options of the ``zeek_log`` source (keys of ``[source]``)."""

    follow: bool = setting(True)
    """With zeek_log: keep following the log after its current end (false: read it once)."""


@SOURCES.register
class ZeekLogFollower(FlowSource):
    """Follow a growing Zeek conn.log like ``tail -F``: new rows as Zeek writes them, across rotation.

    Zeek rotates ``conn.log`` by renaming it and starting a new file with fresh ``#`` headers;
    the follower finishes the old file, then reopens the path (detected by a changed inode or
    a file that shrank). Yields ``None`` every ``poll_s`` while idle so the agent's clock runs.

    Bounds: a line longer than ``max_line_chars`` (default
    :data:`edgebot.readers.common.MAX_LINE_CHARS`, 1 MiB, as for ``--csv``) is skipped
    without being held whole, counted in ``stats()["lines_too_long"]`` (and
    ``rows_skipped``) and logged with its file and line number; the partial line kept while
    Zeek is mid-write never grows past the same cap (``line_buffer_peak`` in ``stats()``).

    A file that is there but not a Zeek conn log is a one-line :class:`SourceError`, decided
    from what the file holds: a complete first line (or header) of another kind, or a first
    line that cannot start a Zeek log. An empty file, or one whose ``#`` header is still being
    written, is waited for, with one warning saying so.

    Parameters
    ----------
    path
        The log file (plain text; compressed logs are read once, not followed).
    follow
        Keep waiting for new rows at the end of the file (False: stop at the end).
    poll_s
        Sleep between polls when idle.
    max_line_chars
        Longest line read, in characters (None:
        :data:`edgebot.readers.common.MAX_LINE_CHARS`).
    """

    type = "zeek-log"
    order = 30
    location_doc = "A Zeek ``conn.log`` followed as it grows and is rotated."
    live = True
    Settings = ZeekLogSettings
    flags = (Flag("--zeek-log", "source.zeek_log", "Follow a growing Zeek conn.log (TSV or JSON).", path=True),
             Flag("--follow/--no-follow", "source.follow", "Keep following --zeek-log after its end."))

    @classmethod
    def location_problems(cls, value: str) -> list[str]:
        """The log need not exist yet (Zeek creates it), but its directory must."""
        if not Path(value).parent.is_dir():
            return [f"source.zeek_log: no such directory: {Path(value).parent}"]
        return []

    @classmethod
    def from_config(cls, config: AgentConfig, *, profile: Optional[str] = None) -> ZeekLogFollower:
        """Follow ``[source] zeek_log`` (or read it once with ``follow = false``)."""
        return cls(config.source.zeek_log, follow=config.source.follow)

    def __init__(self, path: str | os.PathLike, *, follow: bool = ZeekLogSettings.follow, poll_s: float = 0.5,
                 max_line_chars: Optional[int] = None):
        if max_line_chars is None:
            from edgebot.readers.common import MAX_LINE_CHARS

            max_line_chars = MAX_LINE_CHARS
        if not isinstance(max_line_chars, int) or max_line_chars < 1024:
            raise ConfigError(f"max_line_chars must be an integer >= 1024, got {max_line_chars!r}")
        self.path = Path(path)
        self.follow = follow
        self.poll_s = poll_s
        self.max_line_chars = max_line_chars
        self._description = f"Zeek log {self.path.name}" + (" (following)" if follow else "")
        self._stop = threading.Event()
        self.rows_read = 0
        self.rows_skipped = 0
        self.rotations = 0
        self.lines_too_long = 0
        self.line_buffer_peak = 0
        self._warned: set = set()  # reasons to wait that were logged already (each once)
        if not self.path.exists() and not follow:
            raise SourceError(f"{self.path}: no such file")

    @property
    def description(self) -> str:
        return self._description

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict:
        return {"type": self.type, "flows": self.rows_read, "rows_skipped": self.rows_skipped, "rotations": self.rotations,
                "lines_too_long": self.lines_too_long, "line_buffer_peak": self.line_buffer_peak,
                "max_line_chars": self.max_line_chars}

    def close(self) -> None:
        pass

    def _wait(self, why: str) -> None:
        """Say once per reason that the follower waits for the file (a clear note, not silence)."""
        if why not in self._warned:
            self._warned.add(why)
            log.warning("%s: %s; waiting for it (polling every %.1f s)", self.path, why, self.poll_s)

    def _open(self):
        """Open the current file and a reader that knows its format; None while it does not exist."""
        from edgebot.readers import open_flows
        from edgebot.readers.common import compression_of

        try:
            fh = open(self.path, "r", encoding="utf-8", errors="replace", newline="")
        except FileNotFoundError:
            self._wait("does not exist yet")
            return None, None
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open ({exc})") from exc
        if compression_of(self.path) is not None:
            fh.close()
            raise SourceError(f"{self.path}: compressed logs cannot be followed; use --csv to read it once")
        try:
            reader = open_flows(self.path)
        except DataFormatError as exc:
            fh.close()
            why = self._still_being_written() if self.follow else None
            if why is None:
                raise SourceError(str(exc)) from None
            self._wait(why)
            return None, None
        if reader.format not in ("zeek-tsv", "iot23-labeled", "zeek-json"):
            fh.close()
            raise SourceError(f"{self.path}: --zeek-log follows Zeek conn logs; this is {reader.format} (use --csv)")
        return fh, reader

    def _still_being_written(self) -> Optional[str]:
        """Why a file that is not (yet) a readable log may still become one, or None if it cannot.

        Only its complete lines decide: an empty file, a first line not ended yet that may
        start a header (``#``) or a JSON record (``{``), or complete ``#`` lines of a conn log
        without their ``#fields`` line yet are waited for; anything else is final.
        """
        from edgebot.readers.detect import HEAD_BYTES, read_head
        from edgebot.readers.zeek import ZeekHeader

        try:
            head = read_head(self.path, HEAD_BYTES).decode("utf-8", errors="replace")
        except EdgebotError:
            return None
        if not head.strip():
            return "is empty (Zeek writes the header first)"
        text = head.lstrip("\ufeff")
        complete = text.split("\n")[:-1]  # what follows the last newline may still grow
        if not complete:
            if text.lstrip()[:1] in ("#", "{") and "\x00" not in text:
                return "has no complete first line yet"
            return None
        header = ZeekHeader()
        for line in complete:
            line = line.rstrip("\r")
            if not line:
                continue
            if not line.startswith("#"):
                return None
            try:
                header.feed(line)
            except ValueError:
                return None
        if header.log_path and not header.log_path.startswith("conn"):
            return None
        if header.layout is None:
            return "has a Zeek header without its #fields line yet"
        return None

    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        fh, reader = None, None
        line_no = 0
        partial = ""  # the start of a line Zeek has not finished writing (at most max_line_chars)
        overlong = False  # the current line passed max_line_chars: drop it up to its newline
        cap = self.max_line_chars
        while not self._stop.is_set():
            if fh is None:
                fh, reader = self._open()
                line_no, partial, overlong = 0, "", False
                if fh is None:
                    if not self.follow:
                        return
                    yield None
                    time.sleep(self.poll_s)
                    continue
                ino = os.fstat(fh.fileno()).st_ino
            chunk = fh.readline(cap if overlong else cap + 1 - len(partial))
            if chunk:
                held = len(partial) + len(chunk)
                if held > self.line_buffer_peak:
                    self.line_buffer_peak = held
                ended = chunk.endswith("\n")
                if overlong:
                    if ended:
                        overlong = False
                        line_no += 1
                        self._too_long(line_no)
                    continue
                if not ended:
                    partial += chunk
                    if len(partial) > cap:  # no newline within the cap: drop what is held
                        overlong, partial = True, ""
                        continue
                    if self.follow:
                        continue  # Zeek is mid-write: wait for the rest of the line
                    chunk, partial = partial, ""  # the last line of the file, without a newline
                else:
                    chunk, partial = partial + chunk, ""
                line_no += 1
                rec = self._parse(reader, chunk.rstrip("\r\n"), line_no)
                if rec is not None:
                    self.rows_read += 1
                    yield rec
                continue
            # end of the file for now
            if overlong and not self.follow:
                line_no += 1
                self._too_long(line_no)
                overlong, partial = False, ""
            if self._rotated(fh, ino):
                self.rotations += 1
                log.info("%s: rotated; reopening", self.path)
                fh.close()
                fh, reader = None, None
                continue
            if not self.follow:
                break
            yield None
            time.sleep(self.poll_s)
        if fh is not None:
            fh.close()

    def _too_long(self, line_no: int) -> None:
        """Count a skipped over-long line and say where it was."""
        self.lines_too_long += 1
        self.rows_skipped += 1
        if self.lines_too_long <= 20:
            log.warning("%s:%d: skipped a line longer than %d characters", self.path, line_no, self.max_line_chars)

    def _rotated(self, fh, ino: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed away, new one not created yet: keep the old one open
        return st.st_ino != ino or st.st_size < fh.tell()

    def _parse(self, reader, text: str, line_no: int):
        from edgebot.readers.common import MalformedRow

        if not text:
            return None
        try:
            return reader.parse_line(text, line_no)
        except MalformedRow as bad:
            self.rows_skipped += 1
            if self.rows_skipped <= 20:
                log.warning("%s:%d: skipped malformed row: %s", self.path, line_no, bad.detail)
            return None
