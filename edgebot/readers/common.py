"""Shared plumbing of the flow readers: transparent decompression, line iteration, skip accounting."""

from __future__ import annotations

import bz2
import datetime as _dt
import gzip
import logging
import lzma
import math
import zlib
from collections import Counter
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional

from edgebot.errors import DataFormatError, SourceError
from edgebot.flow import BACKGROUND, BENIGN, MALICIOUS, UNKNOWN
from edgebot.readers.scenarios import family_from_detailed_label, scenario_family

log = logging.getLogger(__name__)

#: The words every "this is not a flow file" error starts with.
NOT_A_FLOW_FILE = "not a Zeek conn log or CICFlowMeter CSV"

#: A line longer than this (characters) is a malformed row; it is skipped without being held whole.
MAX_LINE_CHARS = 1 << 20
#: How many (line, reason) examples a reader keeps.
MAX_SKIPPED_EXAMPLES = 20
#: How many malformed rows a reader logs one by one before it only counts them.
MAX_LOGGED_SKIPS = 5

# Magic numbers of the compressions we open transparently (checked on the first bytes, not the name).
_COMPRESSIONS: tuple[tuple[bytes, str], ...] = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
)
_BZIP2_MAGICS = (b"1AY&SY", b"\x17rE8P\x90")
_OPENERS: dict[Optional[str], Callable[..., IO[Any]]] = {
    None: open,
    "xz": lzma.open,
    "gzip": gzip.open,
    "bzip2": bz2.open,
}
#: What a broken compressed stream raises while it is read.
STREAM_ERRORS = (EOFError, lzma.LZMAError, zlib.error, OSError)

# Zeek / IoT-23 label spellings (compared lower-case) to edgebot.flow constants.
_LABEL_VALUES = {
    "benign": BENIGN,
    "malicious": MALICIOUS,
    "background": BACKGROUND,
    "unknown": UNKNOWN,
}
# Cells that mean "no value" in a label column.
_NO_LABEL = frozenset({"", "-", "(empty)"})


