"""Training at scale, a SYNTHETIC scale test: peak RSS and time of ``edgebot prepare`` and of training
from shards at 1x, 10x and 100x the bundled IoT-23 training captures.

The Nx data are the bundled captures replicated N times inside each capture's file: copy ``j`` has its
start times shifted past the end of copy ``j-1`` and its IPv4 addresses remapped (first octet + ``j``),
so every copy is new hosts later in time. They are not new traffic: the models see the same flows N
times. Every measured command runs in its own process; its peak RSS is the largest resident set of
that process and its children (``getrusage(RUSAGE_CHILDREN)`` of a wrapper).

    nice -n 10 .venv/bin/python benchmarks/bench_train_scale.py --factors 1,10,100 --train-factors 1,10

writes ``benchmarks/SCALE.md`` and ``benchmarks/scale.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRAP = ("import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(rc, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _shift_line(fields: list[str], ts_col: int, addr_cols: tuple[int, ...], shift: float, j: int) -> list[str]:
    out = list(fields)
    out[ts_col] = f"{float(fields[ts_col]) + shift:.6f}"
    for c in addr_cols:
        parts = fields[c].split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            parts[0] = str((int(parts[0]) + j) % 256)
            out[c] = ".".join(parts)
    return out


def replicate(src: Path, dst: Path, factor: int) -> int:
    """Write ``factor`` time-shifted, address-remapped copies of ``src`` into one gzip file; rows written."""
    lines = lzma.open(src, "rt", encoding="utf-8", errors="replace").read().splitlines()
    header = [ln for ln in lines if ln.startswith("#")]
    data = [ln for ln in lines if ln and not ln.startswith("#")]
    sep = "|" if not header else "\t"
    if not header:  # IoT-23 CSV: the first line names the columns
        header, data = [data[0]], data[1:]
        names = header[0].split("|")
    else:
        names = next(ln for ln in header if ln.startswith("#fields")).split("\t")[1:]
    ts_col, addr_cols = names.index("ts"), (names.index("id.orig_h"), names.index("id.resp_h"))
    times = [float(ln.split(sep, 1)[0]) for ln in data if ln.split(sep, 1)[0].replace(".", "", 1).isdigit()]
    span = (max(times) - min(times) + 60.0) if times else 60.0
    rows = 0
    with gzip.open(dst, "wt", encoding="utf-8", compresslevel=1) as fh:
        fh.write("\n".join(ln for ln in header if not ln.startswith("#close")) + "\n")
        for j in range(factor):
            for ln in data:
                fields = ln.split(sep)
                try:
                    fields = _shift_line(fields, ts_col, addr_cols, j * span, j)
                except (ValueError, IndexError):
                    pass
                fh.write(sep.join(fields) + "\n")
                rows += 1
    return rows


def measured(cmd: list[str]) -> dict:
    """Run ``cmd`` in a wrapper process: exit code, wall seconds, peak RSS in MB."""
    done = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True)
    rc, seconds, rss_kb = done.stdout.strip().splitlines()[-1].split()
    if int(rc) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return {"seconds": round(float(seconds), 1), "peak_rss_mb": round(int(rss_kb) / 1024, 1)}


XGB_COMPARE = r"""
import json, sys, time
import numpy as np

def main():
    from edgebot.train.dask_train import ShardSet, _dask_fit, train_dask_arrays, _xgb_params, connect, warm, _close
    from edgebot.train.fit import TrainConfig, _xgb_classifier
    cfg = TrainConfig.full()
    shards = ShardSet.open(sys.argv[1], None)
    tr = shards.load_part(0)
    single = {}
    for jobs in (1, 2):  # best of two: the machine is shared, and OpenMP suffers most from that
        times = []
        for _ in range(2):
            t = time.perf_counter()
            _xgb_classifier(cfg.xgb_trees, cfg.xgb_max_depth, 0, jobs).fit(tr.last, tr.y)
            times.append(time.perf_counter() - t)
        single[jobs] = min(times)
    t = time.perf_counter()
    client, cluster = connect(None, 2, 2)
    warm(client)
    startup = time.perf_counter() - t
    dX, dy = train_dask_arrays(shards)
    params, rounds = _xgb_params(cfg.xgb_trees, cfg.xgb_max_depth, 0, 1)
    runs = []
    for _ in range(3):  # the first training of a fresh cluster also pays the workers' first XGBoost call
        t = time.perf_counter()
        _dask_fit(client, dX, dy, params, rounds, "XGBoost training")
        runs.append(time.perf_counter() - t)
    _close(client, cluster)
    print(json.dumps({"rows": int(len(tr.y)), "trees": rounds, "single_s": round(min(single.values()), 2),
                      "single_1thread_s": round(single[1], 2), "single_2threads_s": round(single[2], 2),
                      "dask_first_s": round(runs[0], 2), "dask_s": round(min(runs[1:]), 2),
                      "cluster_startup_s": round(startup, 2)}))

