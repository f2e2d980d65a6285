"""Is the fused system ever worse than the best single model? Seeds x configurations x training sets.

Trains with the project's own trainer (:func:`edgebot.train.train_run`, temporal split) for every
seed in ``--seeds``, configuration in ``--configs`` (``quick``, ``full``), training set in
``--sets`` and fuser in ``--fusers`` (``from-hybrid``: the trainer's fuser, whose trees add to the
hybrid's logit; ``scratch``: the fuser before, trees from a constant, on the same base models;
``gap``: the trainer's fuser with every threshold in the middle of the validation gap, tried):

* ``iot23``: the four IoT-23 captures of the default set (:func:`edgebot.datasets.iot23_training`);
* ``wide``: the wide default training set (:func:`edgebot.datasets.default_training`).

Each training runs in its own subprocess (a clean TensorFlow) and its result is appended to the
JSON file at once, so an interrupted study keeps what ran and a rerun skips what is done. After
every run the Markdown table (FUSION.md) is rewritten: per training, the test F1 of every single
model and of both fusers, and whether fused >= the best single model on the test split. Target
(issue 11): fused never below the best single model. About 50 min on 2 cores (quick runs ~20-30 s,
full ~40-80 s each, three fusers)::

    nice -n 10 python benchmarks/fusion_seeds.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SINGLE = ("random_forest", "xgboost", "cnn", "lstm", "cnn_lstm", "autoencoder")
SETS = ("iot23", "wide")
CONFIGS = ("quick", "full")


def _files(name: str) -> list[str]:
    from edgebot import datasets

    files = datasets.iot23_training() if name == "iot23" else datasets.default_training()
    return [str(p) for p in files]


#: ``gap``: the from-hybrid fuser with every threshold in the middle of the validation gap
#: (``TrainConfig(threshold_in_gap=True)``, :func:`edgebot.train.metrics.threshold_in_gap`): tried, not the default.
FUSERS = ("from-hybrid", "scratch", "gap")


def run_one(data: str, config: str, seed: int, fuser: str, work: Path) -> dict:
    """One training; the row of the table."""
    from dataclasses import replace

    from edgebot.train import TrainConfig, train_run

    started = time.monotonic()
    cfg = replace(TrainConfig.quick() if config == "quick" else TrainConfig.full(),
                  fuser_from_hybrid=fuser != "scratch", threshold_in_gap=fuser == "gap")
    m = train_run(_files(data), work / f"{data}-{config}-{seed}-{fuser}", quick=config == "quick", seed=seed,
                  progress=False, force=True, config=cfg)
    test = {name: m["models"][name]["f1"] for name in (*SINGLE, "fused", "fused_rf")}
    val = {name: m["validation"][name]["f1"] for name in (*SINGLE, "fused", "fused_rf")}
    best = max(SINGLE, key=lambda n: test[n])
    return {
        "set": data, "config": config, "seed": seed, "fuser": fuser, "test_f1": test, "validation_f1": val,
        "best_single": best, "fused_minus_best": test["fused"] - test[best],
        "fused_minus_hybrid": test["fused"] - test["cnn_lstm"], "fused_ge_best": test["fused"] >= test[best],
        "test_flows": m["split"]["sizes"]["test"]["flows"], "seconds": round(time.monotonic() - started, 1),
    }


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _diff(x: float) -> str:
    return f"{round(x, 4) + 0.0:+.4f}"  # no "-0.0000"


#: What else was tried against the target (measured 2026-12-02; not kept), appended to FUSION.md.
TRIED = """## Tried

Fused F1 change against the table's from-hybrid column (same sets, configurations, seeds 0-4),
and on how many runs fused >= best single.

- **Thresholds in the gap** (the `gap:` columns; `--fusers gap`). The budget's threshold is the
  lowest score within the 1% validation FPR: on the quick IoT-23 runs the fused model ranked the
  test flows almost perfectly (seed 1: ROC AUC 0.99999), but its threshold 0.0216 flagged 30
  benign test flows (4.5%) scored 0.024-0.60 while all malicious test flows but one scored >=
  0.948. Moving every threshold to the middle (in logits) of the gap to the lowest malicious
  validation score it catches keeps validation recall and FPR: iot23 quick +0.0028 to +0.0066
  (fused >= best on 3 of 5), but iot23 full -0.0037 to -0.0014 (its test part holds malicious flows
  below that middle: seed 0 missed 87 scored 0.06-0.085), wide quick -0.0002 to +0.0002, wide full
  -0.0005 to 0; fused >= best on 3 of 20. Mixed, so not the default.
- **A skip path in the hybrid** (global max pooling of the convolution's output concatenated with
  the LSTM's before the head, as the CNN-only model has it; a patch to `build_cnn_lstm`, not
  kept): iot23 quick -0.0056 to +0.0002, iot23 full -0.0025 to +0.0021, wide quick -0.0010 to
  +0.0005, wide full -0.0022 to +0.0039; fused >= best on 3 of 20.