class MalformedRow(Exception):
    """Raised by a row parser; the reader counts it under ``reason`` and logs ``detail``.

    ``reason`` is a short category (the key of ``skipped_reasons``), ``detail`` says what exactly
    was wrong with this row.
    """

    def __init__(self, reason: str, detail: Optional[str] = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


def sniff_compression(head: bytes) -> Optional[str]:
    """Name the compression of a stream from its first (up to 10) bytes, not from a file name.

    The one magic-number table of edgebot (flow logs here, pcaps in ``edgebot.edge.pcapfile``,
    the bench's decompressed copies).

    Returns
    -------
    str or None
        ``"xz"``, ``"gzip"``, ``"bzip2"`` or None for an uncompressed stream.
    """
    for prefix, name in _COMPRESSIONS:
        if head.startswith(prefix):
            return name
    # bzip2: "BZh" + block size digit + the block magic (pi in BCD) or, for an empty stream, the
    # end-of-stream magic (sqrt(pi)); stricter than "BZh" alone.
    if len(head) >= 10 and head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in _BZIP2_MAGICS:
        return "bzip2"
    return None


def compression_of(path: Path) -> Optional[str]:
    """Name the compression of a file from its first bytes (:func:`sniff_compression`).

    Parameters
    ----------
    path : Path
        File to look at.

    Returns
    -------
    str or None
        ``"xz"``, ``"gzip"``, ``"bzip2"`` or None for an uncompressed file.

    Raises
    ------
    SourceError
        The file cannot be opened.
    """
    try:
        with open(path, "rb") as raw:
            magic = raw.read(10)
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc}); check the path") from exc
    return sniff_compression(magic)


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for reading bytes, decompressing xz, gzip or bzip2 by magic number.

    Raises
    ------
    SourceError
        The file cannot be opened.
    """
    compression = compression_of(path)
    try:
        return _OPENERS[compression](path, "rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc}); check the path") from exc


def open_text(path: Path) -> IO[str]:
    """Open a file as UTF-8 text, decompressing transparently; lines end at ``\\n`` only.

    A UTF-8 byte-order mark is dropped and undecodable bytes become U+FFFD, so no byte sequence
    makes reading fail; ``\\r`` is left in place (callers strip it, which handles CRLF files).
    """
    compression = compression_of(path)
    try:
        return _OPENERS[compression](
            path, "rt", encoding="utf-8-sig", errors="replace", newline="\n"
        )
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc}); check the path") from exc


def iter_lines(stream: IO[str], max_chars: int = MAX_LINE_CHARS) -> Iterator[tuple[int, str, bool]]:
    """Yield ``(line_no, text, too_long)`` for every line, without its line terminator.

    ``line_no`` is 1-based; ``text`` has the trailing ``\\n`` and ``\\r`` removed. A line longer
    than ``max_chars`` is never held whole: only its first ``max_chars`` characters are returned,
    with ``too_long`` True.
    """
    line_no = 0
    readline = stream.readline
    while True:
        line = readline(max_chars)
        if not line:
            return
        line_no += 1
        if line[-1] == "\n":
            yield line_no, line.rstrip("\r\n"), False
        elif len(line) < max_chars:
            yield line_no, line.rstrip("\r"), False  # last line, no terminator
        else:
            while True:  # consume the rest of the overlong line
                more = readline(max_chars)
                if not more or more[-1] == "\n":
                    break
            yield line_no, line, True


def normalize_label(value: str) -> Optional[str]:
    """Map a label cell to an edgebot.flow constant; None when the cell is unset.

    Raises
    ------
    MalformedRow
        The value is not Benign / Malicious / Background / Unknown (any case).
    """
    text = value.strip()
    if text in _NO_LABEL:
        return None
    label = _LABEL_VALUES.get(text.lower())
    if label is None:
        raise MalformedRow("unknown label", f"unknown label {text[:40]!r} (expected Benign, Malicious, Background or Unknown)")
    return label


def clean_detailed_label(value: Optional[str]) -> Optional[str]:
    """A detailed-label cell, or None when it is unset (``-``, ``(empty)``, empty)."""
    if value is None:
        return None
    text = value.strip()
    return None if text in _NO_LABEL else text


# --- value converters shared by the Zeek-like readers (TSV cells are str, JSON values any type) ---


def to_timestamp(value: Any, unset: str = "-") -> float:
    """Seconds since the epoch from a Zeek ``time`` value (number or ISO 8601 string)."""
    if type(value) is str:
        try:
            ts = float(value)
        except ValueError:
            moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.timezone.utc)
            ts = moment.timestamp()
    elif type(value) in (int, float):
        ts = float(value)
    else:
        raise ValueError("not a time")
    if not (ts >= 0.0 and math.isfinite(ts)):
        raise ValueError("time out of range")
    return ts


def to_interval(value: Any, unset: str = "-") -> float:
    """Seconds from a Zeek ``interval``; unset is 0.0."""
    if value is None or value == unset:
        return 0.0
    if type(value) is str or type(value) in (int, float):
        seconds = float(value)
    else:
        raise ValueError("not an interval")
    if not (seconds >= 0.0 and math.isfinite(seconds)):
        raise ValueError("interval out of range")
    return seconds


def to_count(value: Any, unset: str = "-") -> int:
    """A non-negative integer from a Zeek ``count``; unset is 0."""
    if value is None or value == unset:
        return 0
    kind = type(value)
    if kind is str or kind is int:
        number = int(value)
    elif kind is float and value.is_integer():
        number = int(value)
    else:
        raise ValueError("not a count")
    if number < 0:
        raise ValueError("negative count")
    return number


def to_port(value: Any, unset: str = "-") -> int:
    """A port (or ICMP type/code) 0..65535 from a Zeek ``port``; unset is 0."""
    number = to_count(value, unset)
    if number > 65535:
        raise ValueError("port out of range")
    return number


def to_address(value: Any, unset: str = "-") -> str:
    """A host address; it must be set."""
    if type(value) is not str or not value or value == unset:
        raise ValueError("address missing")
    return value


def to_proto(value: Any, unset: str = "-") -> str:
    """A lower-case transport protocol name; it must be set."""
    if type(value) is not str or not value or value == unset:
        raise ValueError("protocol missing")
    return value.lower()


def to_text(value: Any, unset: str = "-") -> str:
    """A string field; unset is the empty string."""
    if value is None or value == unset:
        return ""
    if type(value) is str:
        return value
    if type(value) is list:  # JSON sets, e.g. tunnel_parents
        return ",".join(str(item) for item in value)
    return str(value)


def to_conn_state(value: Any, unset: str = "-") -> str:
    """Zeek's conn_state; unset is ``OTH`` (the FlowRecord default)."""
    text = to_text(value, unset)
    return text or "OTH"


