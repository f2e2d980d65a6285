"""``FlowMeter``: packets in, completed flows out; the public face the stages of the meter are assembled into."""

from __future__ import annotations

import logging
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

from edgebot.evidence import ONEWAY_MIN_S, oneway_rate
from edgebot.flow import FlowRecord

from ..pcapfile import LINKTYPE_ETHERNET, PacketRef
from .decode import _Decoder
from .fragments import (
    DEFAULT_FRAGMENT_TIMEOUT,
    DEFAULT_MAX_FRAGMENT_BYTES,
    DEFAULT_MAX_FRAGMENTED,
    DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM,
    FragmentReassembler,
)
from .record import _PROTO_NAMES
from .state import ZeekTimeouts

logger = logging.getLogger(__name__)


class Unanswered(NamedTuple):
    """A flow still in progress that its peer never answered (:meth:`FlowMeter.unanswered`)."""

    orig_h: str
    resp_h: str
    resp_p: int
    proto: str
    start: float
    orig_pkts: int
    pps: float


class FlowMeter(_Decoder):
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
        self._tcp = {}
        self._udp = {}
        self._icmp = {}
        self._active = 0
        self._timers = []
        self._timer_seq = 0
        self._in_timers = False
        self._next_due = float("inf")
        self._now = 0.0
        self._done = []
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
        self._addr_names = {}  # at most record._ADDR_CACHE_MAX, then cleared
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

    @property
    def clock(self) -> float:
        """Network time: the latest packet time (or :meth:`expire` time) seen, 0 before any."""
        return self._now

    def unanswered(self, min_pps: float) -> List[Unanswered]:
        """Flows still in progress that their peer never answered, at ``min_pps`` packets/s or more so far.

        The oneway rule (:func:`edgebot.evidence.oneway_rate`, the same measure over the flow's
        time so far) on a flow before it ends: a flood is one flow that ends only when the flood
        stops (Zeek logs a connection when it is removed), so the record alone would report an
        hour-long flood an hour late. A flow is listed once, and again only when its rate has
        doubled since. One pass over the flow table (bounded by ``max_flows``); the agent calls
        it every few seconds of network time.
        """
        out: List[Unanswered] = []
        names = self._addr_names
        least = min_pps * ONEWAY_MIN_S  # fewer packets cannot reach min_pps over ONEWAY_MIN_S or more
        for table in (self._udp, self._icmp, self._tcp):
            for flow, is_orig in table.values():
                if not is_orig or flow.resp_pkts or flow.orig_pkts < least:  # removed flows are not in the table
                    continue
                duration = flow.last_time - flow.start
                if duration < ONEWAY_MIN_S or flow.orig_pkts < 2.0 * flow.oneway_told * duration:
                    continue
                resp_h = names.get(flow.resp_addr) or self._addr_name(flow.resp_addr)
                pps = oneway_rate(flow.orig_pkts, 0, duration, resp_h)
                if pps < min_pps:
                    continue
                flow.oneway_told = pps
                orig_h = names.get(flow.orig_addr) or self._addr_name(flow.orig_addr)
                out.append(Unanswered(orig_h, resp_h, flow.resp_port, _PROTO_NAMES[flow.proto], flow.start,
                                      flow.orig_pkts, pps))
        return out

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
