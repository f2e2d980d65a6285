"""Packets to bidirectional flows that match what Zeek writes in conn.log (pure Python, no libpcap).

The meter follows Zeek's own connection logic, ported from its C++ sources (``Sessions.cc``,
``Conn.cc``, ``analyzer/protocol/tcp``, ``udp``, ``icmp``, ``conn-size``, ``Reassem.cc``, and
``base/protocols/conn/main.zeek``), so that a pcap metered here and the conn.log Zeek wrote
for it agree flow by flow:

* the originator is the sender of the first packet, flipped by Zeek's ``likely_server_ports``
  heuristic when a TCP connection starts without a plain SYN or a UDP flow starts from a
  server port (history ``^``), and by the SYN/SYN-ACK reversal rule;
* TCP endpoint states, ``conn_state`` and ``history`` letters come from a port of Zeek's TCP
  state machine, including checksum (``C``), retransmission (``T``), zero-window (``W``) and
  content-gap (``G``) letters, the latter from a model of Zeek's reassembler;
* ``orig_pkts``/``orig_ip_bytes`` count what Zeek's ConnSize analyzer counts (packets with a
  bad checksum are not counted), ``orig_bytes`` come from TCP sequence numbers;
* flows end on Zeek's timers (inactivity 5 min TCP / 1 min UDP and ICMP, 5 s attempt delay,
  5 s close delay, the TCP expire timer), fired in packet time the way Zeek fires them, and
  on connection reuse (a new SYN on a closed or re-synchronised 5-tuple);
* IPv4 fragments are reassembled and the datagram counts once, and IP-in-IP and GRE
  packets are metered by their inner packet, as in Zeek.

Where Zeek versions differ, the meter follows Zeek 3.0, which wrote the IoT-23 logs: an exact
resend of the last segment is not a retransmission (``T``), and an originator RST with an
inactive responder is ``RSTOS0``.

Timers live in one heap: a packet costs one float comparison against the next due time, so
expiry is exact without scanning the flow table. The one shortcut: a TCP expire timer that
can do nothing until the flow's next packet is parked and re-armed on its 6 s cadence when
that packet comes (on quiet captures it would otherwise wake every 6 s for every flow).
Measured agreement and speed: ``benchmarks/bench_meter.py``.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import operator
import socket
import struct
from dataclasses import dataclass, fields
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from edgebot.flow import FlowRecord

from .fragments import (
    DEFAULT_FRAGMENT_TIMEOUT,
    DEFAULT_MAX_FRAGMENT_BYTES,
    DEFAULT_MAX_FRAGMENTED,
    DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM,
    FragmentReassembler,
)
from ..pcapfile import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_BSD,
    LINKTYPE_RAW_OPENBSD,
    PacketRef,
)

logger = logging.getLogger(__name__)

__all__ = ["ZeekTimeouts", "FlowMeter", "compare_with_zeek", "LIKELY_SERVER_PORTS"]


@dataclass(frozen=True)
class ZeekTimeouts:
    """Zeek's default connection timers, in seconds (``init-bare.zeek``)."""

    tcp_inactivity: float = 300.0  # tcp_inactivity_timeout, armed once the handshake is over
    udp_inactivity: float = 60.0  # udp_inactivity_timeout
    icmp_inactivity: float = 60.0  # icmp_inactivity_timeout
    tcp_attempt_delay: float = 5.0  # an unanswered SYN is reported (S0) after this
    tcp_close_delay: float = 5.0  # a closed connection is removed this long after its last packet
    tcp_syn_timeout: float = 5.0  # first run of the TCP expire timer after the first packet
    tcp_session_timer: float = 6.0  # the TCP expire timer's period
    tcp_connection_linger: float = 5.0  # idle time after which the expire timer may remove

    @classmethod
    def from_mapping(cls, values: Mapping[str, float] | None) -> "ZeekTimeouts":
        """Build from a mapping of overrides; unknown keys raise ``ValueError``."""
        if not values:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown timeout(s) {unknown}; known: {sorted(known)}")
        bad = {k: v for k, v in values.items() if not isinstance(v, (int, float)) or v < 0}
        if bad:
            raise ValueError(f"timeouts must be non-negative numbers of seconds, got {bad}")
        return cls(**{k: float(v) for k, v in values.items()})


# Zeek's likely_server_ports as the default scripts of Zeek 3.0 populate it (each protocol
# script adds its registered ports). Used only to guess the originator of connections
# that start mid-stream.
_LIKELY_TCP = frozenset({
    21, 22, 25, 80, 81, 88, 135, 139, 143, 443, 445, 502, 563, 585, 587, 614, 631, 636, 750,
    989, 990, 992, 993, 995, 1080, 1434, 2811, 3128, 3306, 3389, 5222, 5223, 5269, 6666, 6667,
    6668, 6669, 8000, 8080, 8888, 20000, 53,
})
_LIKELY_UDP = frozenset({
    53, 67, 88, 123, 137, 161, 162, 443, 514, 750, 1812, 2123, 2152, 3544, 4789, 5060, 5072,
    5353, 5355, 20000,
})
LIKELY_SERVER_PORTS = {"tcp": _LIKELY_TCP, "udp": _LIKELY_UDP}

# TCP endpoint states (Zeek's EndpointState).
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
_HANDSHAKE = (INACTIVE, SYN_SENT, SYN_ACK_SENT)

# TCP flags.
_FIN, _SYN, _RST, _PSH, _ACK, _URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# History masks (TCP_Endpoint::HistoryMasks; the responder's are shifted left by 16).
_H_SYN, _H_FIN, _H_RST, _H_FIN_RST, _H_DATA, _H_ACK, _H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
# UDP's (Conn.h): HIST_ORIG_DATA_PKT / HIST_RESP_DATA_PKT.
_H_ORIG_DATA, _H_RESP_DATA = 0x1, 0x2

# Timer kinds.
_T_INACTIVITY, _T_ATTEMPT, _T_EXPIRE, _T_DELETE = range(4)

_M32 = 0xFFFFFFFF
_TOO_LARGE_SEQ_DELTA = 1048576
_MAX_INITIAL_WINDOW = 16384  # tcp_max_initial_window
_MAX_ABOVE_HOLE_WITHOUT_ACKS = 16384  # tcp_max_above_hole_without_any_acks
_EXCESSIVE_DATA_WITHOUT_ACKS = 10 * 1024 * 1024  # tcp_excessive_data_without_further_acks

# ICMP type -> counterpart type for two-way messages (Zeek's ICMP4_counterpart / ICMP6_counterpart).
_ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_COUNTERPART = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131,
                      131: 130, 139: 140, 140: 139, 144: 145, 145: 144}

# IPv6 extension headers Zeek walks to find the transport protocol.
_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140})
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_TUNNEL_PROTOS = frozenset({4, 41, 47})  # IPv4 in IP, IPv6 in IP, GRE
_TIMER_SLACK = 10_000  # timers of ended flows tolerated before the heap is compacted

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}

_TCP_HDR = struct.Struct("!IIBBH")  # seq, ack, data offset, flags, window (from byte 4)


def _seq_delta(a: int, b: int) -> int:
    """Signed 32-bit difference ``a - b`` (Zeek's ``seq_delta``)."""
    return ((a - b + 0x80000000) & _M32) - 0x80000000


class _Endpoint:
    """One side of a TCP connection (Zeek's ``TCP_Endpoint`` plus its reassembler)."""

    __slots__ = (
        "is_orig", "state", "prev_state", "peer", "start_seq", "last_seq", "ack_seq", "seq_wraps",
        "ack_wraps", "fin_cnt", "rst_cnt", "fin_seq", "did_close", "hist_last_syn",
        "hist_last_fin", "hist_last_rst", "chk_cnt", "chk_thresh", "rxmt_cnt", "rxmt_thresh",
        "win0_cnt", "win0_thresh", "gap_cnt", "gap_thresh", "last_time",
        # reassembler: delivered point, trim point, merged [seq, upper) runs above the trim
        # point (delivered but unacked, or waiting above a hole), skip flag, EOF reported
        "r_last", "r_trim", "r_runs", "r_skip", "r_eof",
    )

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = self.prev_state = INACTIVE
        self.peer: _Endpoint = self
        self.start_seq = self.last_seq = self.ack_seq = 0
        self.seq_wraps = self.ack_wraps = 0
        self.fin_cnt = self.rst_cnt = 0
        self.fin_seq = 0
        self.did_close = False
        self.hist_last_syn = self.hist_last_fin = self.hist_last_rst = 0
        self.chk_cnt = self.rxmt_cnt = self.win0_cnt = self.gap_cnt = 0
        self.chk_thresh = self.rxmt_thresh = self.win0_thresh = self.gap_thresh = 1
        self.last_time = 0.0
        self.r_last = self.r_trim = 1
        self.r_runs: List[List[int]] = []
        self.r_skip = False
        self.r_eof = False

    def no_data_acked(self) -> bool:
        ack = (self.ack_wraps << 32) + self.ack_seq
        return ack == self.start_seq or ack == self.start_seq + 1

    def size(self) -> int:
        """Payload bytes from sequence numbers (``TCP_Endpoint::Size``)."""
        if (self.prev_state == SYN_SENT and self.state == RESET
                and self.peer.state == INACTIVE and not self.no_data_acked()):
            return 0
        last64 = (self.seq_wraps << 32) + self.last_seq
        ack64 = (self.ack_wraps << 32) + self.ack_seq
        size = ((last64 if last64 > ack64 else ack64) - self.start_seq) & 0xFFFFFFFFFFFFFFFF
        if size:
            size -= 1
        if self.fin_cnt > 0 and size:
            size -= 1
        return size


