"""Flow-meter throughput on one core: packets/s and flows/s on the repo's real captures.

Run from the repository root (after ``.venv/bin/pip install -e . --no-deps``)::

    .venv/bin/python benchmarks/bench_meter.py            # median of 3, pinned to one core
    .venv/bin/python benchmarks/bench_meter.py --repeat 5 --json meter.json

The pcaps are decompressed into memory first, so the figures are for the meter alone
(link/IP/transport decoding, the Zeek state machine, timers, flow records); a separate line
gives the end-to-end replay of the compressed file. Times are CPU seconds of this process
(``time.process_time``), which the other jobs on a shared machine disturb less than wall
time. It also reports the memory an active flow costs, and how far the flows agree with
the conn.log Zeek wrote for the 4-1 capture.

Reference figures, Intel Xeon (x86-64) container with 2 shared cores, Python 3.11.7, pinned
to one core, median of 3 (2026-11-26; the machine was shared, expect +-15 %):

==============  =======  =====  =========  =========  =======  =========
capture         packets  flows  checksums  packets/s  flows/s  us/packet
==============  =======  =====  =========  =========  =======  =========
4-1 honeypot    21664    452    verified   299,000    6,200    3.3
4-1 honeypot    21664    452    skipped    358,000    7,500    2.8
34-1 Mirai C&C  36797    6706   verified   125,000    22,800   8.0
34-1 Mirai C&C  36797    6706   skipped    132,000    24,100   7.6
==============  =======  =====  =========  =========  =======  =========

End to end from the .xz files (decompression included): 176,000 and 103,000 packets/s.
Memory per active flow: 1.7 kB (TCP), 0.8 kB (UDP). Agreement with Zeek on 4-1: 452/452
connections found, all with the same packets and IP bytes per direction, conn_state,
history and payload bytes. The 34-1 capture is one new connection per 5.5 packets, so its
rate is bound by per-flow work (flow creation, Zeek's timers, the flow record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Dict, List, Tuple

from edgebot import datasets
from edgebot.edge.meter import FlowMeter
from edgebot.edge.pcapfile import PcapReader
from edgebot.edge.sources.pcap import PcapSource

REPO = Path(__file__).resolve().parents[1]

PCAPS = {
    "4-1 honeypot": datasets.pcap("hue_4_1"),
    "34-1 Mirai C&C": datasets.pcap("mirai_34_1"),
}
CONN_4_1 = datasets.iot23("4-1")


def machine() -> Dict[str, object]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "arch": platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "system": platform.platform()}


def pin_to_one_core() -> str:
    """Run on a single core, like the gateway's agent loop."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity)"


def load(path: Path) -> Tuple[int, List[tuple]]:
    with PcapReader(path) as reader:
        return reader.linktype, list(reader.batches())


def meter_once(linktype: int, batches: List[tuple], verify: bool) -> Tuple[float, float, int, int]:
    meter = FlowMeter(verify_checksums=verify)
    flows = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for buf, packets in batches:
        flows += len(meter.add_batch(buf, packets, linktype))
    flows += len(meter.flush())
    return time.process_time() - cpu, time.perf_counter() - wall, meter.stats["packets"], flows


def memory_per_flow(count: int = 5000) -> Dict[str, float]:
    """Bytes of Python heap per active flow (TCP after a SYN, UDP after one datagram)."""
    import struct

    def frame(proto: int, i: int) -> bytes:
        src = bytes((10, 1, (i >> 8) & 255, i & 255))
        if proto == 6:
            l4 = struct.pack("!HHIIBBHHH", 40000, 80, i, 0, 0x50, 0x02, 1024, 0, 0)
        else:
            l4 = struct.pack("!HHHH", 40000, 53, 8, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0, src, b"\x08\x08\x08\x08")
        return b"\x02" * 12 + b"\x08\x00" + ip + l4

    result = {}
    for name, proto in (("tcp", 6), ("udp", 17)):
        frames = [frame(proto, i) for i in range(count)]
        meter = FlowMeter(max_flows=count + 1, verify_checksums=False)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i, f in enumerate(frames):
            meter.add_packet(1000.0 + i * 1e-4, f)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert meter.active_flows == count
        result[name] = (after - before) / count
    return result


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one core")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    pinning = "not pinned" if args.no_pin else pin_to_one_core()
    info = machine()
    print(f"# {info['cpu']} ({info['arch']}, {info['cores']} cores), Python {info['python']}, {pinning}")
    rows = []
    header = f"{'capture':<16} {'packets':>8} {'flows':>6} {'checksums':>9} {'packets/s':>10} {'flows/s':>8} {'us/packet':>9}"
    print(header)
    print("-" * len(header))
    for name, path in PCAPS.items():
        linktype, batches = load(path)
        for verify in (True, False):
            runs = [meter_once(linktype, batches, verify) for _ in range(args.repeat)]
            cpu = statistics.median(r[0] for r in runs)
            packets, flows = runs[0][2], runs[0][3]
            row = {"capture": name, "packets": packets, "flows": flows, "checksums": "verified" if verify else "skipped",
                   "cpu_s": cpu, "wall_s": statistics.median(r[1] for r in runs),
                   "packets_per_s": packets / cpu, "flows_per_s": flows / cpu}
            rows.append(row)
            print(f"{name:<16} {packets:>8} {flows:>6} {row['checksums']:>9} {row['packets_per_s']:>10,.0f} "
                  f"{row['flows_per_s']:>8,.0f} {cpu / packets * 1e6:>9.2f}")
    print()
    for _name, path in PCAPS.items():
        cpu = time.process_time()
        source = PcapSource(path)
        flows = sum(1 for _ in source)
        cpu = time.process_time() - cpu
        packets = source.stats()["packets"]
        print(f"end to end from {path.name[-40:]}: {packets / cpu:,.0f} packets/s ({flows} flows, xz included)")
    memory = memory_per_flow()
    print(f"memory per active flow: tcp {memory['tcp']:,.0f} B, udp {memory['udp']:,.0f} B")
    agreement = None
    if CONN_4_1.exists():
        from edgebot.readers import open_flows

        sys.path.insert(0, str(REPO / "tests"))  # the comparison is a test helper, not part of the edge path
        from zeek_agreement import compare_with_zeek

        result = compare_with_zeek(PcapSource(PCAPS["4-1 honeypot"]), open_flows(CONN_4_1))
        agreement = {k: v for k, v in result.items() if k != "mismatches"}
        print(f"agreement with Zeek on 4-1: found {result['found']}/{result['zeek']}, same counts "
              f"{result['same_counts_rate']:.1%}, same conn_state {result['same_state_rate']:.1%}, "
              f"same history {result['same_history_rate']:.1%}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "pinning": pinning, "rows": rows,
                                         "memory_per_flow": memory, "agreement_4_1": agreement}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
