"""Format sniffing: which reader a file needs, from its first bytes and lines (never its name)."""

from __future__ import annotations

import logging
from pathlib import Path
from edgebot.readers import cicids, iot23csv, zeek
from edgebot.readers.common import STREAM_ERRORS, FlowReader, not_a_flow_file, open_binary

log = logging.getLogger(__name__)

#: How much of the (decompressed) start of a file the sniffer looks at.
HEAD_BYTES = 64 * 1024

# Binary files people hand to a flow reader by mistake, with a hint of what to do instead.
_BINARY_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"\xd4\xc3\xb2\xa1", "a pcap capture; meter it with edgebot run --pcap"),
    (b"\xa1\xb2\xc3\xd4", "a pcap capture; meter it with edgebot run --pcap"),
    (b"\x4d\x3c\xb2\xa1", "a pcap capture; meter it with edgebot run --pcap"),
    (b"\xa1\xb2\x3c\x4d", "a pcap capture; meter it with edgebot run --pcap"),
    (b"\x0a\x0d\x0d\x0a", "a pcapng capture; meter it with edgebot run --pcap"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive; unzip it first"),
    (b"\x7fELF", "an executable"),
)


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of a file after decompression.

    Raises
    ------
    SourceError
        The file cannot be opened.
    DataFormatError
        Its compressed data is corrupt.
    """
    stream = open_binary(path)
    try:
        with stream:
            return stream.read(size)
    except STREAM_ERRORS as exc:
        raise not_a_flow_file(path, f"compressed data is corrupt: {exc}") from exc


def head_lines(head: bytes, complete: bool) -> list[str]:
    """Decode the head of a file into lines (the last, possibly cut, line dropped unless complete)."""
    text = head.decode("utf-8-sig", errors="replace")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if not complete and len(lines) > 1:
        lines.pop()
    return lines


def sniff_format(path: Path) -> tuple[str, type[FlowReader]]:
    """Name a file's format and the reader class for it.

    Parameters
    ----------
    path : Path
        The file; xz, gzip and bzip2 are recognised by their magic bytes.

    Returns
    -------
    (str, type)
        The format (``"zeek-tsv"``, ``"iot23-labeled"``, ``"zeek-json"``, ``"iot23-csv"`` or
        ``"cicflowmeter"``) and the :class:`FlowReader` subclass that reads it.

    Raises
    ------
    DataFormatError
        ``"<file>: not a Zeek conn log or CICFlowMeter CSV (<why>)"``.
    SourceError
        The file cannot be opened.
    """
    head = read_head(path)
    if not head.strip():
        raise not_a_flow_file(path, "the file is empty")
    for magic, kind in _BINARY_KINDS:
        if head.startswith(magic):
            raise not_a_flow_file(path, f"it is {kind}")
    lines = head_lines(head, complete=len(head) < HEAD_BYTES)
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise not_a_flow_file(path, "no line ends within the first 64 KiB")
    # Only the header decides: a log whose later rows hold NUL runs (a crash while writing) is
    # still a log, and those rows are counted as malformed.
    if "\x00" in first:
        raise not_a_flow_file(path, "it holds binary data")
    if first.startswith("#"):
        return zeek.probe_tsv(path, lines), zeek.ZeekTsvReader
    if first.lstrip().startswith("{"):
        return zeek.probe_json(path, lines), zeek.ZeekJsonReader
    if iot23csv.looks_like(first):
        return iot23csv.probe(path, lines), iot23csv.Iot23CsvReader
    if cicids.looks_like(first):
        return cicids.probe(path, lines), cicids.CicFlowMeterReader
    shown = first[:60] + ("..." if len(first) > 60 else "")
    raise not_a_flow_file(
        path,
        f"first line {shown!r} is neither a Zeek '#' header, a JSON object, nor a CSV header "
        "with Zeek or CICFlowMeter column names",
    )

