"""Flows from a Zeek conn.log (TSV or JSON), followed as it grows and across rotation, or from any flow file read once."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from edgebot.errors import DataFormatError, SourceError
from edgebot.edge.sources.base import FlowSource, register_source
from edgebot.flow import CicFlowRecord, FlowRecord

log = logging.getLogger(__name__)


@register_source("csv")
class FlowFileSource(FlowSource):
    """Every flow of a flow file (Zeek log, IoT-23 CSV, CICFlowMeter CSV), read once (``--csv``).

    Labels in the file are ignored by the agent; malformed rows are counted, as the readers do.
    ``profile`` (the bundle's feature profile, ``"zeek"`` or ``"cicflowmeter"``) makes a file of
    the other profile a one-line :class:`SourceError` at open time.
    """

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
        return {"flows": self.reader.rows_read, "rows_skipped": self.reader.rows_skipped,
                "skipped_reasons": dict(self.reader.skipped_reasons), "damaged": self.damaged}

    def close(self) -> None:
        pass


@register_source("zeek-log")
class ZeekLogFollower(FlowSource):
    """Follow a growing Zeek conn.log like ``tail -F``: new rows as Zeek writes them, across rotation.

    Zeek rotates ``conn.log`` by renaming it and starting a new file with fresh ``#`` headers;
    the follower finishes the old file, then reopens the path (detected by a changed inode or
    a file that shrank). Yields ``None`` every ``poll_s`` while idle so the agent's clock runs.

    Parameters
    ----------
    path
        The log file (plain text; compressed logs are read once, not followed).
    follow
        Keep waiting for new rows at the end of the file (False: stop at the end).
    poll_s
        Sleep between polls when idle.
    """

    def __init__(self, path: str | os.PathLike, *, follow: bool = True, poll_s: float = 0.5):
        self.path = Path(path)
        self.follow = follow
        self.poll_s = poll_s
        self._description = f"Zeek log {self.path.name}" + (" (following)" if follow else "")
        self._stop = threading.Event()
        self.rows_read = 0
        self.rows_skipped = 0
        self.rotations = 0
        if not self.path.exists() and not follow:
            raise SourceError(f"{self.path}: no such file")

    @property
    def description(self) -> str:
        return self._description

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict:
        return {"flows": self.rows_read, "rows_skipped": self.rows_skipped, "rotations": self.rotations}

    def close(self) -> None:
        pass

    def _open(self):
        """Open the current file and a reader that knows its format; None while it does not exist."""
        from edgebot.readers import open_flows
        from edgebot.readers.common import compression_of

        try:
            fh = open(self.path, "r", encoding="utf-8", errors="replace", newline="")
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open ({exc})") from exc
        if compression_of(self.path) is not None:
            fh.close()
            raise SourceError(f"{self.path}: compressed logs cannot be followed; use --csv to read it once")
        try:
            reader = open_flows(self.path)
        except DataFormatError:
            fh.close()
            if os.path.getsize(self.path) < 4096 and self.follow:  # Zeek is still writing the headers
                return None, None
            raise
        if reader.format not in ("zeek-tsv", "iot23-labeled", "zeek-json"):
            fh.close()
            raise SourceError(f"{self.path}: --zeek-log follows Zeek conn logs; this is {reader.format} (use --csv)")
        return fh, reader

    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        fh, reader = None, None
        line_no = 0
        partial = ""
        while not self._stop.is_set():
            if fh is None:
                fh, reader = self._open()
                line_no, partial = 0, ""
                if fh is None:
                    if not self.follow:
                        return
                    yield None
                    time.sleep(self.poll_s)
                    continue
                ino = os.fstat(fh.fileno()).st_ino
            chunk = fh.readline()
            if chunk:
                if not chunk.endswith("\n"):
                    partial += chunk  # Zeek is mid-write: wait for the rest of the line
                    if not self.follow:
                        chunk, partial = partial, ""
                    else:
                        continue
                else:
                    chunk, partial = partial + chunk, ""
                line_no += 1
                rec = self._parse(reader, chunk.rstrip("\r\n"), line_no)
                if rec is not None:
                    self.rows_read += 1
                    yield rec
                continue
            # end of the file for now
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