class _Flow:
    """Per-connection state (Zeek's ``Connection`` with its transport analyzer)."""

    __slots__ = (
        "proto", "okey", "rkey", "table", "orig_addr", "resp_addr", "orig_port", "resp_port",
        "start", "last_time", "history", "hist_seen", "orig_pkts", "orig_ip_bytes", "resp_pkts",
        "resp_ip_bytes", "inactivity", "timer_epoch", "removed", "missed_bytes",
        # UDP / ICMP
        "req_len", "rep_len", "req_chk_cnt", "req_chk_thresh", "rep_chk_cnt", "rep_chk_thresh",
        # TCP
        "orig", "resp", "is_active", "is_partial", "first_seen", "close_deferred", "deferred_gen_event",
        "parked",
    )

    def __init__(self, proto: int, okey: bytes, rkey: bytes, table: Dict[bytes, tuple],
                 src: bytes, dst: bytes, sport: int, dport: int, ts: float) -> None:
        self.proto = proto
        self.okey = okey
        self.rkey = rkey
        self.table = table
        self.orig_addr = src
        self.resp_addr = dst
        self.orig_port = sport
        self.resp_port = dport
        self.start = self.last_time = ts
        self.history = ""
        self.hist_seen = 0
        self.orig_pkts = self.orig_ip_bytes = self.resp_pkts = self.resp_ip_bytes = 0
        self.inactivity = 0.0
        self.timer_epoch = 0
        self.removed = False
        self.missed_bytes = 0
        self.req_len = self.rep_len = -1
        self.req_chk_cnt = self.rep_chk_cnt = 0
        self.req_chk_thresh = self.rep_chk_thresh = 1
        self.orig: Optional[_Endpoint] = None
        self.resp: Optional[_Endpoint] = None
        self.is_active = True
        self.is_partial = False
        self.first_seen = 0
        self.close_deferred = False
        self.deferred_gen_event = False
        self.parked: Optional[List[float]] = None  # phases of parked TCP expire timers

    # -- history (Conn.h / Conn.cc) --------------------------------------------------------

    def check_history(self, mask: int, code: str) -> bool:
        """Add ``code`` the first time ``mask`` is seen; True if it had been seen before."""
        if self.hist_seen & mask:
            return True
        self.hist_seen |= mask
        self.history += code
        return False

    def scaled_history(self, code: str, counter: int, threshold: int) -> Tuple[int, int]:
        """Zeek's ``ScaledHistoryEntry``: add ``code`` at 1, 10, 100, ... occurrences."""
        counter += 1
        if counter == threshold:
            self.history += code
            threshold *= 10
        return counter, threshold


