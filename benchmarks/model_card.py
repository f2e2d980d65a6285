"""The default bundle's model card: measure it on the bundled data, write model_card.json and the card's figures.

Usage, from the repository root (``make bundle`` runs it after building the bundle; ``make
model-card`` alone re-measures)::

    .venv/bin/python benchmarks/model_card.py [--bundle edgebot/default_bundle] [--run-dir build/default-run]

Writes ``benchmarks/model_card.json`` (every number) and replaces the part of
``docs/model-card.md`` between ``<!-- generated:begin -->`` and ``<!-- generated:end -->``
(training data and figures); the rest of the card (intended use, limits) is written by hand.

What is measured, all with the shipped int8 bundle through the gateway's own code
(:func:`edgebot.evaluate.evaluate_bundle`, ``edgebot run``):

* the temporal test split (the last 20% of every training capture), as the trainer and converter
  measured it: per-model metrics (manifest ``training.metrics``), int8 vs float (verification.json);
* the held-out IoT-23 capture Mirai 44-1 (never in training);
* false incidents per benign device per day over every benign device's files, without learning and
  with the default learning period (6 h of each capture); these files' earliest 80% were training data;
* the Stratosphere CTU mixed captures 008/010/011 (Windows hosts and Windows malware: non-IoT
  traffic and families the bundle never saw, two known limits);
* the bundled pcaps replayed with ``edgebot run --pcap`` and no other option (hosts with incidents,
  packets/s, verdict latency);
* with ``--leave-out-run DIR`` (repeatable; runs of ``edgebot train --split leave-out:NAME`` or
  ``leave-device-out:K`` on the same data, ``make bundle LEAVE_OUT=1``): their figures.

``capture_figures`` is what ``tests/core/test_default_bundle.py`` recomputes and compares with the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgebot import datasets  # noqa: E402

OUT_JSON = REPO / "benchmarks" / "model_card.json"
CARD = REPO / "docs" / "model-card.md"
BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"
#: Absolute tolerance of the flow metrics when the test recomputes them (another TFLite or XGBoost
#: build may move a borderline score); incident hosts must match exactly.
TOLERANCE = 0.01
LEARN_S = 6 * 3600.0
PCAP_ROLES = (("mirai_34_1", "malicious"), ("hue_4_1", "benign"), ("hue_2018_09_14", "benign"))


def _flow_figures(result: dict) -> dict:
    inc = result["incidents"]["totals"]
    return {"flows": result["flows"], "precision": result["precision"], "recall": result["recall"],
            "f1": result["f1"], "fpr": result["fpr"], "families": result["families"],
            "false_incidents": inc["false_incidents"], "benign_devices": inc["benign_devices"],
            "false_incidents_per_device_per_day": inc["false_incidents_per_device_per_day"],
            "infected_hosts": inc["infected_hosts"], "infected_detected": inc["infected_detected"]}


def replay_pcap(pcap: Path, bundle: Path | None = None) -> dict:
    """``edgebot run --pcap PCAP`` (no other option unless ``bundle``), in its own process; its summary."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "edgebot.cli", "run", "--pcap", str(pcap)]
        cmd += ["--bundle", str(bundle)] if bundle is not None else []
        cmd += ["--summary-json", str(summary)]
        env = dict(os.environ, STATE_DIRECTORY=tmp)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"edgebot run --pcap {pcap.name} failed: {res.stderr.strip()[-300:]}")
        s = json.loads(summary.read_text())
        s["stderr"] = res.stderr
        s["stdout"] = res.stdout
        return s


