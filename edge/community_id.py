"""Community ID v1 flow hashes (https://github.com/corelight/community-id-spec), stdlib only."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:  # annotation only: this module stays stdlib-only at run time
    from edgebot.flow import FlowRecord

__all__ = ["community_id", "flow_community_id"]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58
PROTO_SCTP = 132
_PORTED = frozenset({PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6, PROTO_SCTP})
_PROTO_NUMBERS = {"icmp": PROTO_ICMP, "tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp6": PROTO_ICMP6,
                  "ipv6-icmp": PROTO_ICMP6, "sctp": PROTO_SCTP}

# Two-way ICMP messages: type -> counterpart type, as the spec's reference implementation
# maps them (note: router advertisement does not map back to solicitation in ICMPv4).
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
                139: 140, 140: 139, 144: 145, 145: 144}

Address = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]


def _packed(addr: Address) -> bytes:
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"a packed address has 4 or 16 bytes, got {len(addr)}")
        return addr
    if isinstance(addr, str):
        addr = ipaddress.ip_address(addr)
    return addr.packed


def community_id(saddr: Address, daddr: Address, proto: Union[int, str],
                 sport: Optional[int] = None, dport: Optional[int] = None,
                 seed: int = 0, use_base64: bool = True) -> str:
    """Community ID v1 of a flow, the same from either direction.

    Parameters
    ----------
    saddr, daddr : str, bytes or ipaddress object
        Source and destination addresses (both IPv4 or both IPv6).
    proto : int or str
        IP protocol number, or ``"tcp"``/``"udp"``/``"icmp"``/``"icmp6"``/``"sctp"``.
    sport, dport : int, optional
        Ports; for ICMP and ICMPv6 the message type and code. Ignored for protocols
        without ports.
    seed : int
        The 16-bit seed agreed between the tools that compare IDs (default 0).
    use_base64 : bool
        Base64 (the standard form) or hex digest.

    Returns
    -------
    str
        ``"1:" + base64(sha1(seed, saddr, daddr, proto, 0, sport, dport))`` with the
        endpoints in the spec's canonical order.

    Examples
    --------
    >>> community_id("128.232.110.120", "66.35.250.204", "tcp", 34855, 80)
    '1:LQU9qZlK+B5F3KDmev6m5PMibrg='
    """
    if isinstance(proto, str):
        try:
            proto = _PROTO_NUMBERS[proto.lower()]
        except KeyError:
            raise ValueError(f"unknown protocol name {proto!r}; pass the IP protocol number") from None
    src, dst = _packed(saddr), _packed(daddr)
    if len(src) != len(dst):
        raise ValueError("both addresses must be IPv4 or both IPv6")
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"seed must fit in 16 bits, got {seed}")
    one_way = False
    if proto in _PORTED and sport is not None and dport is not None:
        if proto == PROTO_ICMP or proto == PROTO_ICMP6:
            pairs = _ICMP4_PAIRS if proto == PROTO_ICMP else _ICMP6_PAIRS
            if sport in pairs:
                dport = pairs[sport]
            else:
                one_way = True
        if not one_way and not (src < dst or (src == dst and sport <= dport)):
            src, dst, sport, dport = dst, src, dport, sport
        tail = struct.pack("!HH", sport, dport)
    else:
        if not (src < dst or src == dst):
            src, dst = dst, src
        tail = b""
    digest = hashlib.sha1(struct.pack("!H", seed) + src + dst + struct.pack("BB", proto, 0) + tail).digest()
    return "1:" + (base64.b64encode(digest).decode("ascii") if use_base64 else digest.hex())


def flow_community_id(flow: FlowRecord, seed: int = 0) -> str:
    """Community ID of a :class:`~edgebot.flow.FlowRecord` (ICMP ports are type and code)."""
    proto = flow.proto
    orig_h = flow.orig_h
    if proto == "icmp" and ":" in orig_h:
        proto = "icmp6"
    return community_id(orig_h, flow.resp_h, proto, flow.orig_p,
                        flow.resp_p, seed=seed)
