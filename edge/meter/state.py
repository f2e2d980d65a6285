"""The meter's shared state: Zeek's timeouts and server ports, TCP endpoint states, timer kinds,
the per-connection objects (``_Flow``, ``_Endpoint``) and the attributes every stage of the meter reads."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from edgebot.flow import FlowRecord

    from .fragments import FragmentReassembler


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

# Timer kinds.
_T_INACTIVITY, _T_ATTEMPT, _T_EXPIRE, _T_DELETE = range(4)


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
        "resp_ip_bytes", "inactivity", "timer_epoch", "removed", "missed_bytes", "oneway_told",
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
        self.oneway_told = 0.0  # the unanswered rate FlowMeter.unanswered last reported (0: never)
        self.req_len = self.rep_len = -1
        self.req_chk_cnt = self.rep_chk_cnt = 0
        self.req_chk_thresh = self.rep_chk_thresh = 1
        # TCP only (None for UDP and ICMP): typed as always there, since only TCP code reads them
        self.orig: _Endpoint = None  # type: ignore[assignment]
        self.resp: _Endpoint = None  # type: ignore[assignment]
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


class _MeterState:
    """What a :class:`~edgebot.edge.meter.FlowMeter` holds, declared once for every stage
    (the stages are the mixins it is built from; ``FlowMeter.__init__`` sets these)."""

    max_flows: int
    timeouts: ZeekTimeouts
    verify_checksums: bool
    source: str
    # flow tables: key -> (flow, is_orig); a two-way flow is under both its keys
    _tcp: Dict[bytes, tuple]
    _udp: Dict[bytes, tuple]
    _icmp: Dict[bytes, tuple]
    _active: int
    # the timer heap: (when, seq, flow, kind, epoch)
    _timers: List[tuple]
    _timer_seq: int
    _in_timers: bool
    _next_due: float
    _now: float
    _done: List[FlowRecord]
    # statistics
    _packets: int
    _bytes: int
    _non_ip: int
    _truncated: int
    _bad_ip: int
    _other_proto: int
    _fragments: int
    _reassembled: int
    _tunneled: int
    _tunnel_depth: int
    _reassembler: FragmentReassembler
    _emitted: int
    _evicted: int
    _addr_names: Dict[bytes, str]
    _addr_cache_clears: int
