"""TCP the way Zeek's analyzer sees it: connection lookup and reuse, endpoint states, history letters."""

from __future__ import annotations

import struct
from typing import Optional, Tuple

from .checksums import _l4_checksum_ok
from .reassembly import _Reassembly
from .state import (
    _LIKELY_TCP,
    _T_ATTEMPT,
    _T_EXPIRE,
    CLOSED,
    ESTABLISHED,
    INACTIVE,
    PARTIAL,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
    _Endpoint,
    _Flow,
)

_HANDSHAKE = (INACTIVE, SYN_SENT, SYN_ACK_SENT)

# TCP flags.
_FIN, _SYN, _RST, _PSH, _ACK, _URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# History masks (TCP_Endpoint::HistoryMasks; the responder's are shifted left by 16).
_H_SYN, _H_FIN, _H_RST, _H_FIN_RST, _H_DATA, _H_ACK, _H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40

_M32 = 0xFFFFFFFF
_TOO_LARGE_SEQ_DELTA = 1048576

_TCP_HDR = struct.Struct("!IIBBH")  # seq, ack, data offset, flags, window (from byte 4)


def _seq_delta(a: int, b: int) -> int:
    """Signed 32-bit difference ``a - b`` (Zeek's ``seq_delta``)."""
    return ((a - b + 0x80000000) & _M32) - 0x80000000


class _Tcp(_Reassembly):
    """Stage of :class:`~edgebot.edge.meter.FlowMeter`: TCP segments to their connections
    (a port of ``TCP_Analyzer``)."""

    #: Use the specialised path for established ACK/data packets (tests turn it off to
    #: check that it changes nothing).
    _fast_path = True

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
            l4_ok = not self.verify_checksums or pcap < plen or _l4_checksum_ok(buf, l3, l4, plen, 6, v6)
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