def pcap_figures(bundle: Path | None = None) -> dict:
    """The bundled pcaps through ``edgebot run``: incident hosts (exact) and speed (not compared)."""
    root = datasets.data_root()
    out = {}
    for role, truth in PCAP_ROLES:
        s = replay_pcap(root / datasets.PCAPS[role], bundle)
        out[role] = {"pcap": datasets.PCAPS[role], "truth": truth, "incident_hosts": sorted(s["flagged_hosts"]),
                     "incidents_new": s["incidents"].get("new", 0), "flows": s["flows"], "packets": s["packets"],
                     "packets_per_s": s["packets_per_s"], "flows_per_s": s["flows_per_s"],
                     "verdict_latency_p95_ms": s["verdict_latency_ms"].get("p95"), "peak_rss_mb": s["peak_rss_mb"]}
    return out


#: The flow-log figures: name -> (data files, learning period in seconds).
def capture_sets() -> dict[str, tuple[list[str], float]]:
    root = datasets.data_root()
    benign = [str(p) for p in datasets.benign_device_files(root)]
    held_out = [str(p) for p in datasets.resolve(datasets.IOT23_EVAL, root)]
    windows = [str(p) for p in datasets.resolve(datasets.STRATOSPHERE[:3], root)]  # CTU mixed: Windows hosts and malware
    return {"held_out_mirai_44_1": (held_out, 0.0), "benign_devices": (benign, 0.0),
            "benign_devices_learning": (benign, LEARN_S), "windows_hosts": (windows, 0.0),
            "windows_hosts_learning": (windows, LEARN_S)}


def capture_figures(bundle_dir: Path, only: tuple[str, ...] | None = None) -> dict:
    """Figures on the bundled flow logs (deterministic: the test compares them within TOLERANCE).

    ``only``: these names of :func:`capture_sets` (all when None).
    """
    from edgebot.bundle import load_bundle
    from edgebot.evaluate import evaluate_bundle

    bundle = load_bundle(bundle_dir)
    return {name: _flow_figures(evaluate_bundle(bundle_dir, files, bundle=bundle, learn_s=learn))
            for name, (files, learn) in capture_sets().items() if only is None or name in only}


def training_data() -> dict:
    """What the default training set holds: captures (families, time spans) and benign devices."""
    from edgebot.readers import summarize

    root = datasets.data_root()
    captures = []
    for path in datasets.iot23_training(root):
        s = summarize([str(path)])["files"][0]
        captures.append({"file": path.name, "scenario": s["scenario"], "rows": s["rows"], "labels": s["labels"],
                         "families": s["families"], "first": _iso(s["first_ts"]), "last": _iso(s["last_ts"]),
                         "hours": round((s["last_ts"] - s["first_ts"]) / 3600, 1)})
    from edgebot.readers import read_flows

    flows = ipv6 = ipv6_malicious = 0
    for path in datasets.default_training(root):
        records, _ = read_flows([path])
        flows += len(records)
        v6 = [r for r in records if ":" in (r.orig_h or "") or ":" in (r.resp_h or "")]
        ipv6 += len(v6)
        ipv6_malicious += sum(1 for r in v6 if r.label == "malicious")
    devices = datasets.benign_devices(root)
    by_dataset = Counter(d.dataset for d in devices.values())
    return {
        "captures": captures,
        "devices": len(devices),
        "device_groups": len({d.group for d in devices.values()}),
        "devices_by_dataset": dict(sorted(by_dataset.items())),
        "device_hours": round(sum(d.capture_hours for d in devices.values()), 1),
        "device_flows": sum(d.flows for d in devices.values()),
        "device_span": [min(d.first_seen for d in devices.values()), max(d.last_seen for d in devices.values())],
        "files": len(datasets.default_training(root)),
        "flows": flows,
        "ipv6_flows": ipv6,
        "ipv6_malicious_flows": ipv6_malicious,
    }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def bundle_figures(bundle_dir: Path) -> dict:
    """From the bundle itself: id, size, temporal-split metrics, int8 vs float."""
    from edgebot.cli_bundle import bundle_info

    info = bundle_info(bundle_dir)
    verification = json.loads((bundle_dir / "verification.json").read_text())
    return {
        "bundle_id": info["bundle_id"], "edgebot_version": info["edgebot_version"], "created": info["created"],
        "command": info["training"]["command"], "split": info["training"]["split"], "seed": info["training"]["seed"],
        "size_bytes": info["size_bytes"], "sizes": info["sizes"],
        "temporal_test": info["training"]["metrics"],
        "int8_vs_float": {"float": verification["float"], "int8": verification["int8"], "f1_drop": verification["f1_drop"],
                          "decision_agreement": verification["decision_agreement"],
                          "test_windows": verification["test_windows"]},
    }


