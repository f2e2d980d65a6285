"""The flow table and Zeek's connection timers: new flows, eviction, removal, and the one timer heap."""

from __future__ import annotations

import heapq
from typing import Dict

from .record import _Records
from .state import (
    _T_ATTEMPT,
    _T_DELETE,
    _T_EXPIRE,
    _T_INACTIVITY,
    INACTIVE,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
    ZeekTimeouts,
    _Flow,
)

_TIMER_SLACK = 10_000  # timers of ended flows tolerated before the heap is compacted


class _FlowTable(_Records):
    """Stage of :class:`~edgebot.edge.meter.FlowMeter`: the flow table and its timers
    (Zeek fires due timers before each packet, with t = the packet's time)."""

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
        for phase in flow.parked:  # type: ignore[union-attr]  # only called when parked
            due = phase + period * (int((now - phase) // period) + 1) if period > 0 else now
            self._add_timer(due, flow, _T_EXPIRE)
        flow.parked = None