if __name__ == "__main__":
    main()
"""


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE.parent))
    from edgebot.datasets import IOT23_TRAINING, data_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", default="1,10,100", help="replication factors to prepare")
    parser.add_argument("--train-factors", default="1", help="factors also trained from shards (epochs=1 config)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the synthetic data and shards here")
    parser.add_argument("--out", type=Path, default=HERE / "SCALE.md")
    parser.add_argument("--xgboost-only", action="store_true", help="only the XGBoost comparison, on existing shards")
    parser.add_argument("--skip-xgboost", action="store_true",
                        help="skip the XGBoost comparison of the train factors (with --merge: keep the saved one)")
    parser.add_argument("--merge", action="store_true", help="keep the other entries of an existing scale.json")
    parser.add_argument("--render-only", action="store_true", help="rewrite SCALE.md from scale.json")
    args = parser.parse_args(argv)
    if args.render_only:
        args.out.write_text(render(json.loads((HERE / "scale.json").read_text())), encoding="utf-8")
        return 0
    factors = [int(f) for f in args.factors.split(",") if f]
    train_factors = [int(f) for f in args.train_factors.split(",") if f]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="edgebot-scale-"))
    edgebot = [sys.executable, "-m", "edgebot", "-q"]
    results: dict = {"synthetic": True, "machine": platform.machine(), "python": platform.python_version(),
                     "cpus": __import__("os").cpu_count(), "prepare": {}, "train": {}, "xgboost": {}}
    saved = HERE / "scale.json"
    if args.merge and saved.exists():
        old = json.loads(saved.read_text())
        for key in ("prepare", "train", "xgboost"):
            results[key].update(old.get(key, {}))

    def save() -> None:  # after every measurement: a long run interrupted keeps what it measured
        saved.write_text(json.dumps(results, indent=2) + "\n")
        args.out.write_text(render(results), encoding="utf-8")
    sources = [data_root() / p for p in IOT23_TRAINING]
    if args.xgboost_only:
        for factor in train_factors:
            done = subprocess.run([sys.executable, "-c", XGB_COMPARE, str(work / f"shards-x{factor}")],
                                  capture_output=True, text=True)
            print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr[-2000:], flush=True)
        return 0
    for factor in factors:
        data = work / f"x{factor}"
        data.mkdir(parents=True, exist_ok=True)
        files, rows = [], 0
        for src in sources:
            dst = data / (src.name.replace(".xz", "") + ".gz")
            if not dst.exists():
                rows += replicate(src, dst, factor)
            files.append(str(dst))
        shards = work / f"shards-x{factor}"
        for workers in (1, 2):
            target = shards if workers == 1 else work / f"shards-x{factor}-w2"
            if target.exists():
                __import__("shutil").rmtree(target)
            r = measured([*edgebot, "prepare", *files, "--out", str(target), "--workers", str(workers)])
            manifest = json.loads((target / "manifest.json").read_text())
            r["labeled_flows"] = manifest["totals"]["benign"] + manifest["totals"]["malicious"]
            r["shards"] = len(manifest["shards"])
            r["shard_mb"] = round(sum(f.stat().st_size for f in (target / "shards").iterdir()) / 2**20, 1)
            results["prepare"][f"{factor}x-w{workers}"] = r
            print(f"prepare {factor}x workers={workers}: {r}", flush=True)
            save()
        if factor in train_factors and not args.skip_xgboost:
            done = subprocess.run([sys.executable, "-c", XGB_COMPARE, str(shards)], capture_output=True, text=True)
            if done.returncode == 0:
                results["xgboost"][f"{factor}x"] = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"xgboost {factor}x: {results['xgboost'][f'{factor}x']}", flush=True)
                save()
            else:
                print(done.stderr[-2000:], file=sys.stderr)
        if factor in train_factors:
            run = work / f"run-x{factor}"
            r = measured([*edgebot, "train", str(shards), "--out", str(run), "--force", "--epochs", "1",
                          "--dask-workers", "2"])
            metrics = json.loads((run / "metrics.json").read_text())
            r["fused_f1"] = round(metrics["models"]["fused"]["f1"], 4)
            r["timings"] = json.loads((run / "timings.json").read_text())
            results["train"][f"{factor}x"] = r
            print(f"train {factor}x: {r}", flush=True)
            save()
    save()
    print(f"wrote {args.out}")
    return 0


def render(results: dict) -> str:
    lines = [
        "# Training at scale: a synthetic scale test",
        "",
        "**Synthetic**: the Nx data are the four bundled IoT-23 training captures (Mirai 34-1, Hakai 8-1, honeypots",
        "4-1 and 5-1) replicated N times inside each capture's file, each copy shifted in time past the previous",
        "one and with its IPv4 addresses remapped. The flows repeat; this measures the machinery, not detection.",
        f"Machine: {results['cpus']} CPUs ({results['machine']}, Python {results['python']}), shared with other jobs,",
        "so times are noisy. Reproduce: `nice -n 10 .venv/bin/python benchmarks/bench_train_scale.py`.",
        "",
        "## edgebot prepare",
        "",
        "| data | workers | labeled flows | shards | shard MB | time s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in sorted(results["prepare"].items(), key=lambda kv: (int(kv[0].split("x")[0]), kv[0])):
        factor, workers = key.split("-w")
        lines.append(f"| {factor} | {workers} | {r['labeled_flows']:,} | {r['shards']} | {r['shard_mb']} | "
                     f"{r['seconds']} | {r['peak_rss_mb']} |")
    lines += ["", "Peak RSS is that of the largest single process (with 2 workers: one worker process).",
              "Target: prepare peak RSS <= 1 GB at 100x. What grows with the data is per file: the start time and",
              "time rank of every labeled flow of the file being prepared (16 bytes a flow, plus the sort); the chunk",
              "(20,000 flows), the bucket (one shard) and the window states are bounded. With N workers, N files are",
              "in memory at once.", ""]
    if results["xgboost"]:
        lines += ["## The flow-level XGBoost: one process vs xgboost.dask (2-worker LocalCluster)", "",
                  "| data | training rows | trees | single process s | Dask s (warm) | Dask s (first on a fresh cluster) "
                  "| cluster start s |", "|---|---|---|---|---|---|---|"]  # noqa: E501
        for key, r in results["xgboost"].items():
            lines.append(f"| {key} | {r['rows']:,} | {r['trees']} | {r['single_s']} | {r['dask_s']} | "
                         f"{r['dask_first_s']} | {r['cluster_startup_s']} |")
        lines += ["", "Single process: `XGBClassifier`, best of n_jobs 1 and 2, best of two runs each; Dask: 2 workers "
                  "x 1 thread, a DaskQuantileDMatrix built from the shards, best of two warm runs. The same 300 trees "
                  "of depth 6 (the full configuration). Target: Dask within 1.5x of single-process time at 1x.", ""]
    if results["train"]:
        lines += ["## edgebot train SHARDS/ (every model, --epochs 1, 2-worker LocalCluster)", "",
                  "| data | time s | peak RSS MB | fused F1 | xgboost s | fusers s | networks s |", "|---|---|---|---|---|---|---|"]
        for key, r in results["train"].items():
            t = r["timings"]
            nets = round(sum(t.get(k, 0) for k in ("cnn", "lstm", "cnn_lstm", "autoencoder")), 1)
            lines.append(f"| {key} | {r['seconds']} | {r['peak_rss_mb']} | {r['fused_f1']} | {t.get('xgboost')} | "
                         f"{t.get('fusers')} | {nets} |")
        lines += ["", "Peak RSS: the trainer process (TensorFlow included) or a Dask worker, whichever is larger.", ""]
        lines += train_notes(results["train"])
    lines += NOTES
    return "\n".join(lines) + "\n"


#: ``edgebot train SHARDS/`` measured 2026-12-01 (load average: 1x about 15, 10x and 100x about 1-2), before
#: rows were picked before their windows were built: data -> (time s, peak RSS MB, fused F1).
TRAIN_BEFORE = {"1x": (289.8, 1139.1, 0.9965), "10x": (108.1, 2127.1, 0.9983), "100x": (688.8, 10594.4, 0.9987)}


def train_notes(train: dict) -> list[str]:
    """The before table and what the memory of training from shards is bounded by."""
    lines = ["Before (measured 2026-12-01, the same command; every part's windows built whole, then subsampled "
             "to 500,000 rows):", "", "| data | time s | peak RSS MB | fused F1 |", "|---|---|---|---|"]
    lines += [f"| {k} | {t} | {r} | {f} |" for k, (t, r, f) in TRAIN_BEFORE.items()]
    lines.append("")
    if "10x" in train and "100x" in train:
        r10, r100 = train["10x"]["peak_rss_mb"], train["100x"]["peak_rss_mb"]
        lines += [f"**Training memory is bounded by the caps, not by the data**: from 10x to 100x the trainer's "
                  f"peak RSS goes from {r10:,.0f} MB to {r100:,.0f} MB ({r100 / r10:.2f}x; before: 2,127 MB to "
                  "10,594 MB, 4.98x).", ""]
    lines += TRAIN_MEMORY
    return lines


TRAIN_MEMORY = [
    "Where the memory went (RSS sampled every 0.5 s on the 100x set, 2026-12-02): `ShardSet.load_part` built the",
    "windows of every row of a part and only then drew its 500,000 rows (the training part: 2.1M windows, 3 GB,",
    "copied again by `np.concatenate`); loading validation, test and training alone peaked at 10,182 MB. It now",
    "draws the seeded sample from the manifest's per-shard row counts first and builds windows for the drawn",
    "rows only, shard by shard into preallocated arrays (the same rows as before, for the same seed): 3,054 MB",
    "for the same three parts at 500,000 rows (with windows), and the Random Forest's rows now load without windows (only the 2,000",
    "calibration rows get theirs). With that fixed, the networks took the trainer from 2.9 GB to 5.3 GB at",
    "100x (4.7 GB after them): Keras copies validation and prediction arrays whole into tensors; the networks",
    "now validate and predict on slices (2,048 and 51,200 rows at a time). The cap (`max_eval_rows`) went",
    "from 500,000 to 200,000 rows a part: a part holds about 175 MB per 100,000 rows (measured: 867 MB at",
    "500,000, 347 MB at 200,000), so at 500,000 the validation and test parts alone held 1.7 GB; at 200,000",
    "the 100x run still validates on 33,438 benign flows for the 1% false-positive budget. The 10x",
    "training part (212,244 rows) is now also drawn down to 200,000 rows for the Random Forest. What still grows with the data: time (the networks and the flow-level",
    "XGBoost read every training flow) and the Dask workers' share of the XGBoost training matrix.",
    "",
    "Times: 2026-12-02 at load average about 3-6 (another job shared the 2 cores), 2026-12-01 at about 1-2",
    "for 10x and 100x and about 15 for 1x; compare times within one date only.",
    "",
]

NOTES = [
    "## Shard training against in-memory training (tests/train/test_scale.py)",
    "",
    "On Hakai 8-1 + honeypots 4-1 and 5-1 (12,229 labeled flows), seed 0, a small configuration (4 epochs, 40",
    "flow trees, 20 fuser trees, no per-capture cap), prepare with 4,000-flow shards and train on a 2-worker",
    "LocalCluster against `edgebot.train.train_run` on the same files:",
    "",
    "* windows, split and scaler: identical, row for row (`test_shards_hold_exactly_the_in_memory_windows_and_split`);",
    "* flow-level XGBoost F1: 0.9997 on both (within the 0.002 target);",
    "* fused F1, with the fuser that starts from the hybrid (2026-12-02): 0.9910 from shards, 0.9907 in memory",
    "  (0.0003 apart, within 0.002; the same to the bit on a second run); at seed 1 0.9904 and 0.9892 (0.0012). The",
    "  networks see the same windows in another batch order (tf.data shuffle buffer vs Keras' array shuffle): the",
    "  CNN-LSTM's F1 is 0.9898 / 0.9901 at seed 0. With the fuser before (trees from scratch) the two were 0.0039",
    "  apart, as far as a new seed moves in-memory training (0.9952 at seed 0, 0.9913 at seed 1). The test holds",
    "  the fused F1 to 0.002.",
    "",
    "Threads: XGBoost on a Dask worker uses the worker's threads. Giving it more (2 OpenMP threads on a",
    "1-thread worker of a busy 2-core machine) made each training about 20x slower; the single-process column",
    "above shows the same effect for `n_jobs=2`.",
]


if __name__ == "__main__":
    raise SystemExit(main())
