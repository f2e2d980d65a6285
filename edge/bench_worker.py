"""Edge-side workers of ``edgebot bench``: agent start-up and memory, pipeline replay (no TensorFlow in this process).

Started by :mod:`edgebot.edge.bench` through :data:`edgebot.edge.bench.workers.EDGE_BOOT`, which sets
``sys.modules[name] = None`` for TensorFlow, Keras, scikit-learn and pandas before edgebot is
imported, so the figures are those of a gateway with the edge extra only (an import of the
training stack would fail here, and the result lists what got loaded: nothing).

Modes (each writes one JSON object to ``--out``):

``agent``
    From process start to the first scored micro-batch (``t_*`` are ``time.time()`` stamps;
    the parent passes its own as ``--t0``), then the rest of the pcap (or 2,048 synthetic
    flows) and the peak RSS of the whole process.
``pipeline``
    ``--repeat`` replays of a pcap through a fresh agent each (bundle loaded once, outside
    the timing), pinned to one core, with a null or JSON-lines sink.
"""

from __future__ import annotations

import time

T_MAIN = time.time()  # noqa: E402  (first thing: the start-up clock)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional  # noqa: E402

from edgebot.lean import blocked_training_stack, loaded_training_stack  # noqa: E402

log = logging.getLogger(__name__)

def _config(bundle: str, pcap: Optional[str], state_dir: Optional[str] = None) -> Any:
    from edgebot.edge.config import load_config

    overrides = {"bundle": bundle, "gateway_id": "bench"}
    if pcap:
        overrides["source.pcap"] = pcap
    if state_dir:  # the site profile in it is loaded (and kept) even for a file replay
        overrides["state_dir"] = state_dir
        overrides["site.persist"] = "yes"
    return load_config(None, overrides)


class _SyntheticSource:
    """Seeded flows, fed in micro-batches with ticks like a pcap source (no pcap given)."""

    description = "synthetic flows"

    def __init__(self, n: int = 2048):
        from edgebot.edge.bench import synthetic_flows

        self._flows = synthetic_flows(n)

    def __iter__(self):
        for i, flow in enumerate(self._flows):
            yield flow
            if i % 256 == 255:
                yield None

    def stats(self) -> dict:
        return {"packets": 0}

    def close(self) -> None:
        """Nothing to release (the flows are in memory)."""


def mode_agent(args: argparse.Namespace) -> dict:
    """Start-up to first score and peak RSS of one agent process."""
    from edgebot.edge.agent import Agent
    from edgebot.edge.sinks import NullSink
    from edgebot.edge.summary import current_rss_mb, peak_rss_mb

    t_imported = time.time()
    marks: dict = {}

    class TimedAgent(Agent):
        def score_pending(self) -> None:
            had = bool(self._pending)
            super().score_pending()
            if had and "t_first_score" not in marks:
                marks["t_first_score"] = time.time()
                marks["rss_at_first_score_mb"] = current_rss_mb()

    cfg = _config(args.bundle, args.pcap, args.state_dir)
    source = None if args.pcap else _SyntheticSource()
    agent = TimedAgent(cfg, sink=NullSink(), source=source)
    agent.init_bundle()
    t_bundle = time.time()
    agent.start()
    site_devices = len(agent.site.devices) if agent.site is not None else 0
    summary = agent.run()
    if "t_first_score" not in marks:
        raise SystemExit("the agent scored nothing: is the pcap empty?")
    return {
        "t_main": T_MAIN, "t_imported": t_imported, "t_bundle_loaded": t_bundle, **marks,
        "peak_rss_mb": peak_rss_mb(), "flows": summary.flows, "packets": summary.packets,
        "site_devices_at_start": site_devices,
        "workload": f"replay of {Path(args.pcap).name}" if args.pcap else "2,048 synthetic flows",
        "blocked_modules": blocked_training_stack(), "training_stack_loaded": loaded_training_stack(),
    }


def _pin_one_core() -> Optional[int]:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1]
    os.sched_setaffinity(0, {core})
    return core


def mode_pipeline(args: argparse.Namespace) -> dict:
    """Replays of a pcap through fresh agents on one core; one entry per run."""
    from edgebot.bundle import load_bundle
    from edgebot.edge.agent import Agent
    from edgebot.edge.sinks import NullSink
    from edgebot.edge.sinks.jsonl import JsonlSink
    from edgebot.edge.summary import peak_rss_mb

    core = _pin_one_core()
    bundle = load_bundle(args.bundle)
    runs = []
    for i in range(args.repeat):
        if args.sink == "jsonl":
            path = Path(args.jsonl_path)
            if path.exists():
                path.unlink()
            sink: Any = JsonlSink(path)
        else:
            sink = NullSink()
        agent = Agent(_config(args.bundle, args.pcap).validate(), bundle=bundle, sink=sink)
        agent.start()
        c0 = time.process_time()
        summary = agent.run()
        cpu = time.process_time() - c0
        runs.append({"run": i, "packets": summary.packets, "flows": summary.flows, "seconds": summary.seconds,
                     "cpu_seconds": cpu, "verdict_latency_ms": summary.verdict_latency_ms,
                     "incidents": dict(summary.incidents)})
    return {"runs": runs, "core": core, "peak_rss_mb": peak_rss_mb(), "sink": args.sink,
            "training_stack_loaded": loaded_training_stack()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="edgebot.edge.bench_worker", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("agent", "pipeline"))
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--pcap")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--t0", type=float, default=None, help="The parent's time.time() when it started us.")
    parser.add_argument("--sink", choices=("null", "jsonl"), default="null")
    parser.add_argument("--jsonl-path", default=os.devnull)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--state-dir", default=None, help="agent mode: state dir whose site profile is loaded")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from edgebot.errors import EdgebotError

    try:
        result = mode_agent(args) if args.mode == "agent" else mode_pipeline(args)
    except EdgebotError as exc:
        args.out.write_text(json.dumps({"error": str(exc)}) + "\n", encoding="utf-8")
        return 2
    args.out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
