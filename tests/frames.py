"""Crafted packets and pcap files for the hardening tests, built with ``struct`` (no files in the repo)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Iterable, List, Tuple

MAC_PAIR = b"\x02" * 6 + b"\x04" * 6


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_header(src: str, dst: str, proto: int, payload_len: int, ident: int = 1,
                flags_offset: int = 0, options: bytes = b"") -> bytes:
    """An IPv4 header with a correct checksum; ``flags_offset`` is the raw 16-bit field."""
    ihl = 5 + len(options) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + payload_len, ident, flags_offset, 64,
                         proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + options
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


def ether(ip_packet: bytes, ethertype: int = 0x0800) -> bytes:
    """An Ethernet II frame around ``ip_packet``."""
    return MAC_PAIR + struct.pack("!H", ethertype) + ip_packet


def udp_segment(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """A UDP header and payload with a correct checksum."""
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, len(segment))
    return segment[:6] + struct.pack("!H", checksum(pseudo + segment) or 0xFFFF) + segment[8:]


def udp_frame(src: str, sport: int, dst: str, dport: int, payload: bytes = b"x" * 10) -> bytes:
    """A complete Ethernet/IPv4/UDP frame."""
    segment = udp_segment(src, sport, dst, dport, payload)
    return ether(ipv4_header(src, dst, 17, len(segment)) + segment)


def fragment(src: str, dst: str, ident: int, offset: int, data: bytes, more: bool, proto: int = 17) -> bytes:
    """One IPv4 fragment (Ethernet frame) carrying ``data`` at byte ``offset`` (a multiple of 8)."""
    assert offset % 8 == 0
    field = (0x2000 if more else 0) | (offset // 8)
    return ether(ipv4_header(src, dst, proto, len(data), ident, field) + data)


def oversized_datagram(src: str = "10.9.9.9", dst: str = "10.0.0.1", ident: int = 4242) -> List[bytes]:
    """The crash of issue 12 item 1: 45 fragments of one datagram that reassemble past 65,535 bytes.

    Forty-four ordinary 1,514-byte Ethernet frames (1,480 payload bytes each, offsets 0..63,640,
    More Fragments set), then a last fragment of 500 bytes at offset 65,120: 65,640 bytes of IP.
    """
    frames = [fragment(src, dst, ident, i * 1480, bytes([i]) * 1480, True) for i in range(44)]
    frames.append(fragment(src, dst, ident, 44 * 1480, b"L" * 500, False))
    assert all(len(f) == 1514 for f in frames[:-1]) and 63_640 in [i * 1480 for i in range(44)]
    return frames


def pcap_bytes(packets: Iterable[Tuple[float, bytes]], linktype: int = 1) -> bytes:
    """A classic little-endian microsecond pcap file holding ``packets``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, frame in packets:
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(frame), len(frame)) + frame)
    return b"".join(out)


def write_pcap(path: Path, packets: Iterable[Tuple[float, bytes]], linktype: int = 1) -> Path:
    """Write :func:`pcap_bytes` to ``path`` and return it."""
    path.write_bytes(pcap_bytes(packets, linktype))
    return path
