"""``run_bench``: every measurement of one bench run, in one JSON-ready dict."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

from .inputs import bench_windows, pcap_flows, synthetic_flows
from .machine import (
    _load,
    delegate_info,
    find_run_dir,
    machine_info,
    tensorflow_available,
)
from .memory import measure_agent_process, measure_tf_process
from .model import (
    KERAS_PATHS,
    _skipped,
    compute_ratios,
    fastest_keras,
    measure_bundle,
    measure_featurizer,
    measure_float_tflite,
    measure_fuser,
    measure_int8,
)
from .pipeline import _empty_pipeline, measure_pipeline
from edgebot.timing import call_stats
from .workers import run_keras_worker

#: Version of the result layout; bump when a pinned key changes.
BENCH_SCHEMA = 1
#: Top-level keys of every result (pinned by tests/edge/test_bench.py).
RESULT_KEYS: tuple[str, ...] = ("schema", "settings", "model", "pipeline", "memory", "ratios", "machine")


def run_bench(bundle_dir: str | os.PathLike, pcap: str | os.PathLike | None = None,
              batch_sizes: Sequence[int] = (1, 32, 256), repeat: int = 200, *,
              run_dir: str | os.PathLike | None = None, keras: bool = True, pipeline_runs: int = 3,
              startup_runs: int = 3, seed: int = 0) -> dict:
    """Measure the gateway path of a bundle (and Keras under TensorFlow when it can).

    Parameters
    ----------
    bundle_dir
        An int8 bundle (``edgebot convert --out``).
    pcap
        A capture to replay end to end (and to draw realistic windows from); without it the
        pipeline section is marked unavailable and the windows are synthetic (seeded).
    batch_sizes
        Windows per call at model level.
    repeat
        Timed calls per model-level measurement (Keras ``predict`` gets at most 50).
    run_dir
        The run dir of the bundle's Keras models (default: found by the rule in the module doc).
    keras
        False skips the TensorFlow parts (float TFLite, Keras, TensorFlow process).
    pipeline_runs, startup_runs
        Replays per sink and fresh processes per start-up measurement (medians are reported).
    seed
        Seed of the synthetic inputs.

    Returns
    -------
    dict
        JSON-ready (strict: no NaN), with the keys of :data:`RESULT_KEYS`: ``model`` (per kind,
        ``available``, ``note`` and ``batch`` -> :func:`call_stats` per batch size), ``pipeline``
        (``packets_per_s``, ``flows_per_s``, ``verdict_latency_ms`` p50/p95/p99, per sink),
        ``memory`` (``agent_peak_rss_mb``, ``agent_startup_s``, ``tf_peak_rss_mb``,
        ``tf_startup_s`` and details), ``ratios`` (:func:`compute_ratios`) and ``machine``.
        What was not measured is None (or ``available: False`` with a ``note``), never absent.

    Raises
    ------
    BundleError
        The bundle does not load; a given run dir lacks the Keras models.
    EdgebotError
        A worker failed.
    """
    from edgebot.bundle import load_bundle

    batch_sizes = sorted({int(b) for b in batch_sizes})
    if not batch_sizes or batch_sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {batch_sizes}")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    bundle_dir = Path(bundle_dir)
    pcap_path = Path(pcap) if pcap is not None else None
    started = time.time()
    load_before = _load()
    try:  # first: the runtime prints its delegate banner once per process
        delegate = delegate_info(bundle_dir)
    except Exception as exc:  # a diagnostic only: load_bundle below reports a broken bundle properly
        delegate = {"delegate": f"unknown ({exc.__class__.__name__})"}
    bundle = load_bundle(bundle_dir)
    machine = machine_info(bundle)
    machine["interpreter"].update(delegate)
    need = max(batch_sizes)
    if pcap_path is not None:
        flows = pcap_flows(pcap_path)
        inputs = f"windows of the flows of {pcap_path.name} ({len(flows)} flows, cycled to {need})"
    else:
        flows = synthetic_flows(max(need, 64), seed)
        inputs = f"windows of {len(flows)} seeded synthetic flows (seed {seed})"
    windows = bench_windows(bundle, flows, need)

    model: dict = {"inputs": inputs, "batch_sizes": batch_sizes, "repeat": repeat}
    model["int8"] = measure_int8(bundle, windows, batch_sizes, repeat)
    model["bundle"] = measure_bundle(bundle, windows, batch_sizes, repeat)
    model["fuser"] = measure_fuser(bundle, windows, batch_sizes, repeat)
    model["featurizer"] = measure_featurizer(bundle, flows, batch_sizes, repeat)

    memory: dict = {}
    tf_ok, tf_note = tensorflow_available()
    run, run_note = find_run_dir(bundle_dir, bundle.manifest, run_dir)
    if not keras:
        skip_note = "skipped (keras=False)"
    elif not tf_ok:
        skip_note = f"skipped: {tf_note}"
    elif run is None:
        skip_note = f"skipped: {run_note}"
    else:
        skip_note = ""
    with tempfile.TemporaryDirectory(prefix="edgebot-bench-") as tmp:
        work = Path(tmp)
        if skip_note:
            for kind in ("float_tflite", "keras", *KERAS_PATHS):
                model[kind] = _skipped(skip_note)
        else:
            assert run is not None  # skip_note is set whenever run is None
            k = run_keras_worker(run, windows, batch_sizes, repeat, work)
            note = (f"TensorFlow {k['versions'].get('tensorflow')} / Keras {k['versions'].get('keras')}, "
                    f"{k['threads']} intra-op thread(s); run dir {run_note}")
            for kind, (key, how) in KERAS_PATHS.items():
                model[kind] = {"available": True, "note": f"{note}; {how}",
                               "batch": {str(b): call_stats(k[key][str(b)], b) for b in batch_sizes}}
            model["keras"] = fastest_keras(model, batch_sizes, note)
            if k.get("float_models"):
                model["float_tflite"] = measure_float_tflite(k["float_models"], windows, batch_sizes, repeat,
                                                             bundle.runtime)
            else:
                model["float_tflite"] = _skipped(f"float conversion failed: {k.get('float_error', '?')}")
        model["run_dir"] = str(run) if run else None
        model["run_dir_note"] = run_note

        agent = measure_agent_process(bundle_dir, pcap_path, work, startup_runs)
        memory.update(agent_peak_rss_mb=agent["peak_rss_mb"], agent_startup_s=agent["startup_s"], agent=agent)
        if skip_note:
            memory.update(tf_peak_rss_mb=None, tf_startup_s=None, tf={"available": False, "note": skip_note})
        else:
            assert run is not None  # skip_note is set whenever run is None
            tf_proc = measure_tf_process(run, work, startup_runs)
            memory.update(tf_peak_rss_mb=tf_proc["peak_rss_mb"], tf_startup_s=tf_proc["startup_s"],
                          tf={"available": True, "note": "imports TensorFlow, loads cnn_lstm.keras and "
                                                         "autoencoder.keras, scores one window", **tf_proc})
        if pcap_path is not None:
            pipeline = measure_pipeline(bundle_dir, pcap_path, work, pipeline_runs)
        else:
            pipeline = _empty_pipeline("no pcap given (--pcap FILE measures end-to-end replay)")

    machine["load_avg_before"] = load_before
    machine["load_avg_after"] = _load()
    machine["bench_seconds"] = round(time.time() - started, 1)
    return {
        "schema": BENCH_SCHEMA,
        "settings": {"bundle": str(bundle_dir), "bundle_id": bundle.bundle_id, "window": bundle.window,
                     "pcap": str(pcap_path) if pcap_path else None,
                     "batch_sizes": batch_sizes, "repeat": repeat, "pipeline_runs": pipeline_runs,
                     "startup_runs": startup_runs, "seed": seed,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))},
        "model": model,
        "pipeline": pipeline,
        "memory": memory,
        "ratios": compute_ratios(model, memory, batch_sizes),
        "machine": machine,
    }
