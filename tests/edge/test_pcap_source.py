"""Tests of the pcap reader and the flow sources (pcap replay, live capture, registry)."""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from edgebot import datasets
from edgebot.edge.pcapfile import PcapReader
from edgebot.edge.sources.base import FlowSource, available_sources, create_source, source_class
from edgebot.edge.sources.pcap import PcapSource
from edgebot.errors import ConfigError, SourceError
from edgebot.flow import FlowRecord

REPO = Path(__file__).resolve().parents[2]
TRACES = datasets.path(datasets.ZEEK_TRACES)
HTTP_GET = TRACES / "zeek_http_get.pcap"
PCAP_34_1 = datasets.pcap("mirai_34_1")


def _packets(path: Path) -> List[Tuple[float, bytes]]:
    with PcapReader(path) as reader:
        return list(reader)


def _write_pcap(path: Path, packets: List[Tuple[float, bytes]], endian: str = "<",
                nanosecond: bool = False, linktype: int = 1) -> Path:
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    scale = 10**9 if nanosecond else 10**6
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for ts, frame in packets:
        sec = int(ts)
        frac = round((ts - sec) * scale)
        out.append(struct.pack(endian + "IIII", sec, frac, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def _flow_keys(flows: List[FlowRecord]) -> List[tuple]:
    return [(f.orig_h, f.orig_p, f.resp_h, f.resp_p, f.proto, f.conn_state, f.history, f.orig_pkts,
             f.resp_pkts, f.orig_ip_bytes, f.resp_ip_bytes) for f in flows]


# -- the reader -------------------------------------------------------------------------------


def test_reader_is_compression_transparent(tmp_path: Path) -> None:
    raw = HTTP_GET.read_bytes()
    (tmp_path / "a.pcap.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "b.bin").write_bytes(lzma.compress(raw))  # detected by magic, not by name
    plain = _packets(HTTP_GET)
    assert len(plain) == 14
    assert _packets(tmp_path / "a.pcap.gz") == plain
    assert _packets(tmp_path / "b.bin") == plain


@pytest.mark.parametrize("endian,nanosecond", [(">", False), ("<", True), (">", True)])
def test_reader_handles_byte_order_and_nanoseconds(tmp_path: Path, endian: str, nanosecond: bool) -> None:
    plain = _packets(HTTP_GET)
    path = _write_pcap(tmp_path / "x.pcap", plain, endian, nanosecond)
    with PcapReader(path) as reader:
        copy = list(reader)
        assert reader.nanosecond is nanosecond
        assert reader.byte_order == ("big" if endian == ">" else "little")
    assert [frame for _, frame in copy] == [frame for _, frame in plain]
    assert all(abs(a - b) < 1e-6 for (a, _), (b, _) in zip(copy, plain))
    assert _flow_keys(list(PcapSource(path))) == _flow_keys(list(PcapSource(HTTP_GET)))


def test_truncated_copy_is_tolerated_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = HTTP_GET.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[: len(raw) - 10])  # ends in the middle of the last record
    caplog.set_level(logging.WARNING, logger="edgebot.edge.pcapfile")
    source = PcapSource(cut)
    flows = list(source)
    stats = source.stats()
    assert stats["truncated_records"] == 1
    assert stats["records_read"] == stats["packets"] == 13
    assert len(flows) == 1 and flows[0].orig_pkts + flows[0].resp_pkts == 13
    warnings = [r for r in caplog.records if "cut short" in r.getMessage()]
    assert len(warnings) == 1


def test_truncated_compressed_copy_is_tolerated(tmp_path: Path) -> None:
    data = PCAP_34_1.read_bytes()
    cut = tmp_path / "cut.pcap.xz"
    cut.write_bytes(data[: len(data) // 2])
    source = PcapSource(cut)
    flows = list(source)
    assert 0 < source.stats()["packets"] < 36797
    assert flows and all("192.168.1.195" in (f.orig_h, f.resp_h) for f in flows)


def test_garbage_is_not_a_pcap(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.pcap"
    garbage.write_bytes(b"this is certainly not a capture file\n" * 10)
    with pytest.raises(SourceError, match=r"notes\.pcap: not a pcap file \(magic 0x74686973\)"):
        PcapSource(garbage)
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="not a pcap file"):
        PcapReader(empty)
    with pytest.raises(SourceError, match="no such pcap file"):
        PcapReader(tmp_path / "missing.pcap")


def test_pcapng_says_how_to_convert(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcapng"
    path.write_bytes(struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28))
    with pytest.raises(SourceError, match="editcap -F pcap"):
        PcapReader(path)


def test_unsupported_link_type_is_refused(tmp_path: Path) -> None:
    path = _write_pcap(tmp_path / "wifi.pcap", [(1.0, b"\0" * 40)], linktype=127)
    with pytest.raises(SourceError, match="link type 127"):
        PcapReader(path)


def test_raw_ip_link_type_pcap(tmp_path: Path) -> None:
    frames = [(ts, frame[14:]) for ts, frame in _packets(HTTP_GET)]  # strip Ethernet
    path = _write_pcap(tmp_path / "raw.pcap", frames, linktype=101)
    assert _flow_keys(list(PcapSource(path))) == _flow_keys(list(PcapSource(HTTP_GET)))


# -- sources and their registry ---------------------------------------------------------------


def test_registry_creates_sources_by_type() -> None:
    assert {"pcap", "iface"} <= set(available_sources())
    assert source_class("pcap") is PcapSource
    source = create_source("pcap", path=HTTP_GET)
    assert isinstance(source, FlowSource) and source.type_name == "pcap"
    assert source.description == f"pcap {HTTP_GET}"
    with pytest.raises(ConfigError, match="unknown source type 'carrier-pigeon'"):
        create_source("carrier-pigeon")
    with pytest.raises(ConfigError, match="unknown meter option"):
        create_source("pcap", path=HTTP_GET, meter_options={"max_flow": 5})
    with pytest.raises(ConfigError, match="max_flows"):
        create_source("pcap", path=HTTP_GET, meter_options={"max_flows": -1})
    with pytest.raises(ConfigError, match="source 'pcap'"):
        create_source("pcap", file=HTTP_GET)


def test_pcap_source_contract() -> None:
    with create_source("pcap", path=TRACES / "zeek_snmp_snmpv1_get.pcap") as source:
        flows = list(source)
        assert flows and all(isinstance(f, FlowRecord) for f in flows)
        assert list(source) == []  # a replay is consumed once
        stats = source.stats()
    assert stats["flows_emitted"] == len(flows) == 30 and stats["active"] == 0
    assert stats["packets"] == 58 and stats["type"] == "pcap"
    assert all(f.source.endswith("zeek_snmp_snmpv1_get.pcap") for f in flows)
    source.close()  # twice is fine


def test_flows_come_in_completion_order() -> None:
    flows = list(PcapSource(PCAP_34_1))
    ends = [f.ts + f.duration for f in flows]
    # A flow is emitted after its last packet; flows still open at the end come last.
    assert sum(1 for a, b in zip(ends, ends[1:]) if b < a - 400) == 0


# -- live capture -----------------------------------------------------------------------------


def test_unknown_interface_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match=r"no such interface 'edgebot-nope0'; available: .*lo"):
        create_source("iface", iface="edgebot-nope0")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="AF_PACKET is Linux only")
def test_live_capture_on_loopback_sees_a_udp_flow() -> None:
    try:
        source = create_source("iface", iface="lo", poll_interval=0.1)
    except SourceError as exc:
        pytest.skip(f"no capture permission here: {exc}")
    flows: List[FlowRecord] = []
    reader = threading.Thread(target=lambda: flows.extend(source), daemon=True)
    reader.start()
    time.sleep(0.3)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind(("127.0.0.1", 0))
        client.bind(("127.0.0.1", 0))
        port, client_port = server.getsockname()[1], client.getsockname()[1]
        for i in range(4):
            client.sendto(b"ping %d" % i, ("127.0.0.1", port))
        _data, peer = server.recvfrom(100)
        server.sendto(b"pong", peer)
        time.sleep(0.3)
    finally:
        server.close()
        client.close()
        source.stop()
        reader.join(timeout=5)
        source.close()
    assert None in flows  # idle ticks
    ours = [f for f in flows if f is not None and (f.orig_p, f.resp_p) == (client_port, port)]
    assert len(ours) == 1
    flow = ours[0]
    assert (flow.proto, flow.orig_h, flow.resp_h) == ("udp", "127.0.0.1", "127.0.0.1")
    assert (flow.orig_pkts, flow.resp_pkts, flow.conn_state, flow.history) == (4, 1, "SF", "Dd")
    assert source.stats()["received"] >= 5


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop privileges")
def test_missing_capture_permission_says_what_to_grant() -> None:
    code = (
        "import os\n"
        "from edgebot.edge.sources.iface import LiveSource\n"
        "from edgebot.errors import SourceError\n"
        "os.setgid(65534); os.setuid(65534)  # nobody: no CAP_NET_RAW\n"
        "try:\n"
        "    LiveSource('lo')\n"
        "except SourceError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "setcap cap_net_raw,cap_net_admin+eip" in out.stdout
    assert "AmbientCapabilities=CAP_NET_RAW" in out.stdout


# -- corrupt compressed captures (issue 12 item 7) --------------------------------------------


def _real_halves(records: int = 3000) -> Tuple[bytes, bytes]:
    """The first ``records`` packets of the 34-1 capture as two pcap byte strings: header + first
    half, and the second half's records (split at a record boundary)."""
    raw = lzma.decompress(PCAP_34_1.read_bytes())
    pos, ends = 24, []
    while len(ends) < records:
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
        ends.append(pos)
    middle = ends[records // 2 - 1]
    return raw[:middle], raw[middle:ends[-1]]


def _flip(data: bytes, at: int, n: int = 64) -> bytes:
    return data[:at] + bytes(b ^ 0xA5 for b in data[at:at + n]) + data[at + n:]


def _corrupt_captures() -> dict:
    first, second = _real_halves()
    gz1, gz2 = gzip.compress(first, mtime=0), gzip.compress(second, mtime=0)
    xz, bz = lzma.compress(first + second), bz2.compress(first + second, compresslevel=1)  # 100 kB blocks
    return {
        "gzip-second-member-bad-header": gz1 + b"\x1f\x8b\x07" + gz2[3:],
        "gzip-second-member-bad-data": gz1 + _flip(gz2, 20),
        "gzip-second-member-garbage": gz1 + b"not gzip" * 8,
        "gzip-bad-crc": gz1[:-8] + b"\0\0\0\0" + gz1[-4:] + gz2,
        "xz-bad-data": _flip(xz, len(xz) // 2),
        "bzip2-bad-data": _flip(bz, len(bz) // 2),
    }


CORRUPT = _corrupt_captures()


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_compressed_pcap_delivers_flows_then_one_line_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(CORRUPT[name])
    source = PcapSource(path, ticks=True)
    items: list = []
    with pytest.raises(SourceError) as err:
        for item in source:
            items.append(item)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and "corrupt" in message
    assert items and items[-1] is None  # a tick after the last flow: the agent scores before the error
    flows = [f for f in items if f is not None]
    stats = source.stats()
    assert stats["damaged"] == 1 and 0 < stats["packets"] < 3000
    # Every packet read before the damage is in a delivered flow (nothing accepted is lost).
    assert sum(f.orig_pkts + f.resp_pkts for f in flows) + stats["bad_ip"] + stats["non_ip"] >= 0.95 * stats["packets"]
    if name.startswith("gzip-second") or name == "gzip-bad-crc":
        first, _ = _real_halves()
        ref = tmp_path / "first.pcap"
        ref.write_bytes(first)
        assert stats["packets"] == 1500 and _flow_keys(flows) == _flow_keys(list(PcapSource(ref)))


@pytest.mark.parametrize("name,data", [
    ("bad-method", lambda gz: gz[:2] + b"\x07" + gz[3:]),
    ("bad-first-block", lambda gz: _flip(gz, 12)),
    ("header-only", lambda gz: gz[:10]),
])
def test_corrupt_gzip_header_is_a_one_line_error(tmp_path: Path, name: str, data) -> None:
    first, _ = _real_halves()
    path = tmp_path / f"{name}.pcap.gz"
    path.write_bytes(data(gzip.compress(first, mtime=0)))
    with pytest.raises(SourceError) as err:
        list(PcapSource(path))
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_bzip2_pcap_and_truncated_streams_are_read(tmp_path: Path) -> None:
    first, second = _real_halves()
    whole = tmp_path / "whole.pcap.bz2"
    whole.write_bytes(bz2.compress(first + second))
    plain = tmp_path / "plain.pcap"
    plain.write_bytes(first + second)
    assert _flow_keys(list(PcapSource(whole))) == _flow_keys(list(PcapSource(plain)))
    for compress in (gzip.compress, lambda data: bz2.compress(data, compresslevel=1), lzma.compress):
        cut = tmp_path / "cut.pcap"
        data = compress(first + second)
        cut.write_bytes(data[: len(data) * 2 // 3])
        source = PcapSource(cut)
        flows = list(source)  # a stream cut short is tolerated like a cut record, and reported
        assert flows and source.stats()["truncated_stream"] == 1 and source.stats()["damaged"] == 0


def test_damaged_record_header_mid_file_delivers_flows_first(tmp_path: Path) -> None:
    first, second = _real_halves()
    bad = struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 0x7FFFFFFF)
    path = tmp_path / "damaged.pcap"
    path.write_bytes(first + bad + second)
    source = PcapSource(path)
    flows: list = []
    with pytest.raises(SourceError, match=r"corrupt record at packet 1501 \(claims 2147483647"):
        for flow in source:
            flows.append(flow)
    assert source.stats()["packets"] == 1500 and flows
