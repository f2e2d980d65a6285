"""A model of Zeek's TCP reassembler: only what decides content gaps, missed bytes and close deferral."""

from __future__ import annotations

from typing import List

from .state import (
    _T_DELETE,
    _T_EXPIRE,
    CLOSED,
    ESTABLISHED,
    INACTIVE,
    RESET,
    _Endpoint,
    _Flow,
)
from .timers import _FlowTable

_MAX_INITIAL_WINDOW = 16384  # tcp_max_initial_window
_MAX_ABOVE_HOLE_WITHOUT_ACKS = 16384  # tcp_max_above_hole_without_any_acks
_EXCESSIVE_DATA_WITHOUT_ACKS = 10 * 1024 * 1024  # tcp_excessive_data_without_further_acks


class _Reassembly(_FlowTable):
    """Stage of :class:`~edgebot.edge.meter.FlowMeter`: the reassembler and the close of a TCP connection."""

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
