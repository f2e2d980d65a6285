"""Packets to bidirectional flows that match what Zeek writes in conn.log (pure Python, no libpcap).

The meter follows Zeek's own connection logic, ported from its C++ sources (``Sessions.cc``,
``Conn.cc``, ``analyzer/protocol/tcp``, ``udp``, ``icmp``, ``conn-size``, ``Reassem.cc``, and
``base/protocols/conn/main.zeek``), so that a pcap metered here and the conn.log Zeek wrote
for it agree flow by flow:

* the originator is the sender of the first packet, flipped by Zeek's ``likely_server_ports``
  heuristic when a TCP connection starts without a plain SYN or a UDP flow starts from a
  server port (history ``^``), and by the SYN/SYN-ACK reversal rule;
* TCP endpoint states, ``conn_state`` and ``history`` letters come from a port of Zeek's TCP
  state machine, including checksum (``C``), retransmission (``T``), zero-window (``W``) and
  content-gap (``G``) letters, the latter from a model of Zeek's reassembler;
* ``orig_pkts``/``orig_ip_bytes`` count what Zeek's ConnSize analyzer counts (packets with a
  bad checksum are not counted), ``orig_bytes`` come from TCP sequence numbers;
* flows end on Zeek's timers (inactivity 5 min TCP / 1 min UDP and ICMP, 5 s attempt delay,
  5 s close delay, the TCP expire timer), fired in packet time the way Zeek fires them, and
  on connection reuse (a new SYN on a closed or re-synchronised 5-tuple);
* IPv4 fragments are reassembled and the datagram counts once, and IP-in-IP and GRE
  packets are metered by their inner packet, as in Zeek.

Where Zeek versions differ, the meter follows Zeek 3.0, which wrote the IoT-23 logs: an exact
resend of the last segment is not a retransmission (``T``), and an originator RST with an
inactive responder is ``RSTOS0``.

Timers live in one heap: a packet costs one float comparison against the next due time, so
expiry is exact without scanning the flow table. The one shortcut: a TCP expire timer that
can do nothing until the flow's next packet is parked and re-armed on its 6 s cadence when
that packet comes (on quiet captures it would otherwise wake every 6 s for every flow).

The package follows the pipeline; :class:`FlowMeter` is assembled from one stage per module
(each a mixin over the state declared in :mod:`.state`):

==================  ===================================================================
``flow_meter``      :class:`FlowMeter`: the constructor, counters and public methods
``decode``          link layers, IPv4, IPv6 extension headers, IP-in-IP and GRE tunnels
``fragments``       IPv4 fragment reassembly with bounded memory
``checksums``       IP/TCP/UDP/ICMP checksums, per segment and per batch (numpy)
``tcp``             Zeek's TCP analyzer: lookup, reuse, endpoint states, history
``reassembly``      the model of Zeek's TCP reassembler (gaps, missed bytes, close)
``udp_icmp``        UDP and ICMP flows
``timers``          the flow table and Zeek's connection timers
``record``          the :class:`~edgebot.flow.FlowRecord` of an ended flow
``state``           timeouts, TCP states, the flow and endpoint objects
==================  ===================================================================

Measured agreement and speed: ``benchmarks/bench_meter.py``.
"""

from __future__ import annotations

from .flow_meter import FlowMeter, Unanswered
from .state import LIKELY_SERVER_PORTS, ZeekTimeouts

__all__ = ["ZeekTimeouts", "FlowMeter", "Unanswered", "LIKELY_SERVER_PORTS"]