- **The flow XGBoost's probability as a fuser input** (a patch, quick runs only): iot23 -0.0019 to
  +0.0007 (0 of 5), wide -0.0005 to +0.0005 (fused >= best on 3 of 5). The most promising, but it
  would put a second tree model on the gateway's path; not done.
- **All 45 raw features in the fuser** (instead of 8; quick runs only): iot23 -0.0014 to +0.0002,
  wide -0.0005 to +0.0002 (1 of 10).
- **How full the window is** (the number of real flows in the hybrid's window, 1-8, as a ninth
  fuser input; a patch, iot23 quick only, 2026-12-02): -0.0014 to +0.0005 (0 of 5). The idea came
  from the seed-1 quick run: the fused model flags 30 benign test flows (scores 0.024-0.60; the
  flow XGBoost gives the same flows 0.0003-0.0069 and flags 10 in all); 24 of them belong to 21
  honeypot 5-1 hosts (IPv6 link-local, `::`, 192.168.69.x), and 21 of those 24 windows hold one
  flow only: the host's first in the test part. The fuser, trained on the 577 benign validation
  flows, does not learn from the fill to distrust such windows. 15 of the 21 hosts have no flow in
  the first 80% of the 5-1 log, so windows carried over from the earlier parts would not give
  them a history either.
- **The hybrid trained on short windows too** (half the training windows copied with only their
  last 1-7 flows kept, the rest zeroed, so that it learns to judge a host with little history; a
  patch, iot23 quick only, 2026-12-02): fused -0.0033 to +0.0007 (0 of 5), the hybrid itself no
  better.