class FlowReader:
    """Streams the flow records of one file and counts every row it could not read.

    Iterate over it to get records (:class:`edgebot.flow.FlowRecord`, or
    :class:`edgebot.flow.CicFlowRecord` for CICFlowMeter files). The file is read line by line
    and never held in memory; each iteration reads the file from its start and resets the
    counters, which describe the latest pass. After a complete pass
    ``rows_read + rows_skipped == data_rows``, the number of data rows in the file (header,
    ``#`` comment lines of Zeek logs and empty lines are not data rows).

    Attributes
    ----------
    path : Path
        The file.
    format : str
        ``"zeek-tsv"``, ``"iot23-labeled"``, ``"zeek-json"``, ``"iot23-csv"`` or ``"cicflowmeter"``.
    strict : bool
        Raise :class:`edgebot.errors.DataFormatError` on the first malformed row.
    scenario : str
        The capture the rows belong to (IoT-23 scenario id such as ``"34-1"`` or the file stem).
    family : str or None
        Family given to every malicious row (override or IoT-23 table); None derives it from
        the detailed label.
    rows_read, rows_skipped : int
        Records yielded and malformed rows skipped so far in this pass.
    skipped_reasons : Counter
        Reason -> number of skipped rows.
    skipped_examples : list of (int, str)
        The first few skipped rows as (line number, what was wrong).
    done : bool
        True once a pass has reached the end of the file.
    """

    format = ""

    def __init__(
        self,
        path: Path,
        *,
        strict: bool = False,
        scenario: Optional[str] = None,
        family: Optional[str] = None,
        derive_family: Callable[[Optional[str]], Optional[str]] = family_from_detailed_label,
    ) -> None:
        self.path = Path(path)
        self.strict = strict
        self.scenario = scenario if scenario is not None else scenario_family(self.path)[0]
        self.family = family
        self._derive_family = derive_family
        self._family_cache: dict[Optional[str], Optional[str]] = {}
        self._reset()

    # -- public view -------------------------------------------------------------------------

    @property
    def data_rows(self) -> int:
        """Data rows seen in this pass (read + skipped)."""
        return self.rows_read + self.rows_skipped

    @property
    def feature_names(self) -> Optional[tuple[str, ...]]:
        """Names of the values of CICFlowMeter records; None for Zeek-like formats."""
        return None

    def __iter__(self) -> Iterator[Any]:
        self._reset()
        stream = open_text(self.path)
        line_no = 0
        try:
            with stream:
                for line_no, text, too_long in iter_lines(stream):
                    try:
                        if too_long:
                            self._overlong_line(text, line_no)
                            continue
                        record = self.parse_line(text, line_no)
                    except MalformedRow as bad:
                        self._skip(line_no, bad)
                        continue
                    if record is not None:
                        self.rows_read += 1
                        yield record
        except STREAM_ERRORS as exc:
            if isinstance(exc, OSError) and compression_of(self.path) is None:
                raise SourceError(f"{self.path}: cannot read after line {line_no} ({exc})") from exc
            raise DataFormatError(
                f"{self.path}: compressed data is corrupt or truncated after line {line_no} "
                f"({exc}); re-download the file or test it with xz -t / gzip -t"
            ) from exc
        self.done = True
        if self.rows_skipped:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in self.skipped_reasons.most_common())
            log.warning(
                "%s: skipped %d of %d data rows (%s)", self.path, self.rows_skipped, self.data_rows, reasons
            )

    def parse_line(self, text: str, line_no: int = 0) -> Any:
        """Parse one line in the context of the lines before it (for sources that follow a file).

        Parameters
        ----------
        text : str
            The line without its terminator.
        line_no : int
            Its 1-based number, stored in the record.

        Returns
        -------
        FlowRecord, CicFlowRecord or None
            None for empty and header lines (which may change the layout, e.g. a rotated log).

        Raises
        ------
        MalformedRow
            The line is a malformed data row (``.reason``, ``.detail``); counters are untouched.
        """
        if not text:
            return None
        if self._is_meta_line(text):
            self._meta_line(text, line_no)
            return None
        return self._parse_row(text, line_no)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, format={self.format!r}, "
            f"rows_read={self.rows_read}, rows_skipped={self.rows_skipped})"
        )

    # -- for subclasses ----------------------------------------------------------------------

    def _reset(self) -> None:
        self.rows_read = 0
        self.rows_skipped = 0
        self.skipped_reasons: Counter[str] = Counter()
        self.skipped_examples: list[tuple[int, str]] = []
        self.done = False

    def _is_meta_line(self, text: str) -> bool:
        """True for lines that are not data rows (Zeek ``#`` headers); CSV readers say no."""
        return False

    def _meta_line(self, text: str, line_no: int) -> None:
        """Take in a header line (only called when :meth:`_is_meta_line` said yes)."""

    def _parse_row(self, text: str, line_no: int) -> Any:
        """Turn one data line into a record, None for a header row, or raise MalformedRow."""
        raise NotImplementedError

    def _overlong_line(self, text: str, line_no: int) -> None:
        """A line cut at MAX_LINE_CHARS: a header is ignored, a data row is malformed."""
        if self._is_meta_line(text):
            log.warning("%s:%d: ignored a header line longer than %d characters", self.path, line_no, MAX_LINE_CHARS)
            return
        raise MalformedRow("line too long", f"line longer than {MAX_LINE_CHARS} characters")

    def _family_of(self, label: Optional[str], detailed_label: Optional[str]) -> Optional[str]:
        """Family of a row: only malicious rows have one."""
        if label != MALICIOUS:
            return None
        if self.family is not None:
            return self.family
        try:
            return self._family_cache[detailed_label]
        except KeyError:
            family = self._family_cache[detailed_label] = self._derive_family(detailed_label)
            return family

    def _skip(self, line_no: int, bad: MalformedRow) -> None:
        if self.strict:
            raise DataFormatError(
                f"{self.path}:{line_no}: {bad.detail} (without strict mode such rows are skipped and counted)"
            )
        self.rows_skipped += 1
        self.skipped_reasons[bad.reason] += 1
        if len(self.skipped_examples) < MAX_SKIPPED_EXAMPLES:
            self.skipped_examples.append((line_no, bad.detail))
        if self.rows_skipped <= MAX_LOGGED_SKIPS:
            log.warning("%s:%d: skipped malformed row: %s", self.path, line_no, bad.detail)
            if self.rows_skipped == MAX_LOGGED_SKIPS:
                log.warning("%s: further malformed rows are counted but not logged", self.path)


def not_a_flow_file(path: Path, why: str) -> DataFormatError:
    """The error for a file that is not in any format we read."""
    return DataFormatError(f"{path}: {NOT_A_FLOW_FILE} ({why})")
