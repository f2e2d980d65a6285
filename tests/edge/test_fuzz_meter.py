"""Fuzzing the meter's packet path: random bytes and mutated real frames never raise, hang or leak.

Seeds are real frames of the bundled captures (``frames.seed_frames``). Each example takes a
few seeds down to their IP packet, restructures them the way hostile or broken senders do
(IPv4 options, fragments, IPv6 extension headers, TCP options and data offsets, UDP lengths,
ICMP types, IP-in-IP and GRE, byte flips, truncation), wraps them in one of the link layers the
meter decodes (Ethernet, 802.1Q/QinQ, PPPoE, MPLS, Linux SLL/SLL2, raw IP, BSD loopback) and
feeds them three ways: packet by packet with checksums verified, packet by packet without, and
as one batch (the numpy checksum path). Properties: nothing but an ``EdgebotError`` escapes, the
batch and per-packet paths agree flow for flow, every packet is counted, and the fragment
buffer stays under its cap and is empty after ``flush``.

Budgets come from ``tests/fuzzing.py``: ``make test`` runs the derandomized ``ci`` profile,
``make fuzz`` the long ``fuzz`` one.
"""

from __future__ import annotations

import struct
from typing import List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebot.edge.meter.fragments import DEFAULT_MAX_FRAGMENT_BYTES
from edgebot.edge.meter import FlowMeter
from edgebot.errors import EdgebotError
from edgebot.flow import FlowRecord
from frames import conversations, fix_checksums, seed_frames
from fuzzing import fuzz_settings

pytestmark = pytest.mark.timeout(600)

SEEDS = seed_frames()
IP_SEEDS = [f[14:] for f in SEEDS if f[12:14] in (b"\x08\x00", b"\x86\xdd")]
DIALOGUES = conversations()

# Link types and how to wrap an IP packet in them.
ETHERNET, RAW, SLL, SLL2, NULL, LOOP, IPV4, IPV6 = 1, 101, 113, 276, 0, 108, 228, 229


def _ethertype(ip: bytes) -> int:
    return 0x86DD if ip and ip[0] >> 4 == 6 else 0x0800


def wrap(link: str, ip: bytes) -> Tuple[int, bytes]:
    """(pcap link type, frame) carrying ``ip`` over ``link``."""
    macs = b"\x02" * 6 + b"\x04" * 6
    etype = struct.pack("!H", _ethertype(ip))
    if link == "ethernet":
        return ETHERNET, macs + etype + ip
    if link == "vlan":
        return ETHERNET, macs + b"\x81\x00\x00\x2a" + etype + ip
    if link == "qinq":
        return ETHERNET, macs + b"\x88\xa8\x00\x64\x81\x00\x00\x2a" + etype + ip
    if link == "pppoe":
        ppp = b"\x00\x21" if _ethertype(ip) == 0x0800 else b"\x00\x57"
        return ETHERNET, macs + b"\x88\x64" + struct.pack("!BBHH", 0x11, 0, 1, len(ip) + 2) + ppp + ip
    if link == "mpls":
        return ETHERNET, macs + b"\x88\x47" + b"\x00\x01\x00\x40" + b"\x00\x02\x01\x40" + ip
    if link == "sll":
        return SLL, struct.pack("!HHH8s", 0, 1, 6, b"\x02" * 8) + etype + ip
    if link == "sll2":
        return SLL2, etype + b"\x00\x00" + struct.pack("!IHBB8s", 2, 1, 0, 6, b"\x02" * 8) + ip
    if link == "raw":
        return RAW, ip
    if link == "ipv4-ipv6":
        return (IPV6 if _ethertype(ip) == 0x86DD else IPV4), ip
    if link == "null":
        return NULL, struct.pack("<I", 30 if _ethertype(ip) == 0x86DD else 2) + ip
    return LOOP, struct.pack("!I", 24 if _ethertype(ip) == 0x86DD else 2) + ip


LINKS = ["ethernet", "vlan", "qinq", "pppoe", "mpls", "sll", "sll2", "raw", "ipv4-ipv6", "null", "loop"]


# -- mutations of one IP packet ------------------------------------------------------------------


