"""The meter under hostile traffic: fragments that overflow a datagram or flood the reassembly buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebot.edge.meter.fragments import DEFAULT_MAX_FRAGMENT_BYTES, PIECE_OVERHEAD
from edgebot.edge.meter import FlowMeter
from edgebot.edge.sources.pcap import PcapSource, make_meter
from edgebot.errors import ConfigError
from frames import fragment, oversized_datagram, udp_frame, udp_segment, write_pcap

A, B = "10.0.0.2", "10.0.0.1"


def test_fragments_past_65535_bytes_are_dropped_on_the_live_path() -> None:
    meter = FlowMeter()
    for i, frame in enumerate(oversized_datagram()):
        assert meter.add_packet(1.0 + i * 1e-4, frame) == []
    meter.add_packet(2.0, udp_frame(A, 5000, B, 53))  # the meter goes on
    stats = meter.stats
    assert stats["fragments"] == 45 and stats["reassembled"] == 0
    assert stats["fragments_oversized"] == 1 and stats["fragments_dropped"] == 1
    assert stats["fragment_bytes"] == 0  # nothing of it is held any longer
    (flow,) = meter.flush()
    assert (flow.orig_h, flow.resp_p, flow.orig_pkts) == (A, 53, 1)


def test_fragments_past_65535_bytes_are_dropped_on_the_batch_path(tmp_path: Path) -> None:
    packets = [(1.0 + i * 1e-4, f) for i, f in enumerate(oversized_datagram())]
    packets.append((2.0, udp_frame(A, 5000, B, 53)))
    source = PcapSource(write_pcap(tmp_path / "overflow.pcap", packets))
    flows = list(source)
    stats = source.stats()
    assert stats["packets"] == 46 and stats["fragments_oversized"] == 1 and stats["reassembled"] == 0
    assert [(f.orig_h, f.resp_p) for f in flows] == [(A, 53)]


def _overlap_flood(datagrams: int, per_datagram: int, src: str = "10.6.6.6") -> list:
    """Never-completing datagrams of 1,480-byte fragments at offsets 0, 8, 16...: each overlaps the last."""
    frames = []
    for d in range(datagrams):
        for k in range(per_datagram):
            frames.append(fragment(src, B, 1000 + d, 8 * k, bytes([k & 0xFF]) * 1480, True))
    return frames


def test_overlapping_fragment_flood_is_bounded_by_fragments_per_datagram() -> None:
    meter = FlowMeter()
    for i, frame in enumerate(_overlap_flood(30, 200)):
        meter.add_packet(1.0 + i * 1e-5, frame)
    stats = meter.stats
    assert stats["fragments"] == 6000
    assert stats["fragments_too_many"] == 30 and stats["fragments_dropped"] == 30
    assert stats["fragment_bytes_peak"] <= DEFAULT_MAX_FRAGMENT_BYTES
    # Overlaps are not stored twice: 128 fragments at 8-byte steps hold 127 * 8 + 1480 bytes.
    assert stats["fragment_bytes_peak"] <= 30 * (127 * 8 + 1480 + 20 + 128 * PIECE_OVERHEAD)


def test_fragment_bytes_cap_evicts_the_oldest_datagrams() -> None:
    cap = 256 * 1024
    meter = FlowMeter(max_fragment_bytes=cap, max_fragments_per_datagram=10_000)
    peak = 0
    for i, frame in enumerate(_overlap_flood(30, 400)):
        meter.add_packet(1.0 + i * 1e-5, frame)
        peak = max(peak, meter.stats["fragment_bytes"])
    stats = meter.stats
    assert peak <= cap and stats["fragment_bytes_peak"] == peak
    assert stats["fragments_evicted"] >= 20 and stats["fragments_pending"] >= 1
    # The meter still reassembles a datagram sent after the flood, and says what it holds.
    segment = udp_segment(A, 7000, B, 7001, b"q" * 3000)
    for offset in range(0, len(segment), 1480):
        chunk = segment[offset:offset + 1480]
        meter.add_packet(2.0, fragment(A, B, 9, offset, chunk, offset + 1480 < len(segment)))
    assert meter.stats["reassembled"] == 1
    flows = meter.flush()
    assert [(f.orig_h, f.resp_p, f.orig_pkts, f.orig_ip_bytes) for f in flows] == [(A, 7001, 1, 20 + len(segment))]
    assert meter.stats["fragment_bytes"] == 0 and meter.stats["fragments_pending"] == 0


def test_largest_legal_datagram_still_reassembles() -> None:
    segment = udp_segment(A, 7002, B, 7003, b"m" * (65535 - 20 - 8))
    meter = FlowMeter()
    for offset in range(0, len(segment), 1480):
        chunk = segment[offset:offset + 1480]
        meter.add_packet(1.0, fragment(A, B, 10, offset, chunk, offset + 1480 < len(segment)))
    assert meter.stats["reassembled"] == 1 and meter.stats["fragments_oversized"] == 0
    (flow,) = meter.flush()
    assert flow.orig_ip_bytes == 65535


@pytest.mark.parametrize("overlap,history,pkts", [("same", "D", 1), ("garbage", "C", 0)])
def test_duplicate_and_overlapping_fragments_keep_the_first_bytes(overlap: str, history: str, pkts: int) -> None:
    segment = udp_segment(A, 7004, B, 7005, bytes(range(256)) * 8)
    middle = segment[512:1536] if overlap == "same" else b"\xee" * 1024
    meter = FlowMeter()
    meter.add_packet(1.0, fragment(A, B, 11, 0, segment[:1024], True))
    meter.add_packet(1.0, fragment(A, B, 11, 0, segment[:1024], True))  # a duplicate
    meter.add_packet(1.0, fragment(A, B, 11, 512, middle, True))  # overlaps both halves
    meter.add_packet(1.0, fragment(A, B, 11, 1024, segment[1024:], False))
    # Bytes 1024..1535 came first with the overlapping fragment and are kept (first arrival
    # wins, as in Zeek): garbage there fails the UDP checksum (history C, not counted).
    assert meter.stats["reassembled"] == 1 and meter.stats["fragment_bytes"] == 0
    (flow,) = meter.flush()
    assert (flow.history, flow.orig_pkts) == (history, pkts)
    if pkts:
        assert flow.orig_ip_bytes == 20 + len(segment)


def test_stale_fragments_expire_without_any_flow() -> None:
    meter = FlowMeter(fragment_timeout=30.0)
    meter.add_packet(0.0, fragment("10.1.1.1", B, 1, 0, b"a" * 1480, True))
    meter.add_packet(10.0, fragment("10.1.1.2", B, 2, 0, b"b" * 1480, True))
    assert meter.stats["fragments_pending"] == 2
    meter.add_packet(35.0, fragment("10.1.1.3", B, 3, 0, b"c" * 1480, True))  # the first one is 35 s old
    assert meter.stats["fragments_timed_out"] == 1 and meter.stats["fragments_pending"] == 2
    meter.expire(100.0)  # idle live link: the wall clock expires the rest
    assert meter.stats["fragments_timed_out"] == 3 and meter.stats["fragment_bytes"] == 0


def test_fragment_caps_are_meter_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_fragment_bytes"):
        make_meter({"max_fragment_bytes": 1000}, "x")
    with pytest.raises(ConfigError, match="fragment_timeout"):
        make_meter({"fragment_timeout": 0}, "x")
    meter = make_meter({"max_fragment_bytes": 1 << 20, "max_fragmented": 10, "max_fragments_per_datagram": 50,
                        "fragment_timeout": 5.0}, "x")
    for d in range(12):
        meter.add_packet(1.0, fragment("10.2.2.2", B, d, 0, b"z" * 100, True))
    assert meter.stats["fragments_evicted"] == 2 and meter.stats["fragments_pending"] == 10
