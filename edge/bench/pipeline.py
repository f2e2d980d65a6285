"""Pipeline level: end-to-end replays of a pcap through the agent on one core, null and JSON-lines sinks."""

from __future__ import annotations

from pathlib import Path

from .inputs import decompressed_copy
from .workers import _run_worker, _worker_json, edge_worker_cmd


def measure_pipeline(bundle_dir: Path, pcap: Path, workdir: Path, runs: int) -> dict:
    """End-to-end replay in a fresh edge-only process pinned to one core, null and JSON-lines sinks."""
    plain = decompressed_copy(pcap, workdir)
    sinks = {}
    for sink in ("null", "jsonl"):
        out = workdir / f"pipeline-{sink}.json"
        args = ["--bundle", str(bundle_dir), "--pcap", str(plain), "--sink", sink, "--repeat", str(runs),
                "--jsonl-path", str(workdir / "incidents.jsonl"), "--out", str(out)]
        proc = _run_worker(edge_worker_cmd("pipeline", *args), f"pipeline replay ({sink} sink)")
        sinks[sink] = _summarize_replays(_worker_json(proc, out, f"pipeline ({sink} sink)"))
    compressed = None
    if plain != pcap:
        out = workdir / "pipeline-compressed.json"
        args = ["--bundle", str(bundle_dir), "--pcap", str(pcap), "--sink", "null", "--repeat", str(runs),
                "--out", str(out)]
        proc = _run_worker(edge_worker_cmd("pipeline", *args), "pipeline replay (compressed input)")
        compressed = _summarize_replays(_worker_json(proc, out, "pipeline (compressed input)"))
    head = sinks["jsonl"]
    return {
        "available": True,
        "note": ("agent replay (meter, featurizer, windows, int8 scoring, incidents, sink) in a fresh edge-only "
                 "process pinned to one core; headline figures: JSON-lines sink, median run by wall time"),
        "pcap": str(pcap),
        "input": "decompressed copy (xz/gzip decoding not included)" if plain != pcap else "as given",
        "packets": head["packets"], "flows": head["flows"],
        "packets_per_s": head["packets_per_s"], "flows_per_s": head["flows_per_s"],
        "packets_per_cpu_s": head["packets_per_cpu_s"],
        "verdict_latency_ms": head["verdict_latency_ms"],
        "core": head["core"], "runs": runs,
        "sinks": sinks,
        "compressed_input": compressed,
    }


def _summarize_replays(result: dict) -> dict:
    runs = sorted(result["runs"], key=lambda r: r["seconds"])
    med = runs[len(runs) // 2]
    return {
        "packets": med["packets"], "flows": med["flows"], "seconds": med["seconds"], "cpu_seconds": med["cpu_seconds"],
        "packets_per_s": med["packets"] / med["seconds"], "flows_per_s": med["flows"] / med["seconds"],
        "packets_per_cpu_s": med["packets"] / med["cpu_seconds"] if med["cpu_seconds"] > 0 else None,
        "packets_per_s_runs": [r["packets"] / r["seconds"] for r in runs],
        "verdict_latency_ms": med["verdict_latency_ms"], "incidents": med["incidents"],
        "peak_rss_mb": result.get("peak_rss_mb"), "core": result.get("core"),
    }


def _empty_pipeline(note: str) -> dict:
    return {"available": False, "note": note, "packets": None, "flows": None, "packets_per_s": None,
            "flows_per_s": None, "packets_per_cpu_s": None,
            "verdict_latency_ms": {"p50": None, "p95": None, "p99": None}, "sinks": {}, "compressed_input": None}
