"""Measure the gateway path and the baseline, and write benchmarks/RESULTS.md and benchmarks/results.json.

Run from the repository root (the train extra installed for the Keras comparison)::

    .venv/bin/python benchmarks/run_bench.py BUNDLE_DIR --run-dir RUN_DIR [--repeat 200] [--no-baseline]
    .venv/bin/python benchmarks/run_bench.py BUNDLE_DIR --render-only   # rewrite RESULTS.md from results.json

It runs, in order: ``edgebot bench`` on BUNDLE_DIR with the Mirai 34-1 pcap (all model-level,
memory and start-up figures, the Mirai replay), the replay of the benign 4-1 pcap, and
``benchmarks/baseline/nfstream_baseline.py`` on both pcaps. The machine load before and
after each part is recorded: on a shared machine, read the figures with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgebot import datasets
from edgebot.edge.bench import format_bench, measure_pipeline, run_bench

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "benchmarks"
PCAP_MIRAI = datasets.pcap("mirai_34_1")
PCAP_HUE = datasets.pcap("hue_4_1")
#: Kitsune-py, the peer a user might pick instead: ymirsky/Kitsune-py at commit 7c8ea51e with tshark parsing
#: and numpy<2, the whole process timed, median of 3, on this class of machine (2 x86-64 cores). Not re-run by
#: this script: Kitsune-py is not installable from a registry; rerun it from that commit to check these figures.
KITSUNE_REFERENCE = {
    "note": "Kitsune-py (ymirsky/Kitsune-py @ 7c8ea51e, tshark parsing, numpy<2; whole process, median of 3) on "
            "this class of machine; not re-run by run_bench.py (not installable from a registry)",
    "implementation": "https://github.com/ymirsky/Kitsune-py",
    "commit": "7c8ea51e",
    "mirai_34_1_packets_per_s": 195, "hue_4_1_packets_per_s": 1728, "peak_rss_mb": [164, 178],
}
TARGETS = {
    "keras_over_int8_batch256": 20.0, "keras_over_int8_batch1": 100.0, "agent_peak_rss_mb": 120.0,
    "tf_rss_over_agent_rss": 4.0, "packets_per_s": 100_000.0, "verdict_p95_ms": 50.0, "startup_s": 1.0,
}


def _relative_paths(obj):
    """Every path under the repository recorded relative to it (results name no machine's paths)."""
    root = str(REPO) + os.sep
    if isinstance(obj, dict):
        return {k: _relative_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative_paths(v) for v in obj]
    if isinstance(obj, str) and root in obj:
        return obj.replace(root, "")
    return obj


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _x(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def targets_table(bench: dict, hue: dict) -> list[str]:
    r, mem, p = bench["ratios"], bench["memory"], bench["pipeline"]
    rows = [
        ("int8 vs Keras/TF, batch 256 (fastest Keras path)", ">= 20x", r["keras_over_int8_batch256"], "x",
         r["keras_over_int8_batch256"] and r["keras_over_int8_batch256"] >= TARGETS["keras_over_int8_batch256"]),
        ("int8 vs Keras/TF, batch 1 (fastest Keras path)", ">= 100x", r["keras_over_int8_batch1"], "x",
         r["keras_over_int8_batch1"] and r["keras_over_int8_batch1"] >= TARGETS["keras_over_int8_batch1"]),
        ("  same vs eager `model(x)`, batch 256 / batch 1", "", None, "", None),
        ("agent peak RSS (edge extra only, Mirai replay)", "<= 120 MB", mem["agent_peak_rss_mb"], " MB",
         mem["agent_peak_rss_mb"] <= TARGETS["agent_peak_rss_mb"]),
        ("TF process RSS / agent RSS", ">= 4x", r["tf_rss_over_agent_rss"], "x",
         r["tf_rss_over_agent_rss"] and r["tf_rss_over_agent_rss"] >= TARGETS["tf_rss_over_agent_rss"]),
        ("pcap replay, Mirai 34-1, one core, end to end", ">= 100,000 packets/s", p["packets_per_s"], " packets/s",
         p["packets_per_s"] >= TARGETS["packets_per_s"]),
        ("pcap replay, benign 4-1, one core, end to end", ">= 100,000 packets/s", hue["packets_per_s"], " packets/s",
         hue["packets_per_s"] >= TARGETS["packets_per_s"]),
        ("flow end -> verdict p95 (Mirai / 4-1)", "< 50 ms", p["verdict_latency_ms"]["p95"], " ms",
         max(p["verdict_latency_ms"]["p95"], hue["verdict_latency_ms"]["p95"]) < TARGETS["verdict_p95_ms"]),
        ("agent start-up to first score", "< 1 s", mem["agent_startup_s"], " s",
         mem["agent_startup_s"] < TARGETS["startup_s"]),
    ]
    out = ["| target | wanted | measured | verdict |", "| --- | --- | --- | --- |"]
    for name, want, value, unit, ok in rows:
        if name.startswith("  same vs eager"):
            out.append(f"| {name.strip()} | | {_x(r.get('keras_eager_over_int8_batch256'))}x / "
                       f"{_x(r.get('keras_eager_over_int8_batch1'))}x | |")
            continue
        if "flow end" in name:
            shown = f"{p['verdict_latency_ms']['p95']:.1f} / {hue['verdict_latency_ms']['p95']:.1f} ms"
        elif unit == " packets/s":
            shown = f"{value:,.0f}{unit}"
        elif unit == " s":
            shown = f"{value:.2f}{unit}"
        else:
            shown = f"{_x(value)}{unit}"
        out.append(f"| {name} | {want} | {shown} | {_verdict(ok if ok is None else bool(ok))} |")
    return out


def model_table(bench: dict) -> list[str]:
    model = bench["model"]
    batches = model["batch_sizes"]
    out = ["| path (hybrid + autoencoder unless said) | " + " | ".join(f"batch {b}: p50 / p99 ms, windows/s" for b in batches)
           + " |", "| --- |" + " --- |" * len(batches)]
    labels = {"int8": "int8 TFLite, ai-edge-litert, 1 thread", "float_tflite": "float32 TFLite, same interpreter",
              "keras_eager": "Keras 3 / TF, eager `model(x)`", "keras_graph": "Keras 3 / TF, `tf.function`",
              "keras_predict": "Keras 3 / TF, `model.predict`", "bundle": "int8 bundle `score` (networks + fuser)",
              "fuser": "fuser alone (its XGBoost trees in numpy)", "featurizer": "featurizer + scaling (flows/s)"}
    for kind, label in labels.items():
        entry = model.get(kind, {})
        if not entry.get("available"):
            out.append(f"| {label} | " + " | ".join("-" for _ in batches) + " |")
            continue
        cells = [f"{s['p50_ms']:.3f} / {s['p99_ms']:.3f}, {s['per_s']:,.0f}" for s in
                 (entry["batch"][str(b)] for b in batches)]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def pipeline_rows(name: str, p: dict) -> list[str]:
    rows = []
    for sink, s in p["sinks"].items():
        lat = s["verdict_latency_ms"]
        rows.append(f"| {name} | edgebot agent, {sink} sink | {s['packets']:,} | {s['flows']:,} | "
                    f"{s['packets_per_s']:,.0f} | {s['flows_per_s']:,.0f} | "
                    f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} | {s['peak_rss_mb']:.0f} |")
    c = p.get("compressed_input")
    if c:
        rows.append(f"| {name} | edgebot agent, null sink, from the .xz file | {c['packets']:,} | {c['flows']:,} | "
                    f"{c['packets_per_s']:,.0f} | {c['flows_per_s']:,.0f} | - | {c['peak_rss_mb']:.0f} |")
    return rows


def write_results(data: dict, command: str) -> str:
    bench, hue, base = data["bench"], data["pipeline_hue"], data.get("baseline")
    m = bench["machine"]
    pk = m["packages"]
    lines = [
        "# edgebot benchmark results",
        "",
        f"Produced by `{command}` on {bench['settings']['time']} ({data['seconds']:.0f} s).",
        "To reproduce with the demo's model: `make demo`, then `.venv/bin/python benchmarks/run_bench.py "
        "demo-out/bundle` (its run dir, demo-out/run, is found beside the bundle). `edgebot bench BUNDLE --pcap "
        "FILE --json FILE` gives the same figures for one pcap.",
        "",
        f"Machine: {m['cpu']} ({m['arch']}), {m['cores']} cores (KVM guest, shared with other engineers' jobs), "
        f"{m.get('memory_gb')} GB, Python {m['python']}, {m['system']}. "
        f"Interpreter: {m['interpreter']['runtime']} {m['interpreter']['version']}, delegate "
        f"{m['interpreter'].get('delegate')} ({json.dumps(m['interpreter'].get('models', {}))}), 1 thread. "
        f"numpy {pk.get('numpy')}, xgboost {pk.get('xgboost') or pk.get('xgboost-cpu')}, "
        f"tensorflow {pk.get('tensorflow') or pk.get('tensorflow-cpu')}, keras {pk.get('keras')}, nfstream {pk.get('nfstream')}.",
        "",
        f"Load average (1/5/15 min) around each part: bench {m['load_avg_before']} -> {m['load_avg_after']}; "
        f"4-1 replays {data['load']['hue'][0]} -> {data['load']['hue'][1]}; baseline "
        f"{' -> '.join(map(str, data['load'].get('baseline') or [])) or 'not run'}. The machine was shared: "
        "other jobs (TensorFlow training, test suites) ran at the same time, so expect +-15-30 % on every figure; "
        "model-level figures are medians of many calls, pipeline figures the median of 3 replays.",
        "",
        f"Bundle: `{bench['settings']['bundle']}` ({bench['settings']['bundle_id']}), window "
        f"{bench['settings'].get('window', '')}; Keras models from `{bench['model'].get('run_dir')}`. "
        f"Inputs: {bench['model']['inputs']}.",
        "",
        "## Targets",
        "",
        *targets_table(bench, hue),
        "",
        "## Model level (median per call, 1 thread everywhere)",
        "",
        *model_table(bench),
        "",
        "Ratios (Keras / int8, same batch, median): " + ", ".join(
            f"batch {b}: fastest {_x(bench['ratios'].get(f'keras_over_int8_batch{b}'))}x, eager "
            f"{_x(bench['ratios'].get(f'keras_eager_over_int8_batch{b}'))}x, tf.function "
            f"{_x(bench['ratios'].get(f'keras_graph_over_int8_batch{b}'))}x, predict "
            f"{_x(bench['ratios'].get(f'keras_predict_over_int8_batch{b}'))}x; float TFLite / int8 "
            f"{_x(bench['ratios'].get(f'float_tflite_over_int8_batch{b}'), '.2f')}x"
            for b in bench["model"]["batch_sizes"]) + ".",
        "",
        "## Memory and start-up (fresh processes, median of 3)",
        "",
        "| process | peak RSS | start-up to first score | phases |",
        "| --- | --- | --- | --- |",
        f"| edgebot agent, edge extra only (TensorFlow/Keras/sklearn/pandas blocked), Mirai replay | "
        f"{bench['memory']['agent_peak_rss_mb']:.1f} MB | {bench['memory']['agent_startup_s']:.3f} s | "
        + ", ".join(f"{k} {v:.3f} s" for k, v in bench["memory"]["agent"]["phases_s"].items()) + " |",
    ]
    tf = bench["memory"].get("tf", {})
    if tf.get("available"):
        lines.append(f"| Python + TensorFlow + the two Keras models, one window scored | {tf['peak_rss_mb']:.1f} MB | "
                     f"{tf['startup_s']:.3f} s | " + ", ".join(f"{k} {v:.3f} s" for k, v in tf["phases_s"].items()) + " |")
    lines += [
        "",
        f"TF RSS / agent RSS: {_x(bench['ratios']['tf_rss_over_agent_rss'])}x; TF start-up / agent start-up: "
        f"{_x(bench['ratios']['tf_startup_over_agent_startup'])}x.",
        "",
        "## Pipeline and baseline (same pcaps, same machine, one core)",
        "",
        "edgebot: `edgebot run`'s agent (own Zeek-compatible meter, featurizer, per-host windows, int8 bundle, "
        "incidents, sink) in a fresh process pinned to one core, on a decompressed copy of the pcap. "
        "Baseline: what a user might write without edgebot (Kitsune-py, the usual reference, is not on PyPI): "
        "NFStream (C metering engine, 1 meter process, pinned to the same core) feeding our featurizer and either "
        "the Keras models under TensorFlow (`predict`, batch 256) plus the fuser, or the run's single-flow XGBoost "
        "model (`benchmarks/baseline/nfstream_baseline.py`). Baseline RSS is the main process; NFStream's forked "
        "metering process shares most of its pages and is listed in results.json.",
        "",
        "| pcap | pipeline | packets | flows | packets/s | flows/s | verdict p50 / p95 / p99 ms | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *pipeline_rows("Mirai 34-1", bench["pipeline"]),
        *pipeline_rows("benign 4-1", hue),
    ]
    if base:
        for r in base["results"]:
            name = "Mirai 34-1" if "34-1" in r["pcap"] else "benign 4-1"
            what = ("NFStream + Keras/TF + fuser" if r["variant"] == "keras" else "NFStream + XGBoost (single flows)")
            lines.append(f"| {name} | {what} | {r['packets']:,} | {r['flows']:,} (NFStream flows) | "
                         f"{r['packets_per_s']:,.0f} | {r['flows_per_s']:,.0f} | batch | {r['peak_rss_mb']:.0f} |")
    k = KITSUNE_REFERENCE
    lines.append(f"| Mirai 34-1 / benign 4-1 | Kitsune-py @ 7c8ea51e (tshark, numpy<2; median of 3), not re-run by this script | 36,797 / 21,664 | - | "
                 f"{k['mirai_34_1_packets_per_s']:,} / {k['hue_4_1_packets_per_s']:,} | - | - | "
                 f"{k['peak_rss_mb'][0]}-{k['peak_rss_mb'][1]} |")
    lines += ["", "## Reading the figures", "", *data["analysis"], ""]
    return "\n".join(lines) + "\n"


ANALYSIS = [
    "- **Keras ratio.** The pinned `ratios.keras_over_int8_batchN` divides by the *fastest* Keras path "
    "(eager call, `tf.function` or `predict`) so that no ratio is flattered by a slow calling convention. "
    "Against eager `model(x)` (what calling a Keras 3 model does) and `predict` the int8 bundle is beyond the "
    "targets at batch 1 and around them at batch 256; against a `tf.function`-compiled call it is not. At batch 1 "
    "about two thirds of the int8 call is Python around the interpreter (quantize, bucket lookup, dequantize: "
    "~25 us per model, against a bare `invoke` of 22 us for the hybrid and 3 us for the autoencoder); "
    "`edgebot.runtime.Int8Model.run` with precomputed quantization constants and reused buffers would roughly "
    "halve it. At batch 256 the time is the int8 kernels themselves: XNNPACK takes only 4 partitions of the "
    "hybrid's 128 nodes (the unrolled LSTM runs in the built-in int8 kernels), while the float model is "
    "delegated whole, which is why float32 TFLite is faster than int8 on this x86 machine (AVX-512). Reaching "
    "20x at batch 256 against compiled TensorFlow would need a converter change (an LSTM form XNNPACK takes "
    "whole, or fewer and larger ops) and a measurement on the gateway's own CPU (ARM), where the int8/float "
    "balance differs.",
    "- **Replay throughput.** The Mirai 34-1 capture is one new TCP connection per 5.5 packets (75 % of them "
    "unanswered SYN scans), so per-flow work dominates: profiled with py-spy and cProfile, the meter (Zeek's "
    "connection logic, timers, flow records) takes ~75 % of the agent's CPU, scoring ~12 %, incidents ~5 %, "
    "featurizer and windows ~4 %. The work done for this issue (vectorized per-host windows, a memoized, "
    "vectorized featurizer with bit-identical output, incident bookkeeping only where it can change "
    "something, a packed-address Community ID, positional flow records, address-text memo, no endpoint cycles "
    "for the garbage collector, `gc.freeze` after start-up) cut the agent's instructions on this pcap by 10 % "
    "(valgrind, deterministic: 2,990 M -> 2,700 M) with unchanged verdicts (incident streams identical on three "
    "pcaps). The wall-clock figures above were taken with the load average at 2-2.5 (other engineers' jobs on "
    "the same 2 cores); at a quieter moment (load ~0.6) the same replay ran at 78,000-86,000 packets/s (best "
    "runs, CPU time, one core). What is left is the meter's per-connection cost (~25-30 us per scan connection: "
    "flow and endpoint objects, two timers, the record): 100,000 packets/s on this capture needs the meter "
    "about 25 % faster, e.g. a lighter object for connections that never leave SYN_SENT, or fewer timer-heap "
    "operations per connection. The benign 4-1 capture (48 packets per flow) is above the target.",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--render-only", action="store_true", help="Rewrite RESULTS.md from OUT/results.json.")
    args = ap.parse_args(argv)
    if args.render_only:
        data = json.loads((args.out / "results.json").read_text())
        data["analysis"] = ANALYSIS
        data = _relative_paths(data)
        (args.out / "results.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        (args.out / "RESULTS.md").write_text(write_results(data, data["command"]))
        return 0
    command = "python benchmarks/run_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.time()
    data: dict = {"load": {}}
    bench = run_bench(args.bundle, pcap=PCAP_MIRAI, repeat=args.repeat, run_dir=args.run_dir)
    print(format_bench(bench), flush=True)
    data["bench"] = bench
    data["load"]["hue"] = [_load()]  # before and after the 4-1 replays
    with tempfile.TemporaryDirectory() as tmp:
        data["pipeline_hue"] = measure_pipeline(args.bundle, PCAP_HUE, Path(tmp), 3)
    data["load"]["hue"].append(_load())
    import importlib.util

    if not args.no_baseline and importlib.util.find_spec("nfstream") is None:
        print("note: the NFStream baseline is skipped: nfstream is not installed "
              "(pip install -r benchmarks/requirements.txt, or `make bench` which does it)", flush=True)
        args.no_baseline = True
    if not args.no_baseline and bench["model"].get("run_dir"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, str(HERE / "baseline" / "nfstream_baseline.py"), bench["model"]["run_dir"],
                   str(args.bundle), str(PCAP_MIRAI), str(PCAP_HUE), "--json", out.name]
            subprocess.run(cmd, check=True)
            data["baseline"] = json.loads(Path(out.name).read_text())
        data["load"]["baseline"] = [data["baseline"]["load_avg_before"], data["baseline"]["load_avg_after"]]
    data["kitsune_reference"] = KITSUNE_REFERENCE
    data["analysis"] = ANALYSIS
    data["seconds"] = time.time() - t0
    data["command"] = command
    args.out.mkdir(parents=True, exist_ok=True)
    data = _relative_paths(data)
    (args.out / "results.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (args.out / "RESULTS.md").write_text(write_results(data, command))
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