def _set_v4_lengths(data: bytearray) -> None:
    if len(data) >= 4 and data[0] >> 4 == 4:
        data[2:4] = struct.pack("!H", min(len(data), 0xFFFF))


def ipv4_options(ip: bytes, options: bytes) -> bytes:
    """Insert IP options (padded to 4 bytes, at most 40) after the fixed header."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return ip
    ihl = (ip[0] & 15) * 4
    options = (options + b"\0" * 3)[: (len(options) + 3) // 4 * 4][: 60 - ihl]
    data = bytearray(ip[:ihl] + options + ip[ihl:])
    data[0] = 0x40 | ((ihl + len(options)) // 4)
    _set_v4_lengths(data)
    return bytes(data)


def tcp_options(ip: bytes, offset_words: int, options: bytes) -> bytes:
    """Give a TCP segment options and any data offset (0..15, also nonsense ones)."""
    version = ip[0] >> 4 if ip else 0
    l4 = (ip[0] & 15) * 4 if version == 4 else 40
    proto = ip[9] if version == 4 and len(ip) >= 20 else ip[6] if version == 6 and len(ip) >= 40 else None
    if proto != 6 or len(ip) < l4 + 20:
        return ip
    data = bytearray(ip[:l4 + 20] + options + ip[l4 + 20:])
    data[l4 + 12] = (offset_words << 4) | (data[l4 + 12] & 15)
    if version == 4:
        _set_v4_lengths(data)
    else:
        data[4:6] = struct.pack("!H", len(data) - 40)
    return bytes(data)


def ipv6_extensions(ip: bytes, chain: List[Tuple[int, int, bytes]]) -> bytes:
    """Insert IPv6 extension headers: (type, length field, body) each, in order."""
    if len(ip) < 40 or ip[0] >> 4 != 6:
        return ip
    nxt = ip[6]
    headers = b""
    for kind, length, body in reversed(chain):
        size = 8 if kind == 44 else (length + 2) * 4 if kind == 51 else (length + 1) * 8
        block = bytes([nxt, length]) + (body + b"\0" * size)[: size - 2]
        headers = block + headers
        nxt = kind
    data = bytearray(ip[:40] + headers + ip[40:])
    data[6] = nxt
    data[4:6] = struct.pack("!H", min(len(data) - 40, 0xFFFF))
    return bytes(data)


def fragments(ip: bytes, cuts: List[int], order: List[int]) -> List[bytes]:
    """Split an IPv4 packet into fragments at the given payload offsets (rounded to 8)."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return [ip]
    ihl = (ip[0] & 15) * 4
    payload = ip[ihl:]
    bounds = sorted({0, *(c // 8 * 8 for c in cuts if 0 < c < len(payload)), len(payload)})
    pieces = []
    for start, end in zip(bounds, bounds[1:]):
        header = bytearray(ip[:ihl])
        more = 0x2000 if end < len(payload) else 0
        header[6:8] = struct.pack("!H", more | (start // 8))
        header[2:4] = struct.pack("!H", ihl + end - start)
        pieces.append(fix_checksums(bytes(header)) + payload[start:end])
    if not pieces:
        return [ip]
    return [pieces[i % len(pieces)] for i in order] or pieces


def to_ipv6(ip: bytes) -> bytes:
    """The transport segment of an IPv4 packet carried by IPv6 instead (IPv6 TCP is not in the seeds)."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return ip
    ihl = (ip[0] & 15) * 4
    proto = 58 if ip[9] == 1 else ip[9]
    segment = ip[ihl:]
    header = struct.pack("!IHBB", 6 << 28, len(segment), proto, 64) + b"\x20\x01\x0d\xb8" + b"\0" * 11 + ip[12:13]
    header += b"\x20\x01\x0d\xb8" + b"\0" * 11 + ip[16:17]
    return fix_checksums(header + segment)


def tunnel(ip: bytes, kind: str) -> bytes:
    """Wrap an IP packet in IPv4: IP-in-IP, GRE (plain, with key and sequence, bridging an
    Ethernet frame like Mirai's greeth flood) or PPTP's enhanced GRE carrying PPP."""
    v6 = bool(ip) and ip[0] >> 4 == 6
    ptype = 0x86DD if v6 else 0x0800
    if kind == "ipip":
        proto, inner = (41 if v6 else 4), ip
    else:
        proto = 47
        if kind == "gre-key":
            gre = struct.pack("!HH", 0x3000, ptype) + b"\0\0\0\x07\0\0\0\x01"
        elif kind == "gre-eth":
            gre = struct.pack("!HH", 0, 0x6558) + b"\x02" * 12 + struct.pack("!H", ptype)
        elif kind == "gre-pptp":
            gre = struct.pack("!HHHH", 0x2001, 0x880B, len(ip) + 4, 7) + b"\xff\x03" + (b"\x00\x57" if v6 else b"\x00\x21")
        else:
            gre = struct.pack("!HH", 0, ptype)
        inner = gre + ip
    outer = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(inner), 9, 0, 64, proto, 0,
                        b"\xc0\xa8\x01\x01", b"\xc0\xa8\x01\x02")
    return fix_checksums(outer) + inner


def flip(ip: bytes, edits: List[Tuple[int, int]]) -> bytes:
    data = bytearray(ip)
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    return bytes(data)


@st.composite
def mutated_packets(draw) -> List[bytes]:
    """IP packets: one real seed, restructured by a few mutations, maybe fragmented or tunneled."""
    ip = draw(st.sampled_from(IP_SEEDS))
    ops = ["v6", "options", "tcp", "v6ext", "flip", "udp-len", "icmp", "frag-field"]
    for op in draw(st.lists(st.sampled_from(ops), max_size=3)):
        if op == "v6":
            ip = to_ipv6(ip)
        elif op == "frag-field" and len(ip) >= 20 and ip[0] >> 4 == 4:  # any flags and offset, up to 65,528
            ip = ip[:6] + struct.pack("!H", draw(st.integers(0, 0xFFFF))) + ip[8:]
        elif op == "options":
            ip = ipv4_options(ip, draw(st.binary(min_size=1, max_size=40)))
        elif op == "tcp":
            ip = tcp_options(ip, draw(st.integers(0, 15)), draw(st.binary(max_size=44)))
        elif op == "v6ext":
            chain = draw(st.lists(st.tuples(st.sampled_from([0, 43, 60, 44, 51, 135, 139, 140]),
                                            st.integers(0, 4), st.binary(max_size=40)), min_size=1, max_size=4))
            ip = ipv6_extensions(ip, chain)
        elif op == "flip":
            ip = flip(ip, draw(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=6)))
        elif op == "udp-len" and len(ip) >= 28 and ip[0] >> 4 == 4 and ip[9] == 17:
            ihl = (ip[0] & 15) * 4
            ip = ip[:ihl + 4] + struct.pack("!H", draw(st.integers(0, 0xFFFF))) + ip[ihl + 6:]
        elif op == "icmp" and len(ip) >= 24 and ip[0] >> 4 == 4 and ip[9] == 1:
            ihl = (ip[0] & 15) * 4
            ip = ip[:ihl] + bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255))]) + ip[ihl + 2:]
    if draw(st.booleans()):
        ip = fix_checksums(ip)  # get past the checksum checks to the deeper code
    wrapper = draw(st.sampled_from(["none", "none", "none", "ipip", "gre", "gre-key", "gre-eth", "gre-pptp"]))
    if wrapper != "none":
        ip = tunnel(ip, wrapper)
    packets = [ip]
    if draw(st.integers(0, 3)) == 0:
        cuts = draw(st.lists(st.integers(0, 1600), max_size=6))
        order = draw(st.lists(st.integers(0, 10), min_size=1, max_size=10))
        packets = fragments(ip, cuts, order)
    cut = draw(st.none() | st.integers(0, 1600))
    if cut is not None:
        packets = [p[:cut] for p in packets]
    return packets


@st.composite
def traffic(draw) -> Tuple[int, List[Tuple[float, bytes]]]:
    """One link type and a timed list of frames: mutated real packets, random bytes, plain seeds."""
    link = draw(st.sampled_from(LINKS))
    frames: List[Tuple[float, bytes]] = []
    ts = 1_000_000.0
    linktype = wrap(link, b"\x45")[0]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "random", "seed"]))
        if kind == "random":
            body = [draw(st.binary(max_size=120))]
        elif kind == "seed":
            body = [draw(st.sampled_from(IP_SEEDS))]
        else:
            body = draw(mutated_packets())
        for ip in body:
            ts += draw(st.sampled_from([0.0, 1e-4, 0.5, 6.0, 70.0, 400.0, -5.0]))
            frame = ip if kind == "random" and draw(st.booleans()) else wrap(link, ip)[1]
            frames.append((ts, frame))
    return linktype, frames


def tcp_field(ip: bytes, field: str, value: int) -> bytes:
    """Set one TCP header field of an IPv4 or IPv6 packet (flags, seq, ack, window, offset)."""
    version = ip[0] >> 4 if ip else 0
    l4 = (ip[0] & 15) * 4 if version == 4 and len(ip) >= 20 else 40
    proto = ip[9] if version == 4 and len(ip) >= 20 else ip[6] if version == 6 and len(ip) >= 40 else None
    if proto != 6 or len(ip) < l4 + 20:
        return ip
    data = bytearray(ip)
    if field == "flags":
        data[l4 + 13] = value & 0xFF
    elif field == "seq":
        data[l4 + 4:l4 + 8] = struct.pack("!I", (struct.unpack_from("!I", data, l4 + 4)[0] + value) & 0xFFFFFFFF)
    elif field == "ack":
        data[l4 + 8:l4 + 12] = struct.pack("!I", (struct.unpack_from("!I", data, l4 + 8)[0] + value) & 0xFFFFFFFF)
    elif field == "window":
        data[l4 + 14:l4 + 16] = struct.pack("!H", value & 0xFFFF)
    else:
        data[l4 + 12] = ((value & 15) << 4) | (data[l4 + 12] & 15)
    return bytes(data)


@st.composite
def dialogues(draw) -> Tuple[int, List[Tuple[float, bytes]]]:
    """A run of consecutive real frames, lightly damaged: dropped, repeated, swapped, TCP fields
    changed (flags, sequence and ack numbers, zero windows, data offsets), time jumps, cuts."""
    run = draw(st.sampled_from(DIALOGUES))
    start = draw(st.integers(0, max(0, len(run) - 5)))
    window = run[start:start + draw(st.integers(5, 40))]
    link = draw(st.sampled_from(["ethernet", "ethernet", "vlan", "sll", "raw"]))
    out: List[Tuple[float, bytes]] = []
    shift = 0.0
    for ts, frame in window:
        op = draw(st.sampled_from(["keep"] * 6 + ["drop", "dup", "swap", "tcp", "tcp", "jump", "cut", "v6"]))
        if op == "drop":
            continue
        ip = frame[14:] if frame[12:14] in (b"\x08\x00", b"\x86\xdd") else frame
        if op == "tcp":
            field = draw(st.sampled_from(["flags", "seq", "ack", "window", "offset"]))
            value = draw(st.sampled_from([0, 1, -1, 2**31, 65535, 2**20]) | st.integers(0, 255))
            ip = tcp_field(ip, field, value)
            if draw(st.booleans()):
                ip = fix_checksums(ip)
        elif op == "v6":
            ip = to_ipv6(ip)
        elif op == "cut":
            ip = ip[:draw(st.integers(0, len(ip)))]
        elif op == "jump":
            shift += draw(st.sampled_from([5.5, 61.0, 301.0, 3600.0]))
        wrapped = wrap(link, ip)[1] if ip is not frame else (frame if link == "ethernet" else wrap(link, frame[14:])[1])
        item = (ts + shift, wrapped)
        if op == "swap" and out:
            out.insert(len(out) - 1, item)
        else:
            out.append(item)
        if op == "dup":
            out.append(item)
    if not out:
        out = [(window[0][0], window[0][1])]
        link = "ethernet"
    return wrap(link, b"\x45")[0], out


def _key(flow: FlowRecord) -> tuple:
    return (flow.ts, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p, flow.proto, flow.conn_state,
            flow.history, flow.orig_pkts, flow.resp_pkts, flow.orig_ip_bytes, flow.resp_ip_bytes, flow.orig_bytes)


def _run_packets(linktype: int, frames: List[Tuple[float, bytes]], verify: bool) -> Tuple[list, dict]:
    meter = FlowMeter(verify_checksums=verify, max_flows=50)
    flows: List[FlowRecord] = []
    for ts, frame in frames:
        flows += meter.add_packet(ts, frame, linktype)
        assert meter.stats["fragment_bytes"] <= DEFAULT_MAX_FRAGMENT_BYTES
    flows += meter.expire(frames[-1][0] + 30.0)
    flows += meter.flush()
    return flows, meter.stats


def _run_batch(linktype: int, frames: List[Tuple[float, bytes]]) -> Tuple[list, dict]:
    buf = b"".join(frame for _, frame in frames)
    refs, pos = [], 0
    for ts, frame in frames:
        refs.append((ts, pos, len(frame), len(frame)))
        pos += len(frame)
    meter = FlowMeter(max_flows=50)
    flows = meter.add_batch(buf, refs, linktype)
    flows += meter.expire(frames[-1][0] + 30.0)
    flows += meter.flush()
    return flows, meter.stats


def _check(linktype: int, frames: List[Tuple[float, bytes]]) -> None:
    try:
        checked, stats = _run_packets(linktype, frames, verify=True)
        unchecked, stats_u = _run_packets(linktype, frames, verify=False)
        batched, stats_b = _run_batch(linktype, frames)
    except EdgebotError:
        return  # the project's own errors are allowed (the meter raises none today)
    for flows, counters in ((checked, stats), (unchecked, stats_u), (batched, stats_b)):
        assert counters["packets"] == len(frames)
        assert counters["fragment_bytes"] == 0 and counters["fragments_pending"] == 0 and counters["active"] == 0
        assert all(isinstance(f, FlowRecord) and f.orig_pkts >= 0 and f.resp_pkts >= 0 for f in flows)
    # The batch path (numpy checksums) and the per-packet path see the same traffic.
    assert sorted(map(_key, batched)) == sorted(map(_key, checked))
    assert stats_b == stats


@fuzz_settings(500)
@given(traffic())
def test_mutated_and_random_frames_never_break_the_meter(case) -> None:
    linktype, frames = case
    _check(linktype, frames)


@fuzz_settings(200)
@given(st.sampled_from(LINKS), st.lists(st.binary(max_size=200), min_size=16, max_size=40))
def test_random_bytes_never_break_the_meter(link, blobs) -> None:
    """Batches of 16+ frames also take the numpy checksum path on Ethernet."""
    linktype = wrap(link, b"\x45")[0]
    frames = [(1.0 + i, wrap(link, blob)[1] if i % 2 else blob) for i, blob in enumerate(blobs)]
    _check(linktype, frames)


@fuzz_settings(150)
@given(st.lists(mutated_packets(), min_size=16, max_size=30), st.sampled_from(["ethernet", "vlan", "raw"]))
def test_batches_of_mutated_frames_agree_with_packet_by_packet(packets, link) -> None:
    linktype = wrap(link, b"\x45")[0]
    frames = [(1.0 + i * 0.01, wrap(link, ip)[1]) for i, group in enumerate(packets) for ip in group]
    _check(linktype, frames)


@fuzz_settings(400)
@given(dialogues())
def test_damaged_real_dialogues_never_break_the_meter(case) -> None:
    """Consecutive real packets reach the TCP state machine, the reassembler model and the timers."""
    linktype, frames = case
    _check(linktype, frames)


@pytest.mark.parametrize("link", LINKS)
def test_every_truncation_of_every_seed(link: str) -> None:
    """Each seed frame cut at every length, captured short (snaplen) or claimed short on the wire."""
    total = 0
    for ip in IP_SEEDS:
        linktype, frame = wrap(link, ip)
        meter = FlowMeter()
        for cut in range(len(frame) + 1):
            meter.add_packet(float(cut), frame[:cut], linktype, wirelen=len(frame))
            meter.add_packet(float(cut), frame[:cut], linktype)
            total += 2
        meter.flush()
        assert meter.stats["packets"] == 2 * (len(frame) + 1)
    assert total > 1000