def leave_out_figures(run_dir: Path) -> dict:
    """The figures of a leave-out training run of the same data and trainer (not of the bundle itself).

    ``edgebot train --split leave-out:NAME`` (metrics.json: fused metrics on the held-out family or
    scenario) or ``--split leave-device-out:K`` (leave_device_out.json: false incidents of every
    benign device while it was held out).
    """
    ldo = run_dir / "leave_device_out.json"
    if ldo.is_file():
        r = json.loads(ldo.read_text())
        t = r["totals"]
        return {"kind": "leave-device-out", "split": r["split"], "configuration": r.get("configuration"),
                "devices": t["devices"], "devices_with_false_incident": t["devices_with_false_incident"],
                "devices_with_false_incident_with_learning": t["devices_with_false_incident_with_learning"],
                "false_incidents": t["false_incidents"], "capture_hours": t["capture_hours"],
                "false_incidents_per_device_day": t["false_incidents_per_device_day"],
                "fold_fused_f1": [f["fused_f1"] for f in r["folds"]]}
    m = json.loads((run_dir / "metrics.json").read_text())
    fused = m.get("models", {}).get("fused", {})
    split = m.get("split")
    return {"kind": "leave-out", "split": split.get("name", split) if isinstance(split, dict) else split,
            "fused": {k: fused.get(k) for k in ("precision", "recall", "f1", "fpr")},
            "per_family": {k: v.get("fused", v) if isinstance(v, dict) else v for k, v in (m.get("per_family") or {}).items()},
            "quick": m.get("config", {}).get("quick")}


