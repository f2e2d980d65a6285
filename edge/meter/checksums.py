"""Internet checksums of IPv4, TCP, UDP and ICMP packets: one segment at a time, or a whole batch with numpy."""

from __future__ import annotations

import operator
from typing import List, Sequence

from ..pcapfile import PacketRef

# Checksum verdicts computed for a whole batch (see _batch_verdicts).
_UNCHECKED, _GOOD, _BAD_IP, _BAD_L4 = 0, 1, 2, 3
_SECOND, _THIRD = operator.itemgetter(1), operator.itemgetter(2)
_np = None


def _l4_checksum_ok(buf: bytes, l3: int, l4: int, plen: int, proto: int, v6: bool) -> bool:
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
