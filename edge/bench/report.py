"""``format_bench``: a bench result as tables for the terminal (the JSON has every figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import MODEL_KINDS


def _fmt(value: Any, spec: str = ",.0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_bench(result: dict) -> str:
    """The result as tables for the terminal (the JSON has every figure)."""
    lines: list[str] = []
    m, st = result["machine"], result["settings"]
    interp = m.get("interpreter", {})
    lines.append(f"machine   {m['cpu']} ({m['arch']}), {m['cores']} cores, Python {m['python']}, "
                 f"load {m.get('load_avg_before')} -> {m.get('load_avg_after')}")
    lines.append(f"runtime   {interp.get('runtime')} {interp.get('version')}, delegate {interp.get('delegate')}, "
                 f"1 thread; xgboost {m['packages'].get('xgboost') or m['packages'].get('xgboost-cpu')}")
    lines.append(f"bundle    {st['bundle']} ({st['bundle_id']}); {result['model']['inputs']}")
    lines.append("")
    model = result["model"]
    batches = model["batch_sizes"]
    head = f"{'model level (median per call)':<34}" + "".join(f"{'batch ' + str(b):>26}" for b in batches)
    lines.append(head)
    lines.append("-" * len(head))
    labels = {"int8": "int8 TFLite (hybrid+AE)", "float_tflite": "float TFLite (hybrid+AE)",
              "keras": "Keras/TF fastest (hybrid+AE)", "keras_eager": "  Keras eager model(x)",
              "keras_graph": "  Keras tf.function", "keras_predict": "  Keras predict()",
              "bundle": "int8 bundle score (+fuser)", "fuser": "fuser alone (its XGBoost trees in numpy)", "featurizer": "featurizer (flows)"}
    notes = []
    for kind in MODEL_KINDS:
        entry = model.get(kind, {})
        if not entry.get("available"):
            notes.append(f"  {labels[kind]}: {entry.get('note', 'not measured')}")
            continue
        cells = []
        for b in batches:
            s = entry["batch"].get(str(b))
            cells.append(f"{s['p50_ms']:8.3f} ms {s['per_s']:>10,.0f}/s" if s else "-")
        lines.append(f"{labels[kind]:<34}" + "".join(f"{c:>26}" for c in cells))
    for kind in ("int8", "keras"):
        entry = model.get(kind, {})
        if entry.get("available"):
            lines.append(f"{labels[kind].split(' (')[0] + ' p95 / p99':<34}" + "".join(
                f"{entry['batch'][str(b)]['p95_ms']:.3f} / {entry['batch'][str(b)]['p99_ms']:.3f} ms".rjust(26)
                for b in batches))
    lines.extend(notes)
    r = result["ratios"]
    lines.append("")
    lines.append("ratios    " + ", ".join(
        f"Keras/int8 batch {b} {_fmt(r.get(f'keras_over_int8_batch{b}'), '.1f')}x" for b in batches))
    lines.append("          " + ", ".join(
        f"float/int8 batch {b} {_fmt(r.get(f'float_tflite_over_int8_batch{b}'), '.2f')}x" for b in batches))
    lines.append(f"          TF RSS / agent RSS {_fmt(r.get('tf_rss_over_agent_rss'), '.1f')}x, "
                 f"TF start-up / agent start-up {_fmt(r.get('tf_startup_over_agent_startup'), '.1f')}x")
    mem = result["memory"]
    lines.append("")
    agent = mem.get("agent", {})
    lines.append(f"agent     peak RSS {_fmt(mem.get('agent_peak_rss_mb'), '.1f')} MB, start-up to first score "
                 f"{_fmt(mem.get('agent_startup_s'), '.3f')} s ({agent.get('workload', '')}; training stack "
                 f"{'blocked' if agent.get('blocked_modules') else 'NOT blocked'}, loaded: "
                 f"{agent.get('training_stack_loaded') or 'none'})")
    tf = mem.get("tf", {})
    if tf.get("available"):
        lines.append(f"TF+Keras  peak RSS {_fmt(mem.get('tf_peak_rss_mb'), '.1f')} MB, start-up to first score "
                     f"{_fmt(mem.get('tf_startup_s'), '.3f')} s")
    else:
        lines.append(f"TF+Keras  {tf.get('note', 'not measured')}")
    p = result["pipeline"]
    lines.append("")
    if p.get("available"):
        lat = p["verdict_latency_ms"]
        lines.append(f"pipeline  {Path(p['pcap']).name}: {p['packets']:,} packets, {p['flows']:,} flows, one core "
                     f"({p['input']})")
        for sink, s in p["sinks"].items():
            sl = s["verdict_latency_ms"]
            lines.append(f"  {sink:<6} sink  {s['packets_per_s']:>10,.0f} packets/s  {s['flows_per_s']:>8,.0f} flows/s  "
                         f"flow end->verdict p50/p95/p99 {sl['p50']:.1f}/{sl['p95']:.1f}/{sl['p99']:.1f} ms  "
                         f"({_fmt(s['packets_per_cpu_s'])} packets per CPU-s)")
        if p.get("compressed_input"):
            c = p["compressed_input"]
            lines.append(f"  from the compressed file (null sink): {c['packets_per_s']:,.0f} packets/s")
        lines.append(f"  headline (JSON-lines sink): {p['packets_per_s']:,.0f} packets/s, {p['flows_per_s']:,.0f} "
                     f"flows/s, verdict p95 {lat['p95']:.1f} ms")
    else:
        lines.append(f"pipeline  {p.get('note')}")
    return "\n".join(lines)
