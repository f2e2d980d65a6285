"""The flow record of an ended connection: Zeek's ``conn_state``, sizes, address texts and a deterministic uid."""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import fields

from edgebot.flow import FlowRecord

from .state import (
    CLOSED,
    ESTABLISHED,
    INACTIVE,
    PARTIAL,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
    _Endpoint,
    _Flow,
    _MeterState,
)

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}


class _Records(_MeterState):
    """Stage of :class:`~edgebot.edge.meter.FlowMeter`: a removed flow becomes a :class:`FlowRecord`."""

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
