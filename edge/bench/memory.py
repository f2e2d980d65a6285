"""Memory and start-up: peak RSS and start-up to first score of the agent (edge only) and of TensorFlow + Keras."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Optional

from .workers import _run_worker, _worker_json, edge_worker_cmd


def measure_agent_process(bundle_dir: Path, pcap: Optional[Path], workdir: Path, runs: int) -> dict:
    """Start-up to first score and peak RSS of the agent in fresh edge-only processes (median of ``runs``)."""
    results = []
    for i in range(runs):
        out = workdir / f"agent-{i}.json"
        args = ["--bundle", str(bundle_dir), "--out", str(out)]
        if pcap is not None:
            args += ["--pcap", str(pcap)]
        t0 = time.time()
        proc = _run_worker(edge_worker_cmd("agent", *args, "--t0", repr(t0)), "agent start-up and memory")
        r = _worker_json(proc, out, "agent start-up")
        r["startup_s"] = r["t_first_score"] - t0
        r["phases_s"] = {
            "interpreter_start": r["t_main"] - t0, "imports": r["t_imported"] - r["t_main"],
            "bundle_load": r["t_bundle_loaded"] - r["t_imported"],
            "first_score": r["t_first_score"] - r["t_bundle_loaded"],
        }
        results.append(r)
    results.sort(key=lambda r: r["startup_s"])
    med = results[len(results) // 2]
    return {
        "startup_s": med["startup_s"],
        "startup_runs_s": [r["startup_s"] for r in results],
        "phases_s": med["phases_s"],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "rss_at_first_score_mb": med["rss_at_first_score_mb"],
        "workload": med["workload"],
        "blocked_modules": med["blocked_modules"],
        "training_stack_loaded": med["training_stack_loaded"],
    }


def measure_tf_process(run_dir: Path, workdir: Path, runs: int) -> dict:
    """Start-up to first score and peak RSS of a process that imports TensorFlow and loads the Keras models."""
    results = []
    for i in range(runs):
        out = workdir / f"tf-{i}.json"
        t0 = time.time()
        cmd = [sys.executable, "-m", "edgebot.convert.bench_worker", "startup", "--run-dir", str(run_dir),
               "--out", str(out), "--t0", repr(t0)]
        r = _worker_json(_run_worker(cmd, "TensorFlow start-up and memory"), out, "TensorFlow start-up")
        r["startup_s"] = r["t_first_score"] - t0
        results.append(r)
    results.sort(key=lambda r: r["startup_s"])
    med = results[len(results) // 2]
    return {
        "startup_s": med["startup_s"], "startup_runs_s": [r["startup_s"] for r in results],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "phases_s": {"import_tensorflow": med["t_imported"] - med["t_main"],
                     "load_models": med["t_loaded"] - med["t_imported"],
                     "first_score": med["t_first_score"] - med["t_loaded"]},
        "versions": med.get("versions", {}),
    }
