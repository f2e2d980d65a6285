"""UDP and ICMP flows the way Zeek's ``udp`` and ``icmp`` analyzers and ConnSize count them."""

from __future__ import annotations

from typing import Optional

from .checksums import _l4_checksum_ok
from .state import _LIKELY_UDP
from .timers import _FlowTable

# UDP's (Conn.h): HIST_ORIG_DATA_PKT / HIST_RESP_DATA_PKT.
_H_ORIG_DATA, _H_RESP_DATA = 0x1, 0x2

# ICMP type -> counterpart type for two-way messages (Zeek's ICMP4_counterpart / ICMP6_counterpart).
_ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_COUNTERPART = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131,
                      131: 130, 139: 140, 140: 139, 144: 145, 145: 144}


class _UdpIcmp(_FlowTable):
    """Stage of :class:`~edgebot.edge.meter.FlowMeter`: UDP and ICMP packets to their flows."""

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
                     or _l4_checksum_ok(buf, l3, l4, plen, 17, v6))
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
        dport = icmp_code if counterpart is None else counterpart
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
                l4_ok = _l4_checksum_ok(buf, l3, l4, plen, 58, True)
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