None reaches the target. The differences on the wide set are 1-3 test flows; on the IoT-23 set
they are where each model's threshold lands on the later test part, not the ranking (the fused
model's test ROC AUC is the highest of all on the seed-1 quick run). The target's "best single
model" is picked on the test split itself, the most favourable of six noisy estimates; against the
single model validation would pick (the summary's second comparison) the fused model is ahead on
the IoT-23 set on 7 of 10 runs and behind it (mostly the CNN) on all 10 wide runs, by less than
0.0001 to 0.0038.
"""


def _validation_pick(row: dict) -> str:
    """The single model one would ship from validation alone (best validation F1; ties: the best on test)."""
    val = row["validation_f1"]
    top = max(val[n] for n in SINGLE)
    return max((n for n in SINGLE if val[n] == top), key=lambda n: row["test_f1"][n])


def write_markdown(rows: list[dict], path: Path, command: str) -> None:
    short = {"random_forest": "RF", "xgboost": "XGB", "cnn": "CNN", "lstm": "LSTM", "cnn_lstm": "CNN-LSTM",
             "autoencoder": "AE"}
    head = ["set", "config", "seed", *short.values(), "fused (from hybrid)", "fused (from scratch)",
            "best single", "fused - best", "fused - CNN-LSTM", "fused >= best", "gap: fused", "gap: best single",
            "gap: fused - best"]
    lines = [
        "# Fused versus the best single model (issue 11)",
        "",
        "Test-split F1 (temporal split, 1% FPR budget, thresholds from validation only) of every single",
        "model and of the fused model, per training set (`iot23`: the four IoT-23 captures; `wide`: the",
        "default training set, IoT-23 and the 44 benign devices), configuration and seed. `fused (from",
        "hybrid)` is the fuser the trainer builds: its trees add to the logit of the CNN-LSTM's",
        "probability (XGBoost's base margin, `edgebot.fusion`). `fused (from scratch)` is the fuser",
        "before that change, trained on the very same base-model scores (same seed, same data: the",
        "single models' columns are those of both runs). The comparison columns are the from-hybrid",
        "fuser's. 0.001 F1 is about 4 test flows in the quick configuration, 9 in the full one. `gap:`",
        "the same training with every threshold moved from the benign edge to the middle of the gap",
        "to the lowest malicious validation score it catches (`TrainConfig(threshold_in_gap=True)`, tried",
        "and not the default; see Tried below).",
        "",
        f"Reproduce: `{command}` (results in `benchmarks/fusion_seeds.json`).",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    keyed = {(r["set"], r["config"], r["seed"], r.get("fuser", "scratch")): r for r in rows}
    summary = []
    for data in SETS:
        for config in CONFIGS:
            sel = []
            for seed in sorted({r["seed"] for r in rows if r["set"] == data and r["config"] == config}):
                r = keyed.get((data, config, seed, "from-hybrid"))
                old = keyed.get((data, config, seed, "scratch"))
                gap = keyed.get((data, config, seed, "gap"))
                if r is None:
                    continue
                sel.append(r)
                t = r["test_f1"]
                cells = [data, config, str(seed), *(_fmt(t[n]) for n in short), _fmt(t["fused"]),
                         _fmt(old["test_f1"]["fused"]) if old else "-", short[r["best_single"]],
                         _diff(r["fused_minus_best"]), _diff(r["fused_minus_hybrid"]),
                         "yes" if r["fused_ge_best"] else "**no**"]
                cells += ([_fmt(gap["test_f1"]["fused"]), f"{short[gap['best_single']]} "
                           f"{_fmt(gap['test_f1'][gap['best_single']])}", _diff(gap["fused_minus_best"])]
                          if gap else ["-", "-", "-"])
                lines.append("| " + " | ".join(cells) + " |")
            if sel:
                ok = sum(r["fused_ge_best"] for r in sel)
                worst = min(r["fused_minus_best"] for r in sel)
                olds = [keyed[(data, config, r["seed"], "scratch")] for r in sel
                        if (data, config, r["seed"], "scratch") in keyed]
                old_worst = min((o["fused_minus_best"] for o in olds), default=None)
                gaps = [keyed[(data, config, r["seed"], "gap")] for r in sel if (data, config, r["seed"], "gap") in keyed]
                picked = [r["test_f1"]["fused"] - r["test_f1"][_validation_pick(r)] for r in sel]
                summary.append(f"- {data}, {config}: fused >= best single on {ok} of {len(sel)} seeds, worst "
                               f"fused - best {_diff(worst)}, fused - CNN-LSTM {_diff(min(r['fused_minus_hybrid'] for r in sel))}"
                               f" to {_diff(max(r['fused_minus_hybrid'] for r in sel))}"
                               f"; fused >= the single model best on validation on {sum(d >= 0 for d in picked)} of "
                               f"{len(picked)} (worst {_diff(min(picked))})"
                               + (f"; from scratch: worst fused - best {_diff(old_worst)}" if old_worst is not None else "")
                               + (f"; gap: fused >= best on {sum(g['fused_ge_best'] for g in gaps)} of {len(gaps)}, "
                                  f"fused F1 {_diff(sum(g['test_f1']['fused'] - keyed[(data, config, g['seed'], 'from-hybrid')]['test_f1']['fused'] for g in gaps) / len(gaps))} "
                                  f"on average against the budget's thresholds" if gaps else "")
                               + ".")
    lines += ["", *summary, "", TRIED]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--fusers", nargs="+", choices=FUSERS, default=list(FUSERS))
    ap.add_argument("--json", type=Path, default=HERE / "fusion_seeds.json")
    ap.add_argument("--md", type=Path, default=HERE / "FUSION.md")
    ap.add_argument("--merge", type=Path, nargs="+", default=[],
                    help="add the rows of these JSON files (another process's) to --json and rewrite the table")
    ap.add_argument("--one", nargs=4, metavar=("SET", "CONFIG", "SEED", "FUSER"), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help="run dirs go here (default: a temporary dir)")
    args = ap.parse_args(argv)
    if args.one:
        data, config, seed, fuser = args.one
        work = args.work or Path(tempfile.mkdtemp(prefix="fusion-"))
        print(json.dumps(run_one(data, config, int(seed), fuser, work)))
        return 0
    command = "nice -n 10 python benchmarks/fusion_seeds.py"
    rows = _read(args.json)
    if args.merge:
        rows = _merged(rows, *(_read(p) for p in args.merge))
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        write_markdown(rows, args.md, command)
        return 0
    done = {_key(r) for r in rows}
    with tempfile.TemporaryDirectory(prefix="fusion-") as tmp:
        for config, data, seed, fuser in itertools.product(args.configs, args.sets, args.seeds, args.fusers):
            if (data, config, seed, fuser) in done:
                continue
            cmd = [sys.executable, __file__, "--one", data, config, str(seed), fuser, "--work", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{data} {config} seed {seed} {fuser}: failed: {tail}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows = _merged(_read(args.json), rows, [row])
            args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
            write_markdown(rows, args.md, command)
            print(f"{data} {config} seed {seed} {fuser}: fused {row['test_f1']['fused']:.4f}, best single "
                  f"{row['best_single']} {row['test_f1'][row['best_single']]:.4f} ({row['seconds']:.0f} s)",
                  flush=True)
            shutil_rm(Path(tmp) / f"{data}-{config}-{seed}-{fuser}")
    return 0


def _read(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _key(r: dict) -> tuple:
    return r["set"], r["config"], r["seed"], r.get("fuser", "scratch")


def _merged(*lists: list[dict]) -> list[dict]:
    """Rows of every list, one per (set, config, seed, fuser) (the last wins), in table order."""
    by_key = {_key(r): r for rows in lists for r in rows}
    return sorted(by_key.values(), key=lambda r: (SETS.index(r["set"]), CONFIGS.index(r["config"]), r["seed"],
                                                  FUSERS.index(r.get("fuser", "scratch"))))


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