# ----------------------------------------------------------------------------------------------
# the card


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def render(card: dict) -> str:
    """The generated part of docs/model-card.md."""
    b, d, c, p = card["bundle"], card["training_data"], card["captures"], card["pcaps"]
    p = {k: p[k] for k in sorted(p, key=lambda k: list(datasets.PCAPS).index(k) if k in datasets.PCAPS else 99)}
    L = [BEGIN, "", f"Generated by `benchmarks/model_card.py` from `benchmarks/model_card.json` "
         f"(bundle `{b['bundle_id'][:12]}`, edgebot {b['edgebot_version']}). Rebuild: `make bundle`.", ""]
    L += ["## Model details", "",
          f"- Bundle id `{b['bundle_id']}`, dated {b['created']} (the manifest's created: SOURCE_DATE_EPOCH, the last commit of data/); size {b['size_bytes'] / 1024:.1f} KB "
          f"({', '.join(f'{n} {s / 1024:.1f} KB' for n, s in sorted(b['sizes'].items()))}).",
          "- CNN-LSTM over per-host windows of 8 flows + benign-only autoencoder, fused by XGBoost; int8 TFLite.",
          f"- Trained with `{b['command'] if len(b['command'] or '') < 160 else (b['command'] or '')[:150] + ' ...'}` "
          f"(full command and every training file's sha256 in the manifest, `training`), seed {b['seed']}.", ""]
    L += ["## Training data", "", f"{d['files']} files: four IoT-23 captures and {d['devices']} benign devices "
          f"({d['device_groups']} physical hosts).", "",
          "| capture | families | flows (benign / malicious) | time span (UTC) |", "|---|---|---|---|"]
    for cap in d["captures"]:
        fam = ", ".join(sorted(cap["families"])) or "none (benign)"
        L.append(f"| {cap['file']} | {fam} | {cap['labels'].get('benign', 0):,} / {cap['labels'].get('malicious', 0):,} "
                 f"| {cap['first']} .. {cap['last']} ({cap['hours']} h) |")
    L += ["", f"Benign devices: {', '.join(f'{k} {v}' for k, v in d['devices_by_dataset'].items())}; "
          f"{d['device_flows']:,} flows over {d['device_hours']} capture hours, {d['device_span'][0]} .. {d['device_span'][1]} "
          "(data/benign_devices/DEVICES.tsv).", "",
          f"IPv6: {d['ipv6_flows']:,} of the {d['flows']:,} training flows ({d['ipv6_malicious_flows']:,} malicious).", ""]
    L += ["## Figures", "", "### Temporal split (test: the last 20% of every training capture)", "",
          "| model | precision | recall | F1 | FPR |", "|---|---|---|---|---|"]
    for name, m in sorted(b["temporal_test"].items()):
        L.append(f"| {name} | {_pct(m.get('precision'))} | {_pct(m.get('recall'))} | {_pct(m.get('f1'))} | {_pct(m.get('fpr'))} |")
    q = b["int8_vs_float"]
    L += ["", "### int8 vs float (fused, same test windows)", "",
          f"F1 {q['int8']['f1']:.4f} (int8) vs {q['float']['f1']:.4f} (float), drop {q['f1_drop']:+.4f}; decisions agree "
          f"on {100 * q['decision_agreement']:.2f} % of {q['test_windows']:,} windows.", ""]
    L += ["### Bundled captures (int8, the gateway's path: `edgebot eval`)", "",
          "| data | flows | precision | recall | F1 | FPR | false incidents / device / day | infected hosts detected |",
          "|---|---|---|---|---|---|---|---|"]
    names = {"held_out_mirai_44_1": "Mirai 44-1 (held out)", "benign_devices": "benign devices, no learning",
             "benign_devices_learning": "benign devices, 6 h learning", "windows_hosts": "Stratosphere CTU mixed 008/010/011 (Windows hosts and malware, not IoT), no learning",
             "windows_hosts_learning": "the same, 6 h learning"}
    for key, label in names.items():
        f = c[key]
        L.append(f"| {label} | {f['flows']['labeled']:,} | {_pct(f['precision']) if f['flows']['malicious'] else '-'} | "
                 f"{_pct(f['recall']) if f['flows']['malicious'] else '-'} | {_pct(f['f1']) if f['flows']['malicious'] else '-'} | "
                 f"{_pct(f['fpr'])} | {f['false_incidents_per_device_per_day']:.3f} ({f['false_incidents']} on "
                 f"{f['benign_devices']} devices) | {f['infected_detected']} of {f['infected_hosts']} |")
    L += ["", "The benign devices' files were training data for their earliest 80%; Mirai 44-1 and the Stratosphere "
          "captures never were. \"Devices\" counts benign hosts per capture. The Stratosphere rows measure two known "
          "limits at once: families the bundle never saw (Windows malware) and non-IoT hosts.", "",
          "### Leave-out (generalization)", ""]
    runs = card.get("leave_out") or []
    for lo in runs:
        if lo["kind"] == "leave-device-out":
            L.append(f"- `{lo['split']}` ({lo.get('configuration') or 'full'} configuration; each benign device scored by "
                     f"the training that never saw it): {lo['devices_with_false_incident']} of {lo['devices']} devices "
                     f"with a false incident without learning, {lo['devices_with_false_incident_with_learning']} with "
                     f"learning; {lo['false_incidents']} false incident(s) over {lo['capture_hours']:.0f} capture hours "
                     f"({lo['false_incidents_per_device_day'] or 0:.3f} per device per day); fused F1 per fold "
                     f"{', '.join(f'{f:.3f}' for f in lo['fold_fused_f1'])}.")
        else:
            f = lo["fused"]
            L.append(f"- `{json.dumps(lo['split']) if not isinstance(lo['split'], str) else lo['split']}`"
                     f"{' (quick configuration)' if lo.get('quick') else ''}: fused on the held-out part: precision "
                     f"{_pct(f['precision'])}, recall {_pct(f['recall'])}, F1 {_pct(f['f1'])}, FPR {_pct(f['fpr'])}.")
    if runs:
        L += ["", "These are separate trainings on the same data, trainer and seed (`make bundle LEAVE_OUT=1`), "
              "each blind to what it is scored on; the shipped bundle's training includes that family and those devices "
              "(their earliest 80%), so these are what to expect of families and devices it has not seen."]
    else:
        L.append("Not measured with this bundle (each needs more trainings: `make bundle LEAVE_OUT=1`); "
                 "`benchmarks/DETECTION.md` has a leave-family-out matrix on the same data and trainer.")
    L += ["", "### Replays and speed (`edgebot run --pcap FILE`, no other option)", "",
          "| pcap | truth | hosts with an incident | flows | packets/s | verdict p95 | peak RSS |", "|---|---|---|---|---|---|---|"]
    for r in p.values():
        L.append(f"| {Path(r['pcap']).name.split('.pcap')[0]} | {r['truth']} | {', '.join(r['incident_hosts']) or 'none'} | "
                 f"{r['flows']:,} | {r['packets_per_s']:,.0f} | {r['verdict_latency_p95_ms'] or 0:.1f} ms | {r['peak_rss_mb']:.0f} MB |")
    L += ["", f"Speed measured on the machine that built the card ({card['machine']}), one process; see "
          "`benchmarks/RESULTS.md` for the gateway benchmarks.", "", END]
    return "\n".join(L)


