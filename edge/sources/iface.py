"""Live capture from a network interface with a Linux AF_PACKET socket (no libpcap needed)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, Optional

from edgebot.edge.plugins import Flag
from edgebot.edge.sources.base import SOURCES, FlowSource
from edgebot.edge.sources.pcap import make_meter
from edgebot.errors import SourceError
from edgebot.flow import FlowRecord

if TYPE_CHECKING:  # imported where used: the config and `edgebot run --help` load this module
    from edgebot.edge.config import AgentConfig
    from edgebot.edge.meter import FlowMeter

logger = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 0x8  # the kernel will fill in the checksum later (offload)

# ARPHRD_* hardware types -> how frames start.
_ETHERNET_LIKE = {1, 772}  # ARPHRD_ETHER, ARPHRD_LOOPBACK
_RAW_IP = {65534, 776, 778, 512, 519, 823}  # NONE (tun), SIT, IPGRE, PPP, RAWIP, IP6GRE
_ARPHRD_LOOPBACK = 772

_AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
_STATS = struct.Struct("II")  # struct tpacket_stats: packets, drops


def _capture_permission_message(iface: str) -> str:
    binary = os.path.realpath(sys.executable)
    return (
        f"no permission to capture on {iface!r}: grant the capability with "
        f"`sudo setcap cap_net_raw,cap_net_admin+eip {binary}`, run as root, or run the "
        f"systemd unit with AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN"
    )


@SOURCES.register
class LiveSource(FlowSource):
    """Flows metered live from a network interface.

    Uses a raw ``AF_PACKET`` socket (Linux), so neither libpcap nor root is needed, only
    the ``CAP_NET_RAW`` capability. Packets are timestamped on receipt; when the link is
    quiet the socket times out every ``poll_interval`` seconds and the meter's timers run
    on wall-clock time, so idle flows still end, and the iterator yields ``None`` as a tick.
    Iteration ends after :meth:`stop` (from another thread or a signal handler), flushing
    the flows still open.

    Parameters
    ----------
    iface : str
        Interface name, e.g. ``"eth0"``, ``"br-lan"`` or ``"lo"``.
    meter_options : mapping, optional
        ``max_flows``, ``timeouts``, ``verify_checksums`` (see :class:`FlowMeter`).
    promiscuous : bool
        Also see frames not addressed to this host (a gateway that routes the traffic
        sees it without this).
    poll_interval : float
        Seconds between timer runs while no packet arrives.
    buffer_bytes : int
        Kernel receive buffer; larger absorbs bursts without drops.

    Raises
    ------
    SourceError
        Not Linux, no capture permission (the message says what to grant), or no such
        interface.
    """

    type = "iface"
    order = 20
    location_is_path = False
    location_doc = "A live network interface (needs CAP_NET_RAW)."
    live = True
    flags = (Flag("--iface", "source.iface", "Capture live on this interface (needs CAP_NET_RAW)."),)

    @classmethod
    def location_problems(cls, value: str) -> list[str]:
        """An empty name, or one this machine has no interface of (``/sys/class/net``)."""
        net = Path("/sys/class/net")
        if not value:
            return ["source.iface: empty interface name"]
        if net.is_dir() and not (net / value).exists():
            known = ", ".join(sorted(p.name for p in net.iterdir()))
            return [f"source.iface: no network interface named {value!r} (this machine has: {known})"]
        return []

    @classmethod
    def from_config(cls, config: AgentConfig, *, profile: Optional[str] = None) -> LiveSource:
        """Capture on ``[source] iface`` with ``limits.max_active_flows``."""
        return cls(config.source.iface, meter_options={"max_flows": config.limits.max_active_flows})

    def __init__(self, iface: str, meter_options: Optional[Mapping[str, Any]] = None,
                 promiscuous: bool = False, poll_interval: float = 1.0,
                 buffer_bytes: int = 4 * 1024 * 1024) -> None:
        if not hasattr(socket, "AF_PACKET"):
            raise SourceError("live capture needs Linux AF_PACKET sockets; on this system replay a pcap instead")
        if poll_interval <= 0:
            raise SourceError(f"poll_interval must be positive, got {poll_interval}")
        self.iface = iface
        self.poll_interval = float(poll_interval)
        self._sock = self._open(iface, promiscuous, buffer_bytes)  # first: permission errors say what to grant
        try:
            from edgebot.edge.pcapfile import LINKTYPE_ETHERNET, LINKTYPE_RAW

            self._linktypes = (LINKTYPE_ETHERNET, LINKTYPE_RAW)
            self._meter: FlowMeter = make_meter(meter_options, f"iface:{iface}")
        except BaseException:
            self._sock.close()
            raise
        self._stop = threading.Event()
        self._received = 0
        self._skipped = 0
        self._kernel_drops = 0
        self._closed = False

    @staticmethod
    def _open(iface: str, promiscuous: bool, buffer_bytes: int) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise SourceError(_capture_permission_message(iface)) from None
        try:
            sock.bind((iface, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                names = ", ".join(name for _index, name in socket.if_nameindex())
                raise SourceError(f"no such interface {iface!r}; available: {names}") from None
            raise SourceError(f"cannot capture on {iface!r}: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            if promiscuous:
                ifindex = socket.if_nametoindex(iface)
                mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except PermissionError:
            sock.close()
            raise SourceError(_capture_permission_message(iface)) from None
        except OSError as exc:
            sock.close()
            raise SourceError(f"cannot configure capture on {iface!r}: {exc.strerror or exc}") from None
        return sock

    @property
    def description(self) -> str:
        return f"iface {self.iface}"

    @property
    def meter(self) -> FlowMeter:
        """The meter (for its counters and settings)."""
        return self._meter

    def stop(self) -> None:
        """End iteration at the next packet or poll interval (thread-safe)."""
        self._stop.set()

    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        LINKTYPE_ETHERNET, LINKTYPE_RAW = self._linktypes  # imported at construction
        sock, meter = self._sock, self._meter
        sock.settimeout(self.poll_interval)
        recvmsg = sock.recvmsg
        anc_size = socket.CMSG_SPACE(_AUXDATA.size)
        verify = meter.verify_checksums
        next_poll = time.time() + self.poll_interval
        while not self._stop.is_set():
            try:
                frame, ancdata, _flags, address = recvmsg(65536, anc_size)
            except socket.timeout:
                now = time.time()
                next_poll = now + self.poll_interval
                yield from meter.expire(now)
                yield None  # a tick: time passes while the link is quiet
                continue
            except OSError as exc:
                if self._stop.is_set() or exc.errno == errno.EBADF:
                    break
                raise SourceError(f"capture on {self.iface!r} failed: {exc.strerror or exc}") from None
            now = time.time()
            _ifname, _proto, pkttype, hatype, _addr = address
            if hatype == _ARPHRD_LOOPBACK and pkttype == PACKET_OUTGOING:
                continue  # loopback shows every packet twice; keep the incoming copy
            self._received += 1
            if hatype in _ETHERNET_LIKE:
                linktype = LINKTYPE_ETHERNET
            elif hatype in _RAW_IP:
                linktype = LINKTYPE_RAW
            else:
                self._skipped += 1
                continue
            check = verify
            wirelen = len(frame)
            for level, kind, data in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                    status, tp_len = _AUXDATA.unpack_from(data)[:2]
                    wirelen = tp_len
                    if status & TP_STATUS_CSUMNOTREADY:
                        check = False
            yield from meter.add_packet(now, frame, linktype, wirelen, check)
            if now >= next_poll:
                next_poll = now + self.poll_interval
                self._read_kernel_stats()
        yield from meter.flush()

    def _read_kernel_stats(self) -> None:
        try:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        except OSError:
            return
        _packets, drops = _STATS.unpack(raw)
        self._kernel_drops += drops  # the kernel resets its counters on every read

    def stats(self) -> Dict[str, Any]:
        if not self._closed:
            self._read_kernel_stats()
        return {
            "type": self.type,
            "iface": self.iface,
            "received": self._received,
            "kernel_drops": self._kernel_drops,
            "skipped_link_types": self._skipped,
            **self._meter.stats,
        }

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stop.set()
            self._sock.close()
