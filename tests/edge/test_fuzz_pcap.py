"""Fuzzing the pcap reader: damaged headers, records and compressed streams give one-line errors only.

Each example builds a small capture from real frames of the bundled pcaps (either byte order,
micro- or nanosecond stamps, any link type), damages its global header and record headers
(bytes overwritten, lengths set to edge values: 0, 15, 16, 65,535, 16 MiB +- 1, 2**32 - 1),
truncates or extends it, optionally compresses it (gzip, xz, bzip2, or two gzip members) and
damages the compressed stream too. It is then replayed through :class:`PcapSource`. Properties:
nothing but an ``EdgebotError`` escapes; such an error is one line that starts with the file
name; every record read is counted as a packet, and every flow comes before the error.

Budgets come from ``tests/fuzzing.py`` (``make test``: ``ci``; ``make fuzz``: ``fuzz``).
"""

from __future__ import annotations

import bz2
import gzip
import itertools
import lzma
import struct
from pathlib import Path
from typing import List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebot.edge.pcapfile import SUPPORTED_LINKTYPES, PcapReader
from edgebot.edge.sources.pcap import PcapSource
from edgebot.errors import EdgebotError
from edgebot.flow import FlowRecord
from frames import seed_frames
from fuzzing import fuzz_settings

pytestmark = pytest.mark.timeout(600)

SEEDS = seed_frames()
LENGTHS = [0, 1, 15, 16, 17, 1514, 65535, 65536, 262144, (1 << 24) - 1, 1 << 24, (1 << 24) + 1, 2**31, 2**32 - 1]
_names = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-pcap")


def _capture(endian: str, nano: bool, linktype: int, snaplen: int, frames: List[Tuple[float, bytes]]) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    scale = 10**9 if nano else 10**6
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, frame in frames:
        sec = int(ts)
        out.append(struct.pack(endian + "IIII", sec, int((ts - sec) * scale), len(frame), len(frame)) + frame)
    return b"".join(out)


@st.composite
def damaged_captures(draw) -> bytes:
    frames = draw(st.lists(st.sampled_from(SEEDS), min_size=0, max_size=6))
    linktype = draw(st.sampled_from(sorted(SUPPORTED_LINKTYPES) + [1, 1, 1, 127, 0x10000001, 2**32 - 1]))
    data = bytearray(_capture(draw(st.sampled_from("<>")), draw(st.booleans()), linktype,
                              draw(st.sampled_from([0, 96, 65535, 262144, 2**32 - 1])),
                              [(1_500_000_000 + i * 0.25, f) for i, f in enumerate(frames)]))
    # Where each record header starts, to damage them specifically.
    starts, pos = [], 24
    for frame in frames:
        starts.append(pos)
        pos += 16 + len(frame)
    for op in draw(st.lists(st.sampled_from(["global", "record", "length", "cut", "append"]), max_size=4)):
        if op == "global":
            at, value = draw(st.integers(0, 23)), draw(st.integers(0, 255))
            if at < len(data):
                data[at] = value
        elif op == "record" and starts:
            at, value = draw(st.sampled_from(starts)) + draw(st.integers(0, 15)), draw(st.integers(0, 255))
            if at < len(data):
                data[at] = value
        elif op == "length" and starts:
            at = draw(st.sampled_from(starts)) + draw(st.sampled_from([8, 12]))
            endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
            value = struct.pack(endian + "I", draw(st.sampled_from(LENGTHS)))
            if at + 4 <= len(data):
                data[at:at + 4] = value
        elif op == "cut":
            del data[draw(st.integers(0, len(data))):]
        elif op == "append":
            data += draw(st.binary(max_size=64))
    raw = bytes(data)
    kind = draw(st.sampled_from(["plain", "plain", "gzip", "gzip2", "xz", "bzip2"]))
    if kind == "plain":
        return raw
    if kind == "gzip":
        packed = gzip.compress(raw, mtime=0)
    elif kind == "gzip2":
        half = draw(st.integers(0, len(raw)))
        packed = gzip.compress(raw[:half], mtime=0) + gzip.compress(raw[half:], mtime=0)
    elif kind == "xz":
        packed = lzma.compress(raw)
    else:
        packed = bz2.compress(raw, compresslevel=1)
    packed_data = bytearray(packed)
    for op in draw(st.lists(st.sampled_from(["flip", "cut", "append"]), max_size=2)):
        if op == "flip" and packed_data:
            packed_data[draw(st.integers(0, len(packed_data) - 1))] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del packed_data[draw(st.integers(0, len(packed_data))):]
        else:
            packed_data += draw(st.binary(max_size=32))
    return bytes(packed_data)


def _one_line(error: EdgebotError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and message.startswith(str(path)), message


@fuzz_settings(400)
@given(damaged_captures())
def test_damaged_captures_give_flows_or_one_line_errors(workdir: Path, content: bytes) -> None:
    path = workdir / f"case{next(_names)}.pcap"
    path.write_bytes(content)
    try:
        try:
            source = PcapSource(path, ticks=True)
        except EdgebotError as exc:
            _one_line(exc, path)
            return
        items = []
        try:
            for item in source:
                items.append(item)
        except EdgebotError as exc:
            _one_line(exc, path)
            assert source.stats()["damaged"] == 1 and (not items or items[-1] is None)
        stats = source.stats()
        assert stats["records_read"] == stats["packets"] and stats["active"] == 0
        flows = [f for f in items if f is not None]
        assert all(isinstance(f, FlowRecord) for f in flows) and len(flows) == stats["flows_emitted"]
        source.close()
    finally:
        path.unlink()


@fuzz_settings(200)
@given(damaged_captures(), st.sampled_from([16, 100, 4096, 1 << 20]))
def test_reader_batches_hold_only_complete_records(workdir: Path, content: bytes, chunk: int) -> None:
    """Whatever the damage and the read size, every record handed out lies inside its buffer."""
    path = workdir / f"reader{next(_names)}.pcap"
    path.write_bytes(content)
    try:
        try:
            reader = PcapReader(path)
        except EdgebotError as exc:
            _one_line(exc, path)
            return
        with reader:
            count = 0
            try:
                for buf, packets in reader.batches(chunk_size=chunk):
                    for _ts, offset, caplen, _wirelen in packets:
                        assert 0 <= offset and offset + caplen <= len(buf)
                    count += len(packets)
            except EdgebotError as exc:
                _one_line(exc, path)
            assert reader.stats.packets == count
    finally:
        path.unlink()