def write_card(card: dict, path: Path = CARD) -> None:
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} lacks the {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + render(card) + tail, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(REPO / "edgebot" / "default_bundle"))
    ap.add_argument("--run-dir", default=None, help="the bundle's run dir (unused unless it has leave-out figures)")
    ap.add_argument("--leave-out-run", action="append", default=[],
                    help="a leave-out or leave-device-out run dir whose figures the card reports (repeatable)")
    ap.add_argument("--json", default=str(OUT_JSON))
    ap.add_argument("--card", default=str(CARD))
    ap.add_argument("--refresh", action="append", choices=("captures", "pcaps"), default=[],
                    help="re-measure only this section (repeatable) and keep the rest of --json as it is "
                         "(e.g. after a change to the incident rule, without the leave-out runs)")
    args = ap.parse_args(argv)
    bundle = Path(args.bundle)
    import platform

    t0 = time.perf_counter()
    pcap_bundle = None if bundle.resolve() == (REPO / "edgebot" / "default_bundle") else bundle
    if args.refresh:
        card = json.loads(Path(args.json).read_text(encoding="utf-8"))
        if card["bundle"]["bundle_id"] != bundle_figures(bundle)["bundle_id"]:
            print(f"error: {args.json} describes another bundle; re-measure it whole", file=sys.stderr)
            return 2
        if "captures" in args.refresh:
            card["captures"] = capture_figures(bundle)
        if "pcaps" in args.refresh:
            card["pcaps"] = pcap_figures(pcap_bundle)
        Path(args.json).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        write_card(card, Path(args.card))
        print(f"refreshed {', '.join(args.refresh)} in {args.json} and {args.card} in {time.perf_counter() - t0:.0f} s")
        return 0
    card = {"bundle": bundle_figures(bundle), "training_data": training_data(), "captures": capture_figures(bundle),
            "pcaps": pcap_figures(pcap_bundle), "tolerance": TOLERANCE, "learn_s": LEARN_S,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    card["leave_out"] = [leave_out_figures(Path(d)) for d in args.leave_out_run]
    card["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.json).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    write_card(card, Path(args.card))
    print(f"wrote {args.json} and {args.card} in {card['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
