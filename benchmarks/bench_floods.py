"""Floods against the real agent: peak memory, what was evicted, and whether an infected host still shows.

Writes each flood to a temporary directory, runs ``edgebot run`` on it in a subprocess (JSON
lines sink, ``--summary-json``) and reports, per flood, the agent's peak RSS (its ``VmHWM``,
polled every 50 ms, and ``wait4``'s ``ru_maxrss``), the run time, the eviction and drop counters of the source and
the summary, and whether the Mirai-infected host 192.168.1.195, whose real traffic (the bundled
IoT-23 34-1 capture, or its Zeek conn log) is spliced into the middle of the flood, still gets
its ``new`` incident. Target (issue 12): peak RSS <= 120 MB on every flood, the host reported.

Floods (sizes are options; defaults are the issue's):

* ``syn``: SYN flood, ``--flood-packets`` SYNs from as many distinct sources to one server.
* ``scan``: one host (192.168.1.50) sends SYNs to as many distinct (address, port) peers.
* ``fragments``: 30 never-completing datagrams of overlapping fragments at distinct offsets
  (``--overlap-fragments`` each), then ``--lone-fragments`` first fragments of distinct
  datagrams that never complete; ordinary 1,514-byte frames.
* ``zeek-line``: a Zeek conn log (the 34-1 log) with one ``--line-mb`` MB row in its middle,
  read with ``--zeek-log --no-follow``.
* ``baseline``: the Mirai capture alone, for reference.

The pcap floods last ``--flood-seconds`` (default 500 s at 2,000 packets/s) and start 100 s
before the capture's first packet, so the host's first incident (about 280 s into the
capture) is raised in the middle of the flood. Packets are written with numpy in bulk
(checksums included), merged with the capture's packets in time order.

The bundle: ``make demo`` builds ``demo-out/bundle`` (the default). Example::

    python benchmarks/bench_floods.py --bundle demo-out/bundle
    python benchmarks/bench_floods.py --floods syn fragments --flood-packets 100000 --json floods.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from edgebot import datasets

REPO = Path(__file__).resolve().parents[1]
MIRAI_PCAP = datasets.pcap("mirai_34_1")
MIRAI_LOG = datasets.iot23("34-1")
INFECTED = "192.168.1.195"
SCANNER = "192.168.1.50"
TARGET_RSS_MB = 120.0
FLOODS = ("baseline", "syn", "scan", "fragments", "zeek-line")

_ETH = bytes.fromhex("020000000001" "020000000002" "0800")


# -- writing packets in bulk --------------------------------------------------------------------


def _ip_words(a: np.ndarray) -> np.ndarray:
    """(n,) uint32 IPv4 addresses -> (n, 2) big-endian 16-bit words."""
    return np.stack([(a >> 16) & 0xFFFF, a & 0xFFFF], axis=1).astype(np.uint32)


def _fold(total: np.ndarray) -> np.ndarray:
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


def syn_records(ts: np.ndarray, src: np.ndarray, sport: np.ndarray, dst: np.ndarray, dport: np.ndarray,
                seed: int = 0) -> np.ndarray:
    """pcap records of Ethernet/IPv4/TCP SYNs, one row each: (n, 70) uint8, checksums right."""
    n = len(ts)
    rng = np.random.default_rng(seed)
    rec = np.zeros((n, 16 + 54), dtype=np.uint8)
    sec = ts.astype(np.uint64)
    usec = np.round((ts - sec) * 1e6).astype(np.uint64).clip(0, 999_999)
    header = np.stack([sec, usec, np.full(n, 54), np.full(n, 54)], axis=1).astype("<u4")
    rec[:, :16] = header.view(np.uint8).reshape(n, 16)
    rec[:, 16:30] = np.frombuffer(_ETH, dtype=np.uint8)
    ip = np.zeros((n, 10), dtype=">u2")
    ip[:, 0] = 0x4500
    ip[:, 1] = 40
    ip[:, 2] = rng.integers(0, 65536, n)
    ip[:, 4] = (64 << 8) | 6
    ip[:, 6:8] = _ip_words(src)
    ip[:, 8:10] = _ip_words(dst)
    ip[:, 5] = _fold(ip.astype(np.uint32).sum(axis=1))
    tcp = np.zeros((n, 10), dtype=">u2")
    tcp[:, 0] = sport
    tcp[:, 1] = dport
    seq = rng.integers(0, 2**32, n, dtype=np.uint64)
    tcp[:, 2] = seq >> 16
    tcp[:, 3] = seq & 0xFFFF
    tcp[:, 6] = (5 << 12) | 0x02
    tcp[:, 7] = 64240
    pseudo = _ip_words(src).sum(axis=1) + _ip_words(dst).sum(axis=1) + 6 + 20
    tcp[:, 8] = _fold(tcp.astype(np.uint32).sum(axis=1) + pseudo)
    rec[:, 30:50] = ip.view(np.uint8).reshape(n, 20)
    rec[:, 50:70] = tcp.view(np.uint8).reshape(n, 20)
    return rec


def fragment_records(ts: np.ndarray, src: np.ndarray, ident: np.ndarray, offset: np.ndarray,
                     dst: int = 0xC0A80101) -> np.ndarray:
    """pcap records of 1,514-byte IPv4 fragments (More Fragments set, 1,480 payload bytes)."""
    n = len(ts)
    rec = np.zeros((n, 16 + 1514), dtype=np.uint8)
    sec = ts.astype(np.uint64)
    usec = np.round((ts - sec) * 1e6).astype(np.uint64).clip(0, 999_999)
    rec[:, :16] = np.stack([sec, usec, np.full(n, 1514), np.full(n, 1514)], axis=1).astype("<u4").view(
        np.uint8).reshape(n, 16)
    rec[:, 16:30] = np.frombuffer(_ETH, dtype=np.uint8)
    ip = np.zeros((n, 10), dtype=">u2")
    ip[:, 0] = 0x4500
    ip[:, 1] = 1500
    ip[:, 2] = ident
    ip[:, 3] = 0x2000 | (offset // 8)
    ip[:, 4] = (64 << 8) | 17
    ip[:, 6:8] = _ip_words(src)
    ip[:, 8:10] = _ip_words(np.full(n, dst, dtype=np.uint32))
    ip[:, 5] = _fold(ip.astype(np.uint32).sum(axis=1))
    rec[:, 30:50] = ip.view(np.uint8).reshape(n, 20)
    rec[:, 50:] = 0x41
    return rec


def read_capture(path: Path):
    """The capture's packets as (timestamps, list of record bytes) and its global header."""
    from edgebot.edge.pcapfile import PcapReader

    stamps, records = [], []
    with PcapReader(path) as reader:
        for buf, packets in reader.batches():
            for ts, offset, caplen, _wirelen in packets:
                stamps.append(ts)
                records.append(buf[offset - 16:offset + caplen])
    if reader.byte_order != "little" or reader.nanosecond or reader.linktype != 1:
        raise SystemExit(f"{path}: expected a little-endian microsecond Ethernet capture")
    return np.array(stamps), records


