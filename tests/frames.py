"""Crafted packets and pcap files for the hardening tests, built with ``struct`` (no files in the repo)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Iterable, List, Tuple

from edgebot import datasets

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


# -- seeds for the fuzz tests: real frames from the bundled captures -----------------------------

REPO = Path(__file__).resolve().parents[1]
PCAPS = datasets.path("pcaps")


def seed_frames(per_kind: int = 3, limit_per_file: int = 3000) -> List[bytes]:
    """Real Ethernet frames from every bundled capture, a few of each kind.

    A kind is (IP version, transport, TCP flags or ICMP type, IP options, IPv6 next header), so
    the seeds cover SYNs, data segments, resets, UDP, ICMP, IGMP with options, IPv6 with
    hop-by-hop headers, ARP and other non-IP frames. Deterministic: files in name order,
    frames in capture order.
    """
    from edgebot.edge.pcapfile import PcapReader

    seen: dict = {}
    out: List[bytes] = []
    for path in sorted(PCAPS.rglob("*.pcap*")):
        with PcapReader(path) as reader:
            for n, (_ts, frame) in enumerate(reader):
                if n >= limit_per_file:
                    break
                kind = frame_kind(frame)
                if seen.get(kind, 0) < per_kind:
                    seen[kind] = seen.get(kind, 0) + 1
                    out.append(frame)
    return out


def frame_kind(frame: bytes) -> tuple:
    """A coarse description of an Ethernet frame, for picking varied seeds."""
    if len(frame) < 14:
        return ("short",)
    etype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[14:]
    if etype == 0x0800 and len(ip) >= 20:
        proto, ihl = ip[9], (ip[0] & 15) * 4
        detail: object = 0
        if proto == 6 and len(ip) > ihl + 13:
            detail = (ip[ihl + 13] & 0x1F, len(ip) > ihl + (ip[ihl + 12] >> 4) * 4)
        elif proto == 1 and len(ip) > ihl:
            detail = ip[ihl]
        return (4, proto, detail, ihl > 20)
    if etype == 0x86DD and len(ip) >= 40:
        return (6, ip[6])
    return ("other", etype)


def fix_checksums(ip: bytes) -> bytes:
    """Recompute the IPv4 header checksum and the TCP/UDP/ICMP checksum of an IP packet,
    where the headers are there to do so (anything else is returned as it is)."""
    if not ip:
        return ip
    data = bytearray(ip)
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        ihl = (data[0] & 15) * 4
        if 20 <= ihl <= len(data):
            data[10:12] = b"\0\0"
            data[10:12] = struct.pack("!H", checksum(bytes(data[:ihl])))
            proto, l4 = data[9], ihl
            pseudo = bytes(data[12:20]) + struct.pack("!BBH", 0, proto, len(data) - l4)
            _fix_l4(data, proto, l4, pseudo)
    elif version == 6 and len(data) >= 40:
        pseudo = bytes(data[8:40]) + struct.pack("!IxxxB", len(data) - 40, data[6])
        _fix_l4(data, data[6], 40, pseudo, icmp_proto=58)
    return bytes(data)


def _fix_l4(data: bytearray, proto: int, l4: int, pseudo: bytes, icmp_proto: int = 1) -> None:
    at = {6: 16, 17: 6}.get(proto, 2 if proto == icmp_proto else None)
    if at is None or len(data) < l4 + at + 2:
        return
    data[l4 + at:l4 + at + 2] = b"\0\0"
    segment = bytes(data[l4:])
    value = checksum(segment if proto == 1 else pseudo + segment)
    data[l4 + at:l4 + at + 2] = struct.pack("!H", value or (0xFFFF if proto == 17 else 0))


def conversations(limit: int = 300) -> List[List[Tuple[float, bytes]]]:
    """Runs of consecutive real frames (timestamp, Ethernet frame) with whole TCP/UDP dialogues:
    each small Zeek trace, and the first ``limit`` frames of each bundled IoT-23 capture."""
    from edgebot.edge.pcapfile import PcapReader

    out = []
    for path in sorted(PCAPS.rglob("*.pcap*")):
        with PcapReader(path) as reader:
            run = []
            for ts, frame in reader:
                run.append((ts, frame))
                if len(run) >= limit:
                    break
        out.append(run)
    return out
