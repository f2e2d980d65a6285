"""Compare metered flows with the conn.log Zeek wrote for the same capture (the meter's agreement figure)."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

from edgebot.flow import FlowRecord

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
