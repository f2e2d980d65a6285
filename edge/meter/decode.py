"""Packet decoding: link layers, IPv4 (with fragments), IPv6 extension headers, IP-in-IP and GRE tunnels."""

from __future__ import annotations

import itertools
from typing import Iterable, Sequence, Tuple

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
from .checksums import _BAD_IP, _GOOD, _UNCHECKED, _batch_verdicts
from .tcp import _Tcp
from .udp_icmp import _UdpIcmp

# IPv6 extension headers Zeek walks to find the transport protocol.
_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140})
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_TUNNEL_PROTOS = frozenset({4, 41, 47})  # IPv4 in IP, IPv6 in IP, GRE
#: Batches of at least this many Ethernet frames get their checksums verified in one numpy pass.
_BATCH_CHECKSUM_MIN = 16


class _Decoder(_Tcp, _UdpIcmp):
    """Stage of :class:`~edgebot.edge.meter.FlowMeter`: frames down to their transport handler."""

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