def write_merged(path: Path, flood: np.ndarray, flood_ts: np.ndarray, stamps: np.ndarray, records: List[bytes]) -> int:
    """Write flood records and the capture's records in time order; returns the file size."""
    order = np.argsort(flood_ts, kind="stable")
    flood, flood_ts = flood[order], flood_ts[order]
    cuts = np.searchsorted(flood_ts, stamps, side="right")
    with open(path, "wb") as out:
        out.write(np.array([0xA1B2C3D4], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes()
                  + np.array([0, 0, 262144, 1], "<u4").tobytes())
        start = 0
        for cut, record in zip(cuts.tolist(), records):
            if cut > start:
                out.write(flood[start:cut].tobytes())
                start = cut
            out.write(record)
        out.write(flood[start:].tobytes())
    return path.stat().st_size


def flood_times(n: int, t0: float, seconds: float) -> np.ndarray:
    return t0 - 100.0 + np.arange(n, dtype=np.float64) * (seconds / max(n, 1))


def _build_worker(flood: str, workdir: Path, args: argparse.Namespace) -> Path:
    return build(flood, workdir, args, read_capture(MIRAI_PCAP))


def build(flood: str, workdir: Path, args: argparse.Namespace, capture) -> Path:
    """Write one flood; returns the file the agent reads."""
    rng = np.random.default_rng(12)
    stamps, records = capture
    t0 = float(stamps[0])
    n = args.flood_packets
    path = workdir / f"{flood}.pcap"
    if flood == "baseline":
        write_merged(path, np.zeros((0, 70), np.uint8), np.zeros(0), stamps, records)
    elif flood == "syn":
        src = rng.permutation(np.arange(n, dtype=np.uint32) + 0x0A000000 + 1)  # n distinct sources
        rec = syn_records(flood_times(n, t0, args.flood_seconds), src, rng.integers(1024, 65536, n),
                          np.full(n, 0xC0A80101, dtype=np.uint32), np.full(n, 80))
        write_merged(path, rec, flood_times(n, t0, args.flood_seconds), stamps, records)
    elif flood == "scan":
        peers = rng.permutation(n).astype(np.uint64)  # n distinct (address, port) pairs
        dst = (0x0B000000 + peers // 1000).astype(np.uint32)
        dport = (1 + peers % 1000).astype(np.uint32)
        src = np.full(n, 0xC0A80132, dtype=np.uint32)  # 192.168.1.50
        ts = flood_times(n, t0, args.flood_seconds)
        rec = syn_records(ts, src, rng.integers(1024, 65536, n), dst, dport, seed=1)
        write_merged(path, rec, ts, stamps, records)
    elif flood == "fragments":
        k, lone = args.overlap_fragments, args.lone_fragments
        ident = np.concatenate([np.repeat(np.arange(30), k), 100 + np.arange(lone)]).astype(np.uint32) & 0xFFFF
        offset = np.concatenate([np.tile(np.arange(k) * 8 % 64000, 30), np.zeros(lone, np.int64)]).astype(np.uint32)
        src = np.concatenate([np.full(30 * k, 0x0A060606), 0x0A070000 + np.arange(lone) // 65536]).astype(np.uint32)
        ts = flood_times(len(ident), t0, args.flood_seconds)
        write_merged(path, fragment_records(ts, src, ident, offset), ts, stamps, records)
    elif flood == "zeek-line":
        import lzma

        path = workdir / "conn.log"
        lines = lzma.decompress(MIRAI_LOG.read_bytes()).split(b"\n")
        header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
        rows = [ln for ln in lines if ln and not ln.startswith(b"#")]
        half = len(rows) // 2
        with open(path, "wb") as out:
            out.write(b"\n".join(header + rows[:half]) + b"\n")
            block = b"1545404135.461712\tCx" + b"A" * (1 << 20)
            for _ in range(args.line_mb):
                out.write(block)
            out.write(b"\n" + b"\n".join(rows[half:]) + b"\n")
    else:
        raise SystemExit(f"unknown flood {flood!r}; choose from {', '.join(FLOODS)}")
    return path


# -- running the agent --------------------------------------------------------------------------


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident set of a live process (``VmHWM`` in ``/proc/PID/status``), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_agent(bundle: Path, source: Path, flood: str, workdir: Path, timeout: float) -> Dict[str, object]:
    """``edgebot run`` on ``source``; returns peak RSS, time, exit code, summary and incidents."""
    jsonl, summary = workdir / f"{flood}.jsonl", workdir / f"{flood}.summary.json"
    flag = ["--zeek-log", str(source), "--no-follow"] if flood == "zeek-line" else ["--pcap", str(source)]
    cmd = [sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(bundle), *flag, "--jsonl", str(jsonl),
           "--summary-json", str(summary), "--gateway-id", "bench"]
    start = time.perf_counter()
    hwm_kib = 0
    with open(workdir / f"{flood}.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = start + timeout
        while True:
            hwm_kib = max(hwm_kib, _vm_hwm_kib(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    messages = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.exists() else []
    incidents = [m for m in messages if m.get("kind") == "incident"]
    new_hosts = sorted({m["host"] for m in incidents if m.get("type") == "new"})
    data = json.loads(summary.read_text()) if summary.exists() else {}
    stderr = (workdir / f"{flood}.stderr").read_text(errors="replace").strip().splitlines()
    return {
        "exit_code": proc.returncode,
        "seconds": round(seconds, 1),
        # ru_maxrss of the exec'd agent also counts the RSS its parent had at fork (Linux keeps the
        # old mm's high-water mark at exec); this script keeps itself small (floods are built in
        # a separate process) and reports both that and the agent's own VmHWM, polled.
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "vm_hwm_mb": round(hwm_kib / 1024.0, 1),
        "infected_host_reported": INFECTED in new_hosts,
        "hosts_with_incidents": len(new_hosts),
        "incident_messages": len(incidents),
        "summary": {k: data.get(k) for k in ("flows", "packets", "evictions", "incidents", "peak_rss_mb")},
        "source_stats": data.get("source_stats", {}),
        "stderr_tail": stderr[-2:],
    }


COUNTERS = ("flows_evicted", "fragments_dropped", "fragments_evicted", "fragments_oversized", "fragments_too_many",
            "fragments_timed_out", "fragment_bytes_peak", "lines_too_long", "line_buffer_peak", "rows_skipped")


def report(results: Dict[str, Dict[str, object]]) -> str:
    rows = ["| flood | file MB | agent VmHWM MB | <= 120 MB | ru_maxrss MB | s | exit | 192.168.1.195 reported "
            "| flows | evictions (summary) | source counters |", "|" + " --- |" * 11]
    for flood, r in results.items():
        stats = r["source_stats"] or {}
        counters = ", ".join(f"{k} {stats[k]:,}" for k in COUNTERS if stats.get(k))
        summ = r["summary"] or {}
        rows.append(
            f"| {flood} | {r['file_mb']:,.0f} | {r['vm_hwm_mb']:.1f} | {'yes' if r['vm_hwm_mb'] <= TARGET_RSS_MB else 'NO'} "
            f"| {r['peak_rss_mb']:.1f} | {r['seconds']:.0f} | {r['exit_code']} | {'yes' if r['infected_host_reported'] else 'NO'} "
            f"| {summ.get('flows') or 0:,} | {summ.get('evictions')} | {counters or '-'} |"
        )
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "demo-out" / "bundle",
                        help="model bundle (make demo builds demo-out/bundle)")
    parser.add_argument("--floods", nargs="+", default=list(FLOODS), choices=FLOODS)
    parser.add_argument("--flood-packets", type=int, default=1_000_000, help="SYNs of the syn and scan floods")
    parser.add_argument("--flood-seconds", type=float, default=500.0)
    parser.add_argument("--overlap-fragments", type=int, default=3000, help="fragments of each of the 30 datagrams")
    parser.add_argument("--lone-fragments", type=int, default=60_000)
    parser.add_argument("--line-mb", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per agent run, seconds")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the floods here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        parser.error(f"{args.bundle}: no bundle there; run `make demo` (it builds demo-out/bundle) or give --bundle")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgebot-floods-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: Dict[str, Dict[str, object]] = {}
    spawn = multiprocessing.get_context("spawn")
    try:
        for flood in args.floods:
            t = time.perf_counter()
            with spawn.Pool(1) as pool:  # the floods' arrays never enter this process (see run_agent)
                source = pool.apply(_build_worker, (flood, workdir, args))
            size = source.stat().st_size
            print(f"{flood}: wrote {size / 1e6:,.0f} MB in {time.perf_counter() - t:.1f} s; running the agent",
                  file=sys.stderr, flush=True)
            results[flood] = {"file_mb": size / 1e6, **run_agent(args.bundle, source, flood, workdir, args.timeout)}
            r = results[flood]
            print(f"{flood}: VmHWM {r['vm_hwm_mb']} MB, ru_maxrss {r['peak_rss_mb']} MB, {r['seconds']} s, exit {r['exit_code']}, "
                  f"infected host reported: {r['infected_host_reported']} {r['stderr_tail']}", file=sys.stderr, flush=True)
            source.unlink()
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(results))
    if args.json:
        meta = {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count(),
                "args": {k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    ok = all(r["vm_hwm_mb"] <= TARGET_RSS_MB and r["infected_host_reported"] for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