class FlowMeter:
    """Turn packets into completed bidirectional flows, the way Zeek's conn.log sees them.

    Parameters
    ----------
    max_flows : int
        Hard cap on active flows. When a new flow would exceed it, the flows idle longest
        are ended early (emitted as they are) and counted in ``stats["flows_evicted"]``.
    timeouts : ZeekTimeouts or mapping, optional
        Overrides of Zeek's default timers, e.g. ``{"udp_inactivity": 30}``.
    verify_checksums : bool
        Check IP, TCP, UDP and ICMP checksums as Zeek does: a bad IP checksum drops the
        packet, a bad TCP/UDP one gives the history letter ``C``/``c`` and the packet is not
        counted. Turn off for captures taken on a host with checksum offload (Zeek's ``-C``).
    source : str
        Written into every record's ``source`` field (e.g. the pcap file name).
    max_fragment_bytes : int
        Bytes held for IPv4 datagrams being reassembled, all together (default 4 MiB); the
        oldest datagrams are evicted past it (``stats["fragments_evicted"]``).
    max_fragmented : int
        Datagrams being reassembled at once (default 1,000; the oldest is evicted).
    max_fragments_per_datagram : int
        Fragments one datagram may come in, duplicates and overlaps included (default 128);
        beyond it the datagram is dropped (``stats["fragments_too_many"]``).
    fragment_timeout : float
        Seconds after its first fragment an incomplete datagram is dropped (default 60,
        ``stats["fragments_timed_out"]``). A datagram that would reassemble past 65,535
        bytes is dropped at once (``stats["fragments_oversized"]``). See
        :class:`~edgebot.edge.meter.fragments.FragmentReassembler`.

    Notes
    -----
    Feed packets in capture order with :meth:`add_packet` or :meth:`add_batch`; both return
    the flows that completed. Call :meth:`expire` with wall-clock time when no packets
    arrive (live capture) and :meth:`flush` at the end of the input.
    """

    #: Use the specialised path for established ACK/data packets (tests turn it off to
    #: check that it changes nothing).
    _fast_path = True

    def __init__(
        self,
        max_flows: int = 20_000,
        timeouts: ZeekTimeouts | Mapping[str, float] | None = None,
        verify_checksums: bool = True,
        source: str = "",
        max_fragment_bytes: int = DEFAULT_MAX_FRAGMENT_BYTES,
        max_fragmented: int = DEFAULT_MAX_FRAGMENTED,
        max_fragments_per_datagram: int = DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM,
        fragment_timeout: float = DEFAULT_FRAGMENT_TIMEOUT,
    ) -> None:
        if not isinstance(max_flows, int) or max_flows < 1:
            raise ValueError(f"max_flows must be a positive integer, got {max_flows!r}")
        self.max_flows = max_flows
        self.timeouts = timeouts if isinstance(timeouts, ZeekTimeouts) else ZeekTimeouts.from_mapping(timeouts)
        self.verify_checksums = bool(verify_checksums)
        self.source = source
        self._tcp: Dict[bytes, tuple] = {}
        self._udp: Dict[bytes, tuple] = {}
        self._icmp: Dict[bytes, tuple] = {}
        self._active = 0
        self._timers: List[tuple] = []
        self._timer_seq = 0
        self._in_timers = False
        self._next_due = float("inf")
        self._now = 0.0
        self._done: List[FlowRecord] = []
        # statistics
        self._packets = 0
        self._bytes = 0
        self._non_ip = 0
        self._truncated = 0
        self._bad_ip = 0
        self._other_proto = 0
        self._fragments = 0
        self._reassembled = 0
        self._tunneled = 0
        self._tunnel_depth = 0
        self._reassembler = FragmentReassembler(max_fragment_bytes, max_fragmented, max_fragments_per_datagram,
                                                fragment_timeout)
        self._emitted = 0
        self._evicted = 0
        self._addr_names: Dict[bytes, str] = {}  # at most _ADDR_CACHE_MAX, then cleared
        self._addr_cache_clears = 0

    # -- public API ------------------------------------------------------------------------

    @property
    def stats(self) -> Dict[str, int]:
        """Counters: packets, bytes, non_ip, truncated, bad_ip, other_proto, fragments
        (IPv4 fragments seen; IPv6 fragments are counted and dropped), reassembled
        (datagrams rebuilt from them), fragments_dropped (incomplete datagrams given up, the
        sum of fragments_evicted, fragments_oversized, fragments_too_many and
        fragments_timed_out), fragments_pending and fragment_bytes (held now),
        fragment_bytes_peak, tunneled (IP-in-IP and GRE packets metered by their inner
        packet), flows_emitted, flows_evicted, active, addr_cache_clears (the memo of address
        texts holds 8,192 addresses and starts over when full)."""
        return {
            "packets": self._packets,
            "bytes": self._bytes,
            "non_ip": self._non_ip,
            "truncated": self._truncated,
            "bad_ip": self._bad_ip,
            "other_proto": self._other_proto,
            "fragments": self._fragments,
            "reassembled": self._reassembled,
            **self._reassembler.stats,
            "tunneled": self._tunneled,
            "flows_emitted": self._emitted,
            "flows_evicted": self._evicted,
            "active": self._active,
            "addr_cache_clears": self._addr_cache_clears,
        }

    @property
    def active_flows(self) -> int:
        """Number of flows currently tracked."""
        return self._active

    def add_packet(self, ts: float, frame: bytes, linktype: int = LINKTYPE_ETHERNET,
                   wirelen: Optional[int] = None, verify_checksums: Optional[bool] = None) -> List[FlowRecord]:
        """Meter one captured frame; return the flows that completed.

        Parameters
        ----------
        ts : float
            Capture time, seconds since the epoch.
        frame : bytes
            The frame as captured, starting with the link-layer header of ``linktype``.
        linktype : int
            pcap link type of ``frame`` (1 Ethernet, 113 Linux SLL, 101 raw IP, ...).
        wirelen : int, optional
            Length on the wire when the capture was cut by a snap length.
        verify_checksums : bool, optional
            Override the meter's setting for this frame, e.g. False for a frame the kernel
            has not checksummed yet (outgoing packets with checksum offload).
        """
        size = len(frame)
        packets = [(ts, 0, size, size if wirelen is None else wirelen)]
        if verify_checksums is None or verify_checksums == self.verify_checksums:
            self._ingest(frame, packets, linktype)
        else:
            saved, self.verify_checksums = self.verify_checksums, verify_checksums
            try:
                self._ingest(frame, packets, linktype)
            finally:
                self.verify_checksums = saved
        return self._take_done()

    def add_batch(self, buf: bytes, packets: Sequence[PacketRef],
                  linktype: int = LINKTYPE_ETHERNET) -> List[FlowRecord]:
        """Meter a batch of frames that live in one buffer (see ``PcapReader.batches``).

        Parameters
        ----------
        buf : bytes
            Buffer holding the frames.
        packets : sequence of (ts, offset, caplen, wirelen)
            Where each frame lies in ``buf``, in capture order.
        linktype : int
            pcap link type of the frames.
        """
        self._ingest(buf, packets, linktype)
        return self._take_done()

    def expire(self, now: float) -> List[FlowRecord]:
        """Advance time to ``now`` (e.g. wall clock while the link is idle); return ended flows."""
        if now > self._now:
            self._now = now
        if now >= self._next_due:
            self._run_timers(now)
        elif self._reassembler.pending:
            self._reassembler.expire(now)
        return self._take_done()

    def flush(self) -> List[FlowRecord]:
        """End every active flow (end of input); return them in start-time order."""
        seen = set()
        remaining = []
        for table in (self._tcp, self._udp, self._icmp):
            for flow, _is_orig in table.values():
                if id(flow) not in seen:
                    seen.add(id(flow))
                    remaining.append(flow)
        remaining.sort(key=lambda f: f.start)
        for flow in remaining:
            self._remove(flow)
        self._timers.clear()
        self._reassembler.clear()
        self._next_due = float("inf")
        return self._take_done()

    def _take_done(self) -> List[FlowRecord]:
        done = self._done
        if not done:
            return []  # never hand out the meter's own list: later flows would appear in it
        self._done = []
        return done

    # -- packet decoding -------------------------------------------------------------------

    def _ingest(self, buf: bytes, packets: Sequence[PacketRef], linktype: int) -> None:
        """Decode each frame down to its transport header and hand it to its flow."""
        tcp_packet = self._tcp_packet
        udp_packet = self._udp_packet
        icmp_packet = self._icmp_packet
        locate = _locate_l3
        verify = self.verify_checksums
        from_bytes = int.from_bytes
        verdicts: Iterable[int] = itertools.repeat(_UNCHECKED)
        if verify and linktype == LINKTYPE_ETHERNET and len(packets) >= _BATCH_CHECKSUM_MIN:
            verdicts = _batch_verdicts(buf, packets)
        npackets = nbytes = 0
        try:
            for (ts, off, cap, wire), verdict in zip(packets, verdicts):
                npackets += 1
                nbytes += wire
                if ts > self._now:  # network time never goes back
                    self._now = ts
                if self._now >= self._next_due:
                    self._run_timers(self._now)
                # Link layer: Ethernet + IPv4 inline, everything else in _locate_l3.
                if linktype == 1 and cap >= 34 and buf[off + 12] == 8 and buf[off + 13] == 0:
                    l3 = off + 14
                    version = 4
                else:
                    l3, version = locate(buf, off, cap, linktype)
                    if version == 0:
                        self._non_ip += 1
                        continue
                    if version == 6:
                        self._ipv6_packet(buf, off, cap, wire, l3, ts)
                        continue
                hdr = off - l3  # negative link header length
                ip_cap = cap + hdr
                if ip_cap < 20 or buf[l3] >> 4 != 4:
                    self._truncated += 1
                    continue
                ihl = (buf[l3] & 15) << 2
                total = (buf[l3 + 2] << 8) | buf[l3 + 3]
                if total == 0:  # TCP segmentation offload zeroes ip_len
                    total = ip_cap
                if wire + hdr < total or ihl < 20 or ihl > total or ihl > ip_cap:
                    self._truncated += 1
                    continue
                if verdict == _UNCHECKED:
                    if verify and from_bytes(buf[l3:l3 + ihl], "big") % 65535:
                        self._bad_ip += 1
                        continue
                    l4_ok = None
                elif verdict == _BAD_IP:
                    self._bad_ip += 1
                    continue
                else:
                    l4_ok = verdict == _GOOD
                if (buf[l3 + 6] & 0x3F) or buf[l3 + 7]:
                    self._fragments += 1
                    if ip_cap >= total:
                        self._ipv4_fragment(buf, l3, ihl, total, ts)
                        continue
                    if (buf[l3 + 6] & 0x1F) or buf[l3 + 7]:
                        continue  # Zeek keeps only the first of incompletely captured fragments
                proto = buf[l3 + 9]
                l4 = l3 + ihl
                plen = total - ihl
                pcap = ip_cap - ihl
                if proto == 6:
                    if plen < 20 or pcap < 20:
                        self._truncated += 1
                        continue
                    tcp_packet(buf, l3, l4, plen, pcap, total, ts, False, l4_ok)
                elif proto == 17:
                    if plen < 8 or pcap < 8:
                        self._truncated += 1
                        continue
                    udp_packet(buf, l3, l4, plen, pcap, total, ts, False, l4_ok)
                elif proto == 1:
                    if plen < 8 or pcap < 8:
                        self._truncated += 1
                        continue
                    icmp_packet(buf, l3, l4, plen, pcap, total, ts, False, l4_ok)
                elif proto in _TUNNEL_PROTOS:
                    self._tunnel(buf, proto, l4, plen, pcap, ts)
                else:
                    self._other_proto += 1
        finally:
            self._packets += npackets
            self._bytes += nbytes

    def _ipv4_fragment(self, buf: bytes, l3: int, ihl: int, total: int, ts: float) -> None:
        """Collect an IPv4 fragment; meter the datagram once it is complete (Zeek's FragReassembler).

        The reassembled datagram counts as one packet of its full length, like in Zeek.
        Memory and drops: :class:`~edgebot.edge.meter.fragments.FragmentReassembler`.
        """
        datagram = self._reassembler.add(buf, l3, ihl, total, ts)
        if datagram is None:
            return
        self._reassembled += 1
        counted = self._packets, self._bytes
        self._ingest(datagram, [(ts, 0, len(datagram), len(datagram))], LINKTYPE_IPV4)
        self._packets, self._bytes = counted  # the fragments were counted as they came

    def _ipv6_packet(self, buf: bytes, off: int, cap: int, wire: int, l3: int, ts: float) -> None:
        """Walk IPv6 extension headers and hand the packet to its transport handler."""
        hdr = off - l3
        ip_cap = cap + hdr
        if ip_cap < 40 or buf[l3] >> 4 != 6:
            self._truncated += 1
            return
        total = ((buf[l3 + 4] << 8) | buf[l3 + 5]) + 40
        if wire + hdr < total:
            self._truncated += 1
            return
        nxt = buf[l3 + 6]
        l4 = l3 + 40
        end = off + cap
        while nxt in _IPV6_EXT or nxt == _IPV6_FRAGMENT or nxt == _IPV6_AH:
            if l4 + 8 > end:
                self._truncated += 1
                return
            if nxt == _IPV6_FRAGMENT:
                frag = ((buf[l4 + 2] << 8) | buf[l4 + 3])
                if frag & 0xFFF9:  # offset or more-fragments set: a real fragment
                    self._fragments += 1
                    return
                nxt, l4 = buf[l4], l4 + 8  # atomic fragment
            elif nxt == _IPV6_AH:
                nxt, l4 = buf[l4], l4 + (buf[l4 + 1] + 2) * 4
            else:
                nxt, l4 = buf[l4], l4 + (buf[l4 + 1] + 1) * 8
        plen = total - (l4 - l3)
        pcap = end - l4
        if plen < 0:
            self._truncated += 1
            return
        if nxt == 6:
            if plen < 20 or pcap < 20:
                self._truncated += 1
                return
            self._tcp_packet(buf, l3, l4, plen, pcap, total, ts, True, None)
        elif nxt == 17:
            if plen < 8 or pcap < 8:
                self._truncated += 1
                return
            self._udp_packet(buf, l3, l4, plen, pcap, total, ts, True, None)
        elif nxt == 58:
            if plen < 8 or pcap < 8:
                self._truncated += 1
                return
            self._icmp_packet(buf, l3, l4, plen, pcap, total, ts, True, None)
        elif nxt in _TUNNEL_PROTOS:
            self._tunnel(buf, nxt, l4, plen, pcap, ts)
        else:
            self._other_proto += 1

    def _tunnel(self, buf: bytes, proto: int, start: int, length: int, captured: int, ts: float) -> None:
        """Decapsulate IP-in-IP and GRE like Zeek (``Tunnel::enable_ip``/``enable_gre``) and
        meter the inner packet; the outer one makes no flow. Mirai's GRE floods are seen
        this way. Zeek drops inner packets whose length disagrees with the outer one, and
        stops at ``Tunnel::max_depth`` (2) levels.
        """
        if self._tunnel_depth >= 2 or captured < length:
            self._other_proto += 1
            return
        inner = start
        if proto == 47:  # GRE
            if length < 4:
                self._truncated += 1
                return
            flags = (buf[start] << 8) | buf[start + 1]
            ptype = (buf[start + 2] << 8) | buf[start + 3]
            version = flags & 7
            gre_len = 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000) + bool(flags & 0x0080))
            if flags & 0x4000 or flags & 0x0078 or version > 1:
                self._other_proto += 1
                return
            if version == 0:
                eth_len = 0
                if ptype == 0x6558:  # transparent Ethernet bridging (Mirai greeth)
                    if length <= gre_len + 14:
                        self._truncated += 1
                        return
                    eth_len = 14
                    ptype = (buf[start + gre_len + 12] << 8) | buf[start + gre_len + 13]
                if ptype not in (0x0800, 0x86DD):
                    self._other_proto += 1
                    return
                inner = start + gre_len + eth_len
            else:  # enhanced GRE (PPTP) carrying PPP
                if ptype != 0x880B or length < gre_len + 4:
                    self._other_proto += 1
                    return
                ppp = (buf[start + gre_len + 2] << 8) | buf[start + gre_len + 3]
                if ppp not in (0x0021, 0x0057):
                    self._other_proto += 1
                    return
                inner = start + gre_len + 4
        end = start + length
        if inner + 20 > end:
            self._truncated += 1
            return
        version = buf[inner] >> 4
        if version == 4:
            inner_len = (buf[inner + 2] << 8) | buf[inner + 3]
        elif version == 6 and inner + 40 <= end:
            inner_len = ((buf[inner + 4] << 8) | buf[inner + 5]) + 40
        else:
            self._other_proto += 1
            return
        if inner_len != end - inner:  # inner_IP_payload_length_mismatch
            self._truncated += 1
            return
        self._tunneled += 1
        counted = self._packets, self._bytes
        self._tunnel_depth += 1
        try:
            self._ingest(buf[inner:end], [(ts, 0, inner_len, inner_len)], LINKTYPE_RAW)
        finally:
            self._tunnel_depth -= 1
            self._packets, self._bytes = counted  # the outer packet was counted already

    def _l4_checksum_ok(self, buf: bytes, l3: int, l4: int, plen: int, proto: int, v6: bool) -> bool:
        """Ones'-complement check of a TCP/UDP/ICMPv6 segment with its pseudo-header.

        Summing 16-bit words modulo 0xFFFF equals reading the bytes as one big integer
        modulo 0xFFFF (65536 is 1 modulo 65535), which CPython does in C.
        """
        from_bytes = int.from_bytes
        if v6:
            pseudo = from_bytes(buf[l3 + 8:l3 + 40], "big")
        elif l4 == l3 + 20:  # addresses directly followed by the segment: one conversion
            s = from_bytes(buf[l3 + 12:l4 + plen], "big")
            if plen & 1:
                s <<= 8
            return (s + proto + plen) % 65535 == 0
        else:
            pseudo = from_bytes(buf[l3 + 12:l3 + 20], "big")
        s = from_bytes(buf[l4:l4 + plen], "big")
        if plen & 1:
            s <<= 8
        return (pseudo + s + proto + plen) % 65535 == 0

    # -- flow table ------------------------------------------------------------------------

    def _new_flow(self, proto: int, table: Dict[bytes, tuple], key: bytes, rkey: bytes,
                  src: bytes, dst: bytes, sport: int, dport: int, ts: float) -> _Flow:
        if self._active >= self.max_flows:
            self._evict()
        flow = _Flow(proto, key, rkey, table, src, dst, sport, dport, ts)
        table[key] = (flow, True)
        if rkey != key:
            table[rkey] = (flow, False)
        self._active += 1
        return flow

    def _evict(self) -> None:
        """End the longest-idle flows to get back under ``max_flows`` (5% at a time, so the
        scan of the table is paid once per many new flows)."""
        flows = {id(f): f for table in (self._tcp, self._udp, self._icmp) for f, _ in table.values()}
        count = max(1, self.max_flows // 20)
        for flow in heapq.nsmallest(count, flows.values(), key=lambda f: f.last_time):
            self._evicted += 1
            self._remove(flow)

    def _flip_roles(self, flow: _Flow) -> None:
        """Swap originator and responder (``Connection::FlipRoles``), history ``^``."""
        flow.orig_addr, flow.resp_addr = flow.resp_addr, flow.orig_addr
        flow.orig_port, flow.resp_port = flow.resp_port, flow.orig_port
        flow.okey, flow.rkey = flow.rkey, flow.okey
        table = flow.table
        table[flow.okey] = (flow, True)
        if flow.rkey != flow.okey:
            table[flow.rkey] = (flow, False)
        if flow.orig is not None:  # TCP_Analyzer::FlipRoles; ConnSize counters stay put
            flow.orig, flow.resp = flow.resp, flow.orig
            flow.orig.is_orig = not flow.orig.is_orig
            flow.resp.is_orig = not flow.resp.is_orig
        flow.history += "^"

    def _remove(self, flow: _Flow) -> None:
        """Forget a flow and emit its record (Zeek logs at ``connection_state_remove``)."""
        if flow.removed:
            return
        flow.removed = True
        table = flow.table
        table.pop(flow.okey, None)
        table.pop(flow.rkey, None)
        self._active -= 1
        self._emitted += 1
        self._done.append(self._record(flow))
        if flow.orig is not None:  # break the endpoints' cycle: the flow is freed without the cyclic GC
            flow.orig.peer = flow.resp.peer = None  # type: ignore[assignment]
        if len(self._timers) > 4 * self._active + _TIMER_SLACK and not self._in_timers:
            self._compact_timers()

    def _compact_timers(self) -> None:
        """Drop timers of flows already gone, so ended flows do not stay in memory for the
        rest of their (up to 5 min) timeouts."""
        self._timers = [t for t in self._timers if not t[2].removed]
        heapq.heapify(self._timers)
        self._next_due = self._timers[0][0] if self._timers else float("inf")

    def _record(self, flow: _Flow) -> FlowRecord:
        duration = flow.last_time - flow.start
        if duration < 0:
            duration = 0.0
        proto = flow.proto
        if proto == 6:
            orig, resp = flow.orig, flow.resp
            state = _tcp_conn_state(orig.state, resp.state, orig, resp)
            orig_bytes = orig.size() if duration > 0 else 0
            resp_bytes = resp.size() if duration > 0 else 0
        else:
            if proto == 17:
                o_active, r_active = flow.req_len >= 0, flow.rep_len >= 0
                state = ("SF" if r_active else "S0") if o_active else ("SHR" if r_active else "OTH")
            else:
                state = "OTH"
            orig_bytes = max(flow.req_len, 0) if duration > 0 else 0
            resp_bytes = max(flow.rep_len, 0) if duration > 0 else 0
        names = self._addr_names
        orig_h = names.get(flow.orig_addr)
        if orig_h is None:
            orig_h = self._addr_name(flow.orig_addr)
        resp_h = names.get(flow.resp_addr)
        if resp_h is None:
            resp_h = self._addr_name(flow.resp_addr)
        # positional: ~2 us less per flow than keywords (the order is checked at import, _RECORD_ORDER)
        return FlowRecord(
            flow.start, orig_h, flow.orig_port, resp_h, flow.resp_port, _PROTO_NAMES[proto], duration,
            orig_bytes, resp_bytes, state, flow.missed_bytes, flow.history, flow.orig_pkts,
            flow.orig_ip_bytes, flow.resp_pkts, flow.resp_ip_bytes, "", _uid(flow), None, None, None, None,
            self.source,
        )

    def _addr_name(self, addr: bytes) -> str:
        """Text form of a packed address, memoized (a gateway sees few distinct hosts; bounded)."""
        name = socket.inet_ntop(socket.AF_INET6 if len(addr) == 16 else socket.AF_INET, addr)
        names = self._addr_names
        if len(names) >= _ADDR_CACHE_MAX:
            names.clear()
            self._addr_cache_clears += 1
        names[addr] = name
        return name

    # -- timers (Zeek fires due timers before each packet, with t = the packet's time) ------

    def _add_timer(self, when: float, flow: _Flow, kind: int) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, flow, kind, flow.timer_epoch))
        if when < self._next_due:
            self._next_due = when

    def _set_inactivity(self, flow: _Flow, timeout: float) -> None:
        """``Connection::SetInactivityTimeout`` (the inactivity timer is a connection timer)."""
        if timeout == flow.inactivity:
            return
        flow.inactivity = timeout
        if timeout:
            self._timer_seq += 1
            when = flow.last_time + timeout
            heapq.heappush(self._timers, (when, self._timer_seq, flow, _T_INACTIVITY, -1))
            if when < self._next_due:
                self._next_due = when

    def _run_timers(self, now: float) -> None:
        if self._reassembler.pending:
            self._reassembler.expire(now)
        self._in_timers = True
        try:
            self._fire_timers(now)
        finally:
            self._in_timers = False
        if len(self._timers) > 4 * self._active + _TIMER_SLACK:
            self._compact_timers()

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        timeouts = self.timeouts
        while timers and timers[0][0] <= now:
            _when, _seq, flow, kind, epoch = heapq.heappop(timers)
            if flow.removed:
                continue
            if kind == _T_INACTIVITY:
                # Connection::InactivityTimer
                due = flow.last_time + flow.inactivity
                if due <= now:
                    self._remove(flow)
                else:
                    self._timer_seq += 1
                    heapq.heappush(timers, (due, self._timer_seq, flow, _T_INACTIVITY, -1))
                continue
            if epoch != flow.timer_epoch:  # cancelled by TCP_Analyzer::CancelTimers
                continue
            if kind == _T_DELETE:
                self._remove(flow)
            elif kind == _T_ATTEMPT:
                if flow.is_active and flow.orig.state in (SYN_SENT, SYN_ACK_SENT) and flow.resp.state == INACTIVE:
                    flow.is_active = False
                    self._remove(flow)
            elif kind == _T_EXPIRE:
                self._tcp_expire_timer(flow, now, timeouts)
        self._next_due = timers[0][0] if timers else float("inf")

    def _tcp_expire_timer(self, flow: _Flow, now: float, timeouts: ZeekTimeouts) -> None:
        """``TCP_Analyzer::ExpireTimer``."""
        if not flow.is_active:
            return
        orig, resp = flow.orig, flow.resp
        closing = (orig.did_close or resp.did_close) and (
            (orig.did_close and resp.did_close) or orig.state == RESET or resp.state == RESET
            or orig.state == INACTIVE or resp.state == INACTIVE)
        idle = resp.state == INACTIVE and orig.state == INACTIVE
        if flow.last_time + timeouts.tcp_connection_linger < now:
            if closing:
                flow.is_active = False
                self._remove(flow)
                return
            if idle:
                self._remove(flow)
                return
        if closing or idle:
            self._add_timer(now + timeouts.tcp_session_timer, flow, _T_EXPIRE)
        else:
            # Nothing this timer checks can change before the flow's next packet, so instead
            # of waking every 6 s (most of the work on long, quiet captures) the chain is
            # parked with its phase and re-armed in step when the next packet arrives.
            if flow.parked is None:
                flow.parked = [now]
            else:
                flow.parked.append(now)

    def _unpark(self, flow: _Flow, now: float) -> None:
        """Re-arm parked expire timers at the next time of their 6 s cadence after ``now``."""
        period = self.timeouts.tcp_session_timer
        for phase in flow.parked:
            due = phase + period * (int((now - phase) // period) + 1) if period > 0 else now
            self._add_timer(due, flow, _T_EXPIRE)
        flow.parked = None

    # -- UDP and ICMP ----------------------------------------------------------------------

    def _udp_packet(self, buf: bytes, l3: int, l4: int, plen: int, pcap: int, ip_len: int,
                    ts: float, v6: bool, l4_ok: Optional[bool]) -> None:
        if v6:
            src, dst = buf[l3 + 8:l3 + 24], buf[l3 + 24:l3 + 40]
            key = src + dst + buf[l4:l4 + 4]
        else:
            key = buf[l3 + 12:l3 + 20] + buf[l4:l4 + 4]
        entry = self._udp.get(key)
        if entry is None:
            sport = (buf[l4] << 8) | buf[l4 + 1]
            dport = (buf[l4 + 2] << 8) | buf[l4 + 3]
            if not v6:
                src, dst = buf[l3 + 12:l3 + 16], buf[l3 + 16:l3 + 20]
            rkey = dst + src + buf[l4 + 2:l4 + 4] + buf[l4:l4 + 2]
            flow = self._new_flow(17, self._udp, key, rkey, src, dst, sport, dport, ts)
            if sport in _LIKELY_UDP and dport not in _LIKELY_UDP:
                self._flip_roles(flow)
                is_orig = False
            else:
                is_orig = True
            self._set_inactivity(flow, self.timeouts.udp_inactivity)
        else:
            flow, is_orig = entry
        if l4_ok is None:
            l4_ok = (not self.verify_checksums or pcap < plen or not (v6 or buf[l4 + 6] or buf[l4 + 7])
                     or self._l4_checksum_ok(buf, l3, l4, plen, 17, v6))
        if not l4_ok:
            if is_orig:
                flow.req_chk_cnt, flow.req_chk_thresh = flow.scaled_history("C", flow.req_chk_cnt, flow.req_chk_thresh)
            else:
                flow.rep_chk_cnt, flow.rep_chk_thresh = flow.scaled_history("c", flow.rep_chk_cnt, flow.rep_chk_thresh)
            return
        ulen = ((buf[l4 + 4] << 8) | buf[l4 + 5]) - 8
        flow.last_time = ts
        if is_orig:
            if not flow.hist_seen & _H_ORIG_DATA:
                flow.hist_seen |= _H_ORIG_DATA
                flow.history += "D"
            flow.req_len = ulen if flow.req_len < 0 else flow.req_len + ulen
            if pcap >= plen:
                flow.orig_pkts += 1
                flow.orig_ip_bytes += ip_len
        else:
            if not flow.hist_seen & _H_RESP_DATA:
                flow.hist_seen |= _H_RESP_DATA
                flow.history += "d"
            flow.rep_len = ulen if flow.rep_len < 0 else flow.rep_len + ulen
            if pcap >= plen:
                flow.resp_pkts += 1
                flow.resp_ip_bytes += ip_len

    def _icmp_packet(self, buf: bytes, l3: int, l4: int, plen: int, pcap: int, ip_len: int,
                    ts: float, v6: bool, l4_ok: Optional[bool]) -> None:
        icmp_type, icmp_code = buf[l4], buf[l4 + 1]
        if v6:
            src, dst = buf[l3 + 8:l3 + 24], buf[l3 + 24:l3 + 40]
            counterpart = _ICMP6_COUNTERPART.get(icmp_type)
        else:
            src, dst = buf[l3 + 12:l3 + 16], buf[l3 + 16:l3 + 20]
            counterpart = _ICMP4_COUNTERPART.get(icmp_type)
        one_way = counterpart is None
        dport = icmp_code if one_way else counterpart
        key = src + dst + bytes((icmp_type, dport))
        entry = self._icmp.get(key)
        if entry is None:
            # One-way messages are keyed by direction (ConnID.is_one_way); two-way ones
            # match their counterpart in the other direction.
            rkey = key if one_way else dst + src + bytes((dport, icmp_type))
            flow = self._new_flow(1, self._icmp, key, rkey, src, dst, icmp_type, dport, ts)
            self._set_inactivity(flow, self.timeouts.icmp_inactivity)
            is_orig = True
        else:
            flow, is_orig = entry
        if l4_ok is None and self.verify_checksums and pcap >= plen:
            if v6:
                l4_ok = self._l4_checksum_ok(buf, l3, l4, plen, 58, True)
            else:
                l4_ok = int.from_bytes(buf[l4:l4 + plen] + (b"\x00" if plen & 1 else b""), "big") % 65535 == 0
        if l4_ok is False:
            return
        flow.last_time = ts
        size = plen - 8
        if is_orig:
            flow.req_len = size if flow.req_len < 0 else flow.req_len + size
            if pcap >= plen:
                flow.orig_pkts += 1
                flow.orig_ip_bytes += ip_len
        else:
            flow.rep_len = size if flow.rep_len < 0 else flow.rep_len + size
            if pcap >= plen:
                flow.resp_pkts += 1
                flow.resp_ip_bytes += ip_len

    # -- TCP -------------------------------------------------------------------------------

    def _tcp_packet(self, buf: bytes, l3: int, l4: int, plen: int, pcap: int, ip_len: int,
                    ts: float, v6: bool, l4_ok: Optional[bool]) -> None:
        """Find (or start, or restart) the connection and run Zeek's TCP analyzer on it."""
        if v6:
            key = buf[l3 + 8:l3 + 40] + buf[l4:l4 + 4]
        else:
            key = buf[l3 + 12:l3 + 20] + buf[l4:l4 + 4]
        seq, ack, doff, flags, win = _TCP_HDR.unpack_from(buf, l4 + 4)
        entry = self._tcp.get(key)
        if entry is not None:
            flow, is_orig = entry
            if flow.parked is not None:
                self._unpark(flow, self._now)
            if flags & _SYN and doff >= 0x50 and self._tcp_is_reuse(flow, flags, seq, ts):
                self._remove(flow)
                entry = None
        if entry is None:
            flow = self._tcp_new_flow(buf, l3, l4, key, flags, ts, v6)
            is_orig = key == flow.okey
        thl = (doff >> 4) << 2
        if thl < 20 or thl > plen or thl > pcap:
            return  # bad_TCP_header_len / truncated_header: Zeek drops it after creating the conn
        length = plen - thl
        if l4_ok is None:
            l4_ok = not self.verify_checksums or pcap < plen or self._l4_checksum_ok(buf, l3, l4, plen, 6, v6)
        if not l4_ok:
            ep = flow.orig if is_orig else flow.resp
            ep.chk_cnt, ep.chk_thresh = flow.scaled_history(
                "C" if ep.is_orig else "c", ep.chk_cnt, ep.chk_thresh)
            return
        ep = flow.orig if is_orig else flow.resp
        pe = ep.peer
        if flags & 0x17 == _SYN and win and not length and ep.is_orig and pe.state == INACTIVE and self._fast_path:
            # Connection attempts (most of a scanning bot's traffic): the first SYN and its
            # retransmissions, specialised; same effects as _tcp_deliver.
            if ep.state == INACTIVE and not flow.first_seen:
                flow.is_partial = False
                ep.start_seq = ep.ack_seq = seq
                ep.last_seq = (seq + 1) & _M32
                flow.hist_seen |= _H_SYN
                flow.history += "S"
                flow.last_time = ep.last_time = ts
                ep.state = SYN_SENT  # from INACTIVE: no inactivity timer yet
                if self.timeouts.tcp_attempt_delay:
                    self._add_timer(ts + self.timeouts.tcp_attempt_delay, flow, _T_ATTEMPT)
                flow.first_seen |= 1
            elif (ep.state == SYN_SENT and seq == ep.start_seq and not ep.hist_last_syn
                  and not ep.seq_wraps and ep.last_seq == (seq + 1) & _M32):
                flow.last_time = ep.last_time = ts
            else:
                self._tcp_deliver(flow, is_orig, ts, flags, seq, ack, win, length, pcap - thl >= length)
        elif not (flags & 0x17 == _ACK and win and flow.first_seen == 3 and ep.state and pe.state
                  and not ep.seq_wraps and not pe.ack_wraps and self._fast_path
                  and self._tcp_established(flow, ep, pe, ts, seq, ack, length, pcap - thl >= length)):
            self._tcp_deliver(flow, is_orig, ts, flags, seq, ack, win, length, pcap - thl >= length)
        # ConnSize, a packet child of the TCP analyzer: counts packets that got this far.
        if is_orig:
            flow.orig_pkts += 1
            flow.orig_ip_bytes += ip_len
        else:
            flow.resp_pkts += 1
            flow.resp_ip_bytes += ip_len

    def _tcp_established(self, flow: _Flow, ep: _Endpoint, pe: _Endpoint, ts: float, base_seq: int,
                         ack_seq: int, length: int, captured: bool) -> bool:
        """The common case of :meth:`_tcp_deliver`, specialised: an ACK (with or without data)
        without SYN/FIN/RST between two endpoints that have both been seen, no sequence
        wrap-around. The state machine is a no-op for such packets; every other effect
        (history, ack and last-seq tracking, retransmissions, reassembly) is the same.
        Returns False, having changed nothing, when a wrap-around starts here."""
        last = ep.last_seq
        d_last = ((base_seq - last + 0x80000000) & _M32) - 0x80000000
        d_ack = ((ack_seq - pe.ack_seq + 0x80000000) & _M32) - 0x80000000
        if (d_last > 0 and base_seq < last) or (d_ack > 0 and ack_seq < pe.ack_seq):
            return False
        rel_seq = ((base_seq - ep.start_seq + 0x80000000) & _M32) - 0x80000000
        shift = 0 if ep.is_orig else 16
        if length:
            if not flow.hist_seen & (_H_DATA << shift):
                flow.hist_seen |= _H_DATA << shift
                flow.history += "D" if ep.is_orig else "d"
        elif not flow.hist_seen & (_H_ACK << shift):
            flow.hist_seen |= _H_ACK << shift
            flow.history += "A" if ep.is_orig else "a"
        if not (ep.did_close and pe.did_close):
            flow.last_time = ts
        rel_ack = ((ack_seq - pe.start_seq + 0x80000000) & _M32) - 0x80000000
        if rel_ack < 0:
            rel_ack = 0
        elif d_ack > 0 and not (ack_seq == 0 and d_ack > _TOO_LARGE_SEQ_DELTA):
            pe.ack_seq = ack_seq
        one_past = (base_seq + length) & _M32
        delta_last = ((one_past - last + 0x80000000) & _M32) - 0x80000000
        if ep.state == RESET:
            pass
        elif delta_last > 0:
            if one_past < last:
                ep.seq_wraps += 1
            ep.last_seq = one_past
        elif length and delta_last < 0:
            ep.rxmt_cnt, ep.rxmt_thresh = flow.scaled_history(
                "T" if ep.is_orig else "t", ep.rxmt_cnt, ep.rxmt_thresh)
        ep.last_time = ts
        # the acked endpoint's reassembler
        if pe.fin_cnt and rel_ack >= pe.fin_seq:
            rel_ack = pe.fin_seq - 1
        if rel_ack > pe.r_trim:
            self._trim_to_seq(flow, pe, rel_ack)
            self._check_eof(flow, pe)
        if length and rel_seq >= 0 and captured:
            self._data_sent(flow, ep, rel_seq, length)
        if not ep.r_eof and (ep.fin_cnt or ep.state >= CLOSED):
            self._check_eof(flow, ep)
        return True

    def _tcp_new_flow(self, buf: bytes, l3: int, l4: int, key: bytes, flags: int, ts: float,
                      v6: bool) -> _Flow:
        """``NetSessions::NewConn`` for TCP: the sender is the originator unless the port
        heuristic says the first packet came from the server."""
        sport = (buf[l4] << 8) | buf[l4 + 1]
        dport = (buf[l4 + 2] << 8) | buf[l4 + 3]
        if v6:
            src, dst = buf[l3 + 8:l3 + 24], buf[l3 + 24:l3 + 40]
        else:
            src, dst = buf[l3 + 12:l3 + 16], buf[l3 + 16:l3 + 20]
        rkey = dst + src + buf[l4 + 2:l4 + 4] + buf[l4:l4 + 2]
        flow = self._new_flow(6, self._tcp, key, rkey, src, dst, sport, dport, ts)
        flow.orig = orig = _Endpoint(True)
        flow.resp = resp = _Endpoint(False)
        orig.peer, resp.peer = resp, orig
        flip = False
        if not flags & _SYN or flags & _ACK:
            if sport in _LIKELY_TCP:
                flip = (not flags & _SYN and sport < dport) if dport in _LIKELY_TCP else True
        if flip:
            # Connection::FlipRoles runs before the analyzer exists: endpoints stay put.
            flow.orig_addr, flow.resp_addr = flow.resp_addr, flow.orig_addr
            flow.orig_port, flow.resp_port = flow.resp_port, flow.orig_port
            flow.okey, flow.rkey = flow.rkey, flow.okey
            self._tcp[flow.okey] = (flow, True)
            self._tcp[flow.rkey] = (flow, False)
            flow.history += "^"
        self._add_timer(self._now + self.timeouts.tcp_syn_timeout, flow, _T_EXPIRE)
        return flow

    def _tcp_is_reuse(self, flow: _Flow, flags: int, seq: int, ts: float) -> bool:
        """``TCP_Analyzer::IsReuse``: a SYN that starts a new connection on this 5-tuple."""
        orig, resp = flow.orig, flow.resp
        conn_orig = orig
        if flags & _ACK:
            if orig.state != INACTIVE:
                return False
            conn_orig = resp
        if not (orig.did_close or resp.did_close):
            if seq == conn_orig.start_seq & _M32:
                return False
            if (not flags & _ACK and conn_orig.state == SYN_ACK_SENT and resp.state == INACTIVE
                    and seq == resp.start_seq & _M32):
                return False
        return True

    def _tcp_deliver(self, flow: _Flow, is_orig: bool, ts: float, flags: int, base_seq: int,
                     ack_seq: int, win: int, length: int, captured: bool) -> None:
        """``TCP_Analyzer::DeliverPacket`` from the partial-status update on."""
        endpoint = flow.orig if is_orig else flow.resp
        peer = endpoint.peer
        syn, fin, rst, ack_flag = flags & _SYN, flags & _FIN, flags & _RST, flags & _ACK

        # SetPartialStatus
        if endpoint.is_orig:
            if not flow.first_seen & 1:
                flow.is_partial = not syn or bool(ack_flag)
        elif not flow.first_seen & 2 and not flow.is_partial:
            flow.is_partial = not syn

        seg_len = length + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= length
        seq_one_past = (base_seq + seg_len) & _M32

        # init_endpoint
        state = endpoint.state
        if state == INACTIVE:
            if syn:
                endpoint.ack_seq = base_seq
                endpoint.start_seq = base_seq
                last = seq_one_past
            else:
                endpoint.ack_seq = endpoint.start_seq = (base_seq - 1) & _M32
                last = base_seq
            endpoint.last_seq = last
        elif syn:
            if state == SYN_SENT or state == SYN_ACK_SENT:
                if base_seq != endpoint.start_seq & _M32:
                    endpoint.start_seq = endpoint.ack_seq = base_seq
                    endpoint.last_seq = seq_one_past
            elif state == ESTABLISHED or state == PARTIAL:
                endpoint.start_seq = endpoint.ack_seq = base_seq
                endpoint.last_seq = seq_one_past
            elif state == RESET and endpoint.prev_state == INACTIVE:
                endpoint.start_seq = endpoint.ack_seq = base_seq
                endpoint.last_seq = seq_one_past

        # get_relative_seq for the segment
        rel_seq, seq_underflow = _relative_seq(endpoint, base_seq, endpoint.last_seq, endpoint.seq_wraps)

        # update_history
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        shift = 0 if endpoint.is_orig else 16
        if bits > 1:
            if fin and rst:
                flow.check_history(_H_FIN_RST << shift, "I" if endpoint.is_orig else "i")
            else:
                flow.check_history(_H_MULTI << shift, "Q" if endpoint.is_orig else "q")
        elif bits == 1:
            if syn:
                code = "H" if ack_flag else "S"
                if not endpoint.is_orig:
                    code = code.lower()
                if flow.check_history(_H_SYN << shift, code) and rel_seq != endpoint.hist_last_syn:
                    flow.history += code
                endpoint.hist_last_syn = rel_seq
            if fin:
                code = "F" if endpoint.is_orig else "f"
                if flow.check_history(_H_FIN << shift, code) and rel_seq + length != endpoint.hist_last_fin:
                    flow.history += code
                endpoint.hist_last_fin = rel_seq + length
            if rst:
                code = "R" if endpoint.is_orig else "r"
                if flow.check_history(_H_RST << shift, code) and rel_seq != endpoint.hist_last_rst:
                    flow.history += code
                endpoint.hist_last_rst = rel_seq
        elif length:
            if not flow.hist_seen & (_H_DATA << shift):
                flow.hist_seen |= _H_DATA << shift
                flow.history += "D" if endpoint.is_orig else "d"
        elif ack_flag:
            if not flow.hist_seen & (_H_ACK << shift):
                flow.hist_seen |= _H_ACK << shift
                flow.history += "A" if endpoint.is_orig else "a"

        # update_window: only the zero-window history letter matters here
        if win == 0 and not rst and peer.state != CLOSED and endpoint.state != RESET:
            endpoint.win0_cnt, endpoint.win0_thresh = flow.scaled_history(
                "W" if endpoint.is_orig else "w", endpoint.win0_cnt, endpoint.win0_thresh)

        if not (flow.orig.did_close and flow.resp.did_close):
            flow.last_time = ts

        if fin:
            endpoint.fin_cnt += 1
            endpoint.fin_seq = rel_seq + seg_len
        if rst:
            endpoint.rst_cnt += 1

        rel_ack = 0
        if ack_flag:
            if peer.state == INACTIVE:
                rel_ack = 1
                # init_peer
                peer.start_seq = peer.ack_seq = peer.last_seq = (ack_seq - 1) & _M32
            else:
                rel_ack, ack_underflow = _relative_seq(peer, ack_seq, peer.ack_seq, peer.ack_wraps)
                if ack_underflow:
                    rel_ack = 0
                elif not rst:
                    # update_ack_seq
                    delta_ack = _seq_delta(ack_seq, peer.ack_seq)
                    if not (ack_seq == 0 and delta_ack > _TOO_LARGE_SEQ_DELTA) and delta_ack > 0:
                        if ack_seq < peer.ack_seq:
                            peer.ack_wraps += 1
                        peer.ack_seq = ack_seq

        # update_last_seq
        delta_last = _seq_delta(seq_one_past, endpoint.last_seq)
        if (syn or rst) and (delta_last > _TOO_LARGE_SEQ_DELTA or delta_last < -_TOO_LARGE_SEQ_DELTA):
            pass
        elif fin and endpoint.last_seq == (endpoint.start_seq + 1) & _M32:
            _update_last_seq(endpoint, seq_one_past)
        elif endpoint.state == RESET:
            pass
        elif delta_last > 0:
            _update_last_seq(endpoint, seq_one_past)
        elif length > 0 and delta_last < 0:
            # Zeek 3.0 (which wrote the IoT-23 logs) flags a retransmission only when the
            # segment ends before the highest sequence seen; an exact resend is not a 'T'.
            endpoint.rxmt_cnt, endpoint.rxmt_thresh = flow.scaled_history(
                "T" if endpoint.is_orig else "t", endpoint.rxmt_cnt, endpoint.rxmt_thresh)
        endpoint.last_time = ts

        do_close, gen_event = self._tcp_state_machine(
            flow, endpoint, peer, ts, base_seq, ack_seq, length, delta_last, is_orig, flags)

        if ack_flag:
            self._ack_received(flow, peer, rel_ack)

        # CheckPIA_FirstPacket
        flow.first_seen |= 1 if is_orig else 2

        if length > 0 and not rst and not seq_underflow and captured:
            self._data_sent(flow, endpoint, rel_seq + 1 if syn else rel_seq, length)

        self._check_eof(flow, endpoint)

        if do_close:
            self._connection_closed(flow, endpoint, peer, gen_event)

    def _tcp_state_machine(self, flow: _Flow, endpoint: _Endpoint, peer: _Endpoint, ts: float,
                           base_seq: int, ack_seq: int, length: int, delta_last: int,
                           is_orig: bool, flags: int) -> Tuple[bool, bool]:
        """``TCP_Analyzer::UpdateStateMachine``; returns (do_close, gen_event)."""
        syn, fin, rst, ack_flag = flags & _SYN, flags & _FIN, flags & _RST, flags & _ACK
        do_close = gen_event = False
        state = endpoint.state
        if state == INACTIVE:
            if syn:
                if is_orig:
                    self._set_state(flow, endpoint, SYN_ACK_SENT if ack_flag else SYN_SENT)
                    if self.timeouts.tcp_attempt_delay:
                        self._add_timer(ts + self.timeouts.tcp_attempt_delay, flow, _T_ATTEMPT)
                else:
                    if not ack_flag and peer.state == SYN_ACK_SENT and base_seq == endpoint.start_seq & _M32:
                        # SYN/SYN-ACK reversal: flip the endpoints and establish.
                        flow.is_partial = False
                        self._flip_roles(flow)
                        self._set_state(flow, peer, ESTABLISHED)
                    if peer.state == SYN_SENT:
                        self._set_state(flow, peer, ESTABLISHED)
                    self._set_state(flow, endpoint, ESTABLISHED)
            if fin:
                self._set_state(flow, endpoint, CLOSED)
                do_close = gen_event = True
            if rst:
                self._set_state(flow, endpoint, RESET)
                if is_orig:
                    is_reject = peer.state == ESTABLISHED
                else:
                    is_reject = peer.state in (SYN_SENT, SYN_ACK_SENT)
                do_close = True
                gen_event = not is_reject
            if endpoint.state == INACTIVE:
                if not is_orig and length == 0 and flow.orig.state == SYN_SENT:
                    pass  # an early ACK of the SYN does not form a partial connection
                elif ack_flag and peer.state == ESTABLISHED:
                    self._set_state(flow, endpoint, ESTABLISHED)
                    flow.is_partial = False
                else:
                    self._set_state(flow, endpoint, PARTIAL)
        elif state == SYN_SENT or state == SYN_ACK_SENT:
            if fin:
                self._set_state(flow, endpoint, CLOSED)
                do_close = gen_event = True
            if rst:
                self._set_state(flow, endpoint, RESET)
                flow.is_active = False  # ConnectionReset
                do_close = True
        elif state == ESTABLISHED or state == PARTIAL:
            if syn and state == PARTIAL and peer.state == INACTIVE and not ack_flag:
                self._set_state(flow, endpoint, SYN_SENT)
            if fin and not rst:
                self._set_state(flow, endpoint, CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    self._set_state(flow, peer, CLOSED)
                do_close = gen_event = True
            if rst:
                self._set_state(flow, endpoint, RESET)
                do_close = True
                if peer.state != RESET or peer.prev_state != ESTABLISHED:
                    flow.is_active = False  # ConnectionReset
        elif state == CLOSED:
            if rst and endpoint.peer.state != CLOSED:
                self._set_state(flow, endpoint, RESET)
                if not endpoint.did_close:
                    do_close = True
        # RESET: only weirds
        return do_close, gen_event

    def _set_state(self, flow: _Flow, endpoint: _Endpoint, new_state: int) -> None:
        """``TCP_Endpoint::SetState``: arms the inactivity timer when the handshake ends."""
        if new_state != endpoint.state:
            if new_state not in _HANDSHAKE and endpoint.state in _HANDSHAKE and endpoint.peer.state in _HANDSHAKE:
                self._set_inactivity(flow, self.timeouts.tcp_inactivity)
            endpoint.prev_state = endpoint.state
            endpoint.state = new_state

    # -- reassembler model (only what decides gaps, missed bytes and close deferral) -------

    def _data_sent(self, flow: _Flow, ep: _Endpoint, seq: int, length: int) -> None:
        """``TCP_Reassembler::DataSent`` / ``Reassembler::NewBlock``."""
        if ep.r_skip or length <= 0:
            return
        upper = seq + length
        if upper <= ep.r_trim:
            return
        if seq < ep.r_trim:
            seq = ep.r_trim
        runs = ep.r_runs
        if runs and runs[-1][1] == seq:
            runs[-1][1] = upper  # the common case: appending in order
        elif not runs or runs[-1][1] < seq:
            runs.append([seq, upper])
        else:
            _insert_run(runs, seq, upper)
        if seq <= ep.r_last < upper:
            self._deliver_runs(flow, ep)
        ack = (ep.ack_wraps << 32) + ep.ack_seq
        if (ack == ep.start_seq or ack == ep.start_seq + 1) and runs and runs[-1][1] - ep.r_last > _MAX_ABOVE_HOLE_WITHOUT_ACKS:
            runs.clear()
            ep.r_skip = True
        elif runs and runs[-1][1] - runs[0][0] > _EXCESSIVE_DATA_WITHOUT_ACKS and sum(u - s for s, u in runs) > _EXCESSIVE_DATA_WITHOUT_ACKS:
            runs.clear()
            ep.r_skip = True

    def _deliver_runs(self, flow: _Flow, ep: _Endpoint) -> None:
        """``BlockInserted``: deliver the run that now reaches the delivered point."""
        last = ep.r_last
        for s, u in ep.r_runs:
            if s <= last < u:
                ep.r_last = u
                break
            if s > last:
                return
        else:
            return
        if ep.no_data_acked() and ep.size() > _MAX_INITIAL_WINDOW:
            self._trim_to_seq(flow, ep, ep.r_last)

    def _trim_to_seq(self, flow: _Flow, ep: _Endpoint, seq: int) -> None:
        """``Reassembler::TrimToSeq``: forget data below ``seq``, reporting gaps first."""
        if seq > ep.r_last:
            self._undelivered(flow, ep, seq)
        runs = ep.r_runs
        while runs and runs[0][1] <= seq:
            del runs[0]
        if runs and runs[0][0] == ep.r_last:
            self._deliver_runs(flow, ep)
        if seq > ep.r_trim:
            ep.r_trim = seq

    def _undelivered(self, flow: _Flow, ep: _Endpoint, up_to: int) -> None:
        """``TCP_Reassembler::Undelivered``: acked data we never saw is a content gap."""
        if up_to <= 2 and flow.is_partial:
            return
        if not ep.r_skip:
            while True:
                nxt = None
                for s, u in ep.r_runs:
                    if s >= ep.r_last:
                        nxt = (s, u)
                        break
                if nxt is None or nxt[0] >= up_to:
                    break
                self._gap(flow, ep, nxt[0] - ep.r_last)
                ep.r_last = nxt[0]
                self._deliver_runs(flow, ep)
            if up_to > ep.r_last:
                self._gap(flow, ep, up_to - ep.r_last)
        if up_to > ep.r_last:
            ep.r_last = up_to

    def _gap(self, flow: _Flow, ep: _Endpoint, length: int) -> None:
        """``TCP_Reassembler::Gap``: history ``G``/``g`` and ``missed_bytes`` when clean."""
        if _is_clean(ep) and _is_clean(ep.peer):
            ep.gap_cnt, ep.gap_thresh = flow.scaled_history("G" if ep.is_orig else "g", ep.gap_cnt, ep.gap_thresh)
            flow.missed_bytes += length

    def _ack_received(self, flow: _Flow, ep: _Endpoint, seq: int) -> None:
        """``TCP_Reassembler::AckReceived`` on the acked endpoint's reassembler."""
        if ep.fin_cnt > 0 and seq >= ep.fin_seq:
            seq = ep.fin_seq - 1
        if seq <= ep.r_trim:
            return
        self._trim_to_seq(flow, ep, seq)
        self._check_eof(flow, ep)

    def _data_pending(self, ep: _Endpoint) -> bool:
        """``TCP_Reassembler::DataPending``."""
        if ep.r_skip:
            return False
        delivered = ep.start_seq + ep.r_last
        last = (ep.seq_wraps << 32) + ep.last_seq
        if last < delivered:
            return False
        if delivered != last - 1 and delivered != last:
            return True
        if ep.state != RESET and ep.peer.r_runs:
            return True
        return False

    def _check_eof(self, flow: _Flow, ep: _Endpoint) -> None:
        """``TCP_Reassembler::CheckEOF``; a deferred close completes on EOF."""
        if (not ep.r_eof and (ep.fin_cnt > 0 or ep.state == CLOSED or ep.state == RESET)
                and not self._data_pending(ep)):
            ep.r_eof = True
            if flow.close_deferred:  # TCP_Analyzer::EndpointEOF
                self._connection_closed(flow, ep, ep.peer, flow.deferred_gen_event)
                flow.close_deferred = False

    def _connection_closed(self, flow: _Flow, endpoint: _Endpoint, peer: _Endpoint, gen_event: bool) -> None:
        """``TCP_Analyzer::ConnectionClosed``: schedules removal once both sides are done."""
        if self._data_pending(endpoint):
            flow.close_deferred = True
            if not flow.deferred_gen_event:
                flow.deferred_gen_event = gen_event
            return
        flow.close_deferred = False
        if endpoint.did_close:
            return
        endpoint.did_close = True
        timeouts = self.timeouts
        if endpoint.state == RESET or peer.did_close or peer.state == INACTIVE:
            if endpoint.prev_state != INACTIVE or peer.state != INACTIVE:
                if flow.deferred_gen_event:
                    gen_event = True
                    flow.deferred_gen_event = False
                if gen_event:
                    flow.is_active = False  # ConnectionFinished
            flow.timer_epoch += 1  # CancelTimers
            self._add_timer(flow.last_time + timeouts.tcp_close_delay, flow, _T_DELETE)
        elif endpoint.prev_state != INACTIVE:
            self._add_timer(flow.last_time + timeouts.tcp_session_timer, flow, _T_EXPIRE)


# -- helpers -----------------------------------------------------------------------------------


def _relative_seq(ep: _Endpoint, cur: int, last: int, wraps: int) -> Tuple[int, bool]:
    """``TCP_Analyzer::get_relative_seq``: (relative sequence number, underflow)."""
    delta = _seq_delta(cur, last)
    if delta < 0:
        if wraps and cur > last:
            wraps -= 1
    elif delta > 0:
        if cur < last:
            wraps += 1
    if wraps == 0:
        delta = _seq_delta(cur, ep.start_seq & _M32)
        return delta, delta < 0
    return (wraps << 32) + cur - ep.start_seq, False


def _update_last_seq(ep: _Endpoint, seq: int) -> None:
    if seq < ep.last_seq:
        ep.seq_wraps += 1
    ep.last_seq = seq


def _is_clean(ep: _Endpoint) -> bool:
    return ep.state == ESTABLISHED or (ep.state == CLOSED and ep.prev_state == ESTABLISHED)


def _insert_run(runs: List[List[int]], seq: int, upper: int) -> None:
    """Insert [seq, upper) into sorted, disjoint, merged runs."""
    merged = []
    placed = False
    for s, u in runs:
        if u < seq:
            merged.append([s, u])
        elif upper < s:
            if not placed:
                merged.append([seq, upper])
                placed = True
            merged.append([s, u])
        else:
            seq, upper = min(s, seq), max(u, upper)
    if not placed:
        merged.append([seq, upper])
        merged.sort()
    runs[:] = merged


def _tcp_conn_state(os_: int, rs: int, orig: _Endpoint, resp: _Endpoint) -> str:
    """``conn_state()`` of Zeek 3.0's ``base/protocols/conn/main.zeek`` for TCP."""
    o_inactive = os_ == INACTIVE or os_ == PARTIAL
    r_inactive = rs == INACTIVE or rs == PARTIAL
    if rs == RESET:
        if os_ == SYN_SENT or os_ == SYN_ACK_SENT or (os_ == RESET and orig.size() == 0 and resp.size() == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        return "RSTOS0" if r_inactive else "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


def _uid(flow: _Flow) -> str:
    """A deterministic Zeek-style uid: ``C`` + 18 hex digits of a hash of the flow's identity."""
    key = _UID_KEY.pack(flow.start, flow.orig_port, flow.resp_port, flow.proto) + flow.orig_addr + flow.resp_addr
    return "C" + hashlib.blake2b(key, digest_size=9).hexdigest()


_UID_KEY = struct.Struct("!dHHB")
_ADDR_CACHE_MAX = 8192  # packed address -> text, per meter

# FlowRecord is built with positional arguments in _record; fail at import, not with shifted
# fields, if its layout ever changes.
_RECORD_ORDER = (
    "ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "duration", "orig_bytes", "resp_bytes",
    "conn_state", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
    "service", "uid", "label", "detailed_label", "family", "scenario", "source",
)
if tuple(f.name for f in fields(FlowRecord))[: len(_RECORD_ORDER)] != _RECORD_ORDER:  # pragma: no cover
    raise ImportError("edgebot.flow.FlowRecord changed its field order: update FlowMeter._record")


# Checksum verdicts computed for a whole batch (see _batch_verdicts).
_UNCHECKED, _GOOD, _BAD_IP, _BAD_L4 = 0, 1, 2, 3
_BATCH_CHECKSUM_MIN = 16
_SECOND, _THIRD = operator.itemgetter(1), operator.itemgetter(2)
_np = None


def _batch_verdicts(buf: bytes, packets: Sequence[PacketRef]) -> List[int]:
    """Checksum verdicts for the plain Ethernet/IPv4 TCP, UDP and ICMP frames of a batch.

    Summing 16-bit words one packet at a time costs more than the rest of the metering of
    a large packet; here numpy sums every needed range of the batch buffer in one pass
    (``np.add.reduceat`` over the buffer seen as big-endian words, once per byte
    alignment). Each fully captured, unfragmented IPv4 packet without IP options gets
    ``_GOOD``, ``_BAD_IP`` or ``_BAD_L4``; every other frame ``_UNCHECKED``, and is checked
    one by one as before.
    """
    global _np
    if _np is None:
        import numpy

        _np = numpy
    np = _np
    count = len(packets)
    off = np.fromiter(map(_SECOND, packets), dtype=np.int64, count=count)
    cap = np.fromiter(map(_THIRD, packets), dtype=np.int64, count=count)
    b = np.frombuffer(buf, dtype=np.uint8)
    big = cap >= 42
    at = np.where(big, off, 0)  # only read headers that are there
    total = b[at + 16].astype(np.int64) * 256 + b[at + 17]
    proto = b[at + 23]
    cand = (big & (b[at + 12] == 8) & (b[at + 13] == 0) & (b[at + 14] == 0x45)
            & ((b[at + 20] & 0x3F) == 0) & (b[at + 21] == 0) & (total >= 28) & (cap >= total + 14)
            & ((proto == 6) | (proto == 17) | (proto == 1)))
    verdict = np.zeros(count, dtype=np.int64)
    for parity in (0, 1):
        sel = np.flatnonzero(cand & (((off + 14) & 1) == parity))
        if not len(sel):
            continue
        l3 = off[sel] + 14
        tot = total[sel]
        words = np.frombuffer(buf, dtype=">u2", offset=parity, count=(len(buf) - parity) // 2)
        end = l3 + tot - (tot & 1)
        idx = (np.stack([l3, l3 + 12, l3 + 20, end], axis=1).ravel() - parity) // 2
        if idx[-1] >= len(words):
            idx = idx[:-1]  # the last range runs to the end of the buffer anyway
        sums = np.add.reduceat(words, idx, dtype=np.uint64)
        head, addrs, body = sums[0::4], sums[1::4], sums[2::4]
        tail = np.where(tot & 1, b[np.where(tot & 1, l3 + tot - 1, 0)].astype(np.uint64) << 8, 0)
        body = body + tail
        p = proto[sel]
        ip_ok = (head + addrs) % 65535 == 0
        seg_len = (tot - 20).astype(np.uint64)
        pseudo_ok = (addrs + body + p.astype(np.uint64) + seg_len) % 65535 == 0
        udp_unset = (p == 17) & (b[l3 + 26] == 0) & (b[l3 + 27] == 0)
        l4_ok = np.where(p == 1, body % 65535 == 0, pseudo_ok | udp_unset)
        verdict[sel] = np.where(ip_ok, np.where(l4_ok, _GOOD, _BAD_L4), _BAD_IP)
    return verdict.tolist()


def _locate_l3(buf: bytes, off: int, cap: int, linktype: int) -> Tuple[int, int]:
    """Find the IP header in a frame: (offset, IP version), version 0 when not IP."""
    end = off + cap
    if linktype == LINKTYPE_ETHERNET:
        pos = off + 12
        if pos + 2 > end:
            return 0, 0
        etype = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
        while etype in (0x8100, 0x88A8, 0x9100) and pos + 4 <= end:  # 802.1Q / QinQ tags
            etype = (buf[pos + 2] << 8) | buf[pos + 3]
            pos += 4
        if etype == 0x8864 and pos + 8 <= end:  # PPPoE session
            ppp = (buf[pos + 6] << 8) | buf[pos + 7]
            etype = 0x0800 if ppp == 0x0021 else 0x86DD if ppp == 0x0057 else 0
            pos += 8
        elif etype == 0x8847:  # MPLS: skip the label stack, guess the version
            while pos + 4 <= end:
                bottom = buf[pos + 2] & 1
                pos += 4
                if bottom:
                    break
            etype = 0x0800 if pos < end and buf[pos] >> 4 == 4 else 0x86DD if pos < end and buf[pos] >> 4 == 6 else 0
    elif linktype == LINKTYPE_LINUX_SLL:
        if off + 16 > end:
            return 0, 0
        etype = (buf[off + 14] << 8) | buf[off + 15]
        pos = off + 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if off + 20 > end:
            return 0, 0
        etype = (buf[off] << 8) | buf[off + 1]
        pos = off + 20
    elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_BSD, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if cap < 1:
            return 0, 0
        version = buf[off] >> 4
        return off, version if version in (4, 6) else 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if off + 5 > end:
            return 0, 0
        version = buf[off + 4] >> 4
        return off + 4, version if version in (4, 6) else 0
    else:
        return 0, 0
    if etype == 0x0800:
        return pos, 4
    if etype == 0x86DD:
        return pos, 6
    return pos, 0


# -- agreement with Zeek -------------------------------------------------------------------------

FlowKey = Tuple[str, int, str, int, str]


def compare_with_zeek(flows: Iterable[FlowRecord], zeek_records: Iterable[FlowRecord],
                      tolerance: float = 0.01) -> Dict[str, object]:
    """Join metered flows to Zeek's conn records and measure how far they agree.

    Flows are joined on (orig_h, orig_p, resp_h, resp_p, proto) and start time within
    ``tolerance`` seconds; each Zeek record takes the closest unused flow.

    Parameters
    ----------
    flows : iterable of FlowRecord
        What the meter produced.
    zeek_records : iterable of FlowRecord
        What Zeek wrote for the same capture.
    tolerance : float
        Largest start-time difference accepted for a match, in seconds.

    Returns
    -------
    dict
        ``zeek``/``meter`` (counts), ``found`` (Zeek records matched), ``found_rate``,
        ``same_counts`` / ``same_counts_rate`` (orig_pkts, resp_pkts, orig_ip_bytes and
        resp_ip_bytes all equal), ``same_state_rate``, ``same_history_rate``,
        ``same_bytes_rate`` (orig_bytes and resp_bytes), ``extra`` (meter flows with no
        Zeek record), and ``mismatches``: a few (zeek, meter) pairs that differ.
    """
    by_key: Dict[FlowKey, List[FlowRecord]] = {}
    meter_list = list(flows)
    for flow in meter_list:
        by_key.setdefault((flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p, flow.proto), []).append(flow)
    used = set()
    zeek_list = list(zeek_records)
    found = same_counts = same_state = same_history = same_bytes = 0
    mismatches: List[Tuple[FlowRecord, Optional[FlowRecord]]] = []
    for z in zeek_list:
        candidates = by_key.get((z.orig_h, z.orig_p, z.resp_h, z.resp_p, z.proto), [])
        best = None
        best_dt = tolerance
        for flow in candidates:
            dt = abs(flow.ts - z.ts)
            if dt <= best_dt and id(flow) not in used:
                best, best_dt = flow, dt
        if best is None:
            if len(mismatches) < 20:
                mismatches.append((z, None))
            continue
        used.add(id(best))
        found += 1
        counts_ok = (best.orig_pkts == z.orig_pkts and best.resp_pkts == z.resp_pkts
                     and best.orig_ip_bytes == z.orig_ip_bytes and best.resp_ip_bytes == z.resp_ip_bytes)
        same_counts += counts_ok
        same_state += best.conn_state == z.conn_state
        same_history += best.history == z.history
        same_bytes += best.orig_bytes == z.orig_bytes and best.resp_bytes == z.resp_bytes
        if not (counts_ok and best.conn_state == z.conn_state) and len(mismatches) < 20:
            mismatches.append((z, best))
    total = len(zeek_list) or 1
    return {
        "zeek": len(zeek_list),
        "meter": len(meter_list),
        "found": found,
        "found_rate": found / total,
        "same_counts": same_counts,
        "same_counts_rate": same_counts / total,
        "same_state_rate": same_state / total,
        "same_history_rate": same_history / total,
        "same_bytes_rate": same_bytes / total,
        "extra": len(meter_list) - found,
        "mismatches": mismatches,
    }
