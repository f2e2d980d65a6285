"""One side of ``make pi-check``: replay and score with the installed edgebot wheel, in this process.

Run by ``benchmarks/pi_check/run.py``, once with the x86-64 Python and once per aarch64 variant
under ``qemu-aarch64-static``; ``PYTHONPATH`` points at a ``pip install --target`` directory that
holds the built wheel with the ``edge`` extra, so the import of ``edgebot`` below is the wheel's
(the script refuses to run otherwise). Nothing here starts a subprocess: under qemu-user without
binfmt_misc, a child process would run on the host CPU, not the emulated one.

What it does, all in-process:

1. loads the bundle with :func:`edgebot.bundle.load_bundle` (the real int8 interpreter and
   XGBoost of this platform);
2. replays every given pcap through :class:`edgebot.edge.agent.Agent` with a JSON-lines sink,
   recording the hybrid, anomaly and fused score of every window the agent scored;
3. scores every window (labeled or not) of every given Zeek-style flow log offline with
   :meth:`Bundle.score_components` (the windows ``edgebot eval`` builds).

Writes ``<out>/result.json`` (platform, versions, per-input incidents and counts) and
``<out>/scores.npz`` (per input: ``<name>.hybrid``, ``.anomaly``, ``.fused`` float32 arrays).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("pi_check.worker")

#: The agent batches by size only (no wall-clock flush), so slow emulation batches like x86.
MAX_BATCH_DELAY_S = 3600.0  # the config's upper bound; a replay under emulation ends well within it


class RecordingBundle:
    """A loaded bundle that keeps every score the agent asks it for (same results, plus a copy)."""

    def __init__(self, bundle: Any) -> None:
        self._bundle = bundle
        self.parts: list[dict[str, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bundle, name)

    def score(self, W: np.ndarray) -> np.ndarray:
        parts = self._bundle.score_components(W)
        self.parts.append({k: np.array(v, dtype=np.float32, copy=True) for k, v in parts.items()})
        return parts["fused"]

    def take(self) -> dict[str, np.ndarray]:
        """The recorded scores in scoring order, then forget them."""
        keys = ("hybrid", "anomaly", "fused")
        out = {k: np.concatenate([p[k] for p in self.parts]) if self.parts else np.zeros(0, np.float32)
               for k in keys}
        self.parts = []
        return out


def replay_pcap(recorder: RecordingBundle, bundle_dir: Path, pcap: Path, out: Path) -> dict:
    """Replay one pcap through the agent in-process; returns its incidents and counts."""
    from edgebot.edge.config import load_config
    from edgebot.edge.agent import Agent

    jsonl = out / (pcap.name.split(".pcap")[0] + ".incidents.jsonl")
    if jsonl.exists():
        jsonl.unlink()
    cfg = load_config(None, {
        "bundle": str(bundle_dir), "source.pcap": str(pcap), "jsonl.path": str(jsonl),
        "gateway_id": "pi-check", "scoring.max_batch_delay_s": MAX_BATCH_DELAY_S,
    }).validate()
    t0 = time.perf_counter()
    agent = Agent(cfg, bundle=recorder)
    agent.start()
    summary = agent.run()
    seconds = time.perf_counter() - t0
    lines = jsonl.read_text().splitlines() if jsonl.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    incidents = [r for r in records if r.get("kind", "incident") == "incident"]
    return {"kind": "pcap", "path": str(pcap), "flows": summary.flows, "packets": summary.packets,
            "incident_counts": dict(summary.incidents), "incidents": incidents, "seconds": seconds}


def score_flow_log(bundle: Any, path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Score every window of one Zeek-style flow log offline (all rows feed and get a window)."""
    from edgebot.readers import read_flows

    t0 = time.perf_counter()
    records, readers = read_flows([path])
    capture = readers[0].scenario or path.name
    keys = [f"{r.scenario or capture}|{r.orig_h}" for r in records]
    X = bundle.scale(bundle.featurize(records))
    W = bundle.sequences(X, keys, np.array([r.ts for r in records], dtype=np.float64))
    parts = bundle.score_components(W)
    info = {"kind": "flow-log", "path": str(path), "flows": len(records), "seconds": time.perf_counter() - t0}
    return info, {k: np.asarray(v, dtype=np.float32) for k, v in parts.items()}


def versions(bundle: Any) -> dict:
    """Platform and package versions of this side of the comparison."""
    from importlib import metadata

    import edgebot

    out = {"machine": platform.machine(), "python": platform.python_version(), "edgebot": edgebot.__version__,
           "edgebot_file": edgebot.__file__, "runtime": bundle.runtime, "runtime_version": bundle.runtime_version}
    for dist in ("numpy", "xgboost-cpu", "xgboost", "ai-edge-litert", "tflite-runtime", "paho-mqtt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--pcap", action="append", default=[], type=Path)
    ap.add_argument("--flow-log", action="append", default=[], type=Path)
    ap.add_argument("--site", type=Path, help="refuse to run unless edgebot is imported from here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.perf_counter()

    import edgebot
    from edgebot.bundle import load_bundle
    from edgebot.errors import EdgebotError

    if args.site is not None and not Path(edgebot.__file__).resolve().is_relative_to(args.site.resolve()):
        print(f"Error: edgebot comes from {edgebot.__file__}, not from the wheel in {args.site}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        bundle = load_bundle(args.bundle)
        load_s = time.perf_counter() - t0
        recorder = RecordingBundle(bundle)
        inputs: dict[str, dict] = {}
        arrays: dict[str, np.ndarray] = {}
        for pcap in args.pcap:
            info = replay_pcap(recorder, args.bundle, pcap, args.out)
            parts = recorder.take()
            info["windows"] = int(len(parts["fused"]))
            inputs[pcap.name] = info
            arrays.update({f"{pcap.name}.{k}": v for k, v in parts.items()})
            log.warning("%s: %d flows, %d windows, %s in %.1f s", pcap.name, info["flows"], info["windows"],
                        info["incident_counts"], info["seconds"])
        for path in args.flow_log:
            info, parts = score_flow_log(bundle, path)
            info["windows"] = int(len(parts["fused"]))
            inputs[path.name] = info
            arrays.update({f"{path.name}.{k}": v for k, v in parts.items()})
            log.warning("%s: %d windows in %.1f s", path.name, info["windows"], info["seconds"])
    except EdgebotError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    result = {"versions": versions(bundle), "bundle": {"id": bundle.bundle_id, "threshold": bundle.threshold},
              "load_seconds": load_s, "seconds": time.perf_counter() - t_start, "inputs": inputs}
    (args.out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    np.savez_compressed(args.out / "scores.npz", **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
