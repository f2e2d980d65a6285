"""The run report: PNG figures, report.md and a self-contained report.html, and the terminal summary.

The paper's Table 1 (Suryawanshi and Jagtap, 2025) is printed beside our numbers. Every figure
uses the test set and the thresholds chosen on validation data.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from edgebot.train.metrics import pr_curve, roc_curve

log = logging.getLogger(__name__)

#: The paper's Table 1 in %: accuracy, precision, recall, F1 (CICIDS2017 and IoT-23, stratified 80/20).
PAPER_TABLE1: dict[str, tuple[float, float, float, float]] = {
    "random_forest": (89.5, 87.2, 85.4, 86.3),
    "cnn": (91.2, 89.5, 88.1, 88.8),
    "lstm": (92.1, 90.3, 89.8, 90.0),
    "cnn_lstm": (96.5, 94.8, 95.1, 95.0),
}
#: Display names of the models.
MODEL_LABELS: dict[str, str] = {
    "random_forest": "Random Forest (flow)",
    "xgboost": "XGBoost (flow)",
    "cnn": "CNN-only",
    "lstm": "LSTM-only",
    "cnn_lstm": "CNN-LSTM",
    "autoencoder": "Autoencoder",
    "fused": "Fused (XGBoost)",
    "fused_rf": "Fused (Random Forest)",
}
#: Figure files, in report order, with their captions.
FIGURES: dict[str, str] = {
    "confusion.png": "Confusion matrices on the test set (fused system and the XGBoost baseline)",
    "roc.png": "ROC curves of all models on the test set (right: the low false-positive region)",
    "pr.png": "Precision-recall curves of all models on the test set",
    "importance.png": "Feature importance: the single-flow baselines' features and the XGBoost fuser's inputs",
    "training.png": "Training and validation accuracy / loss per epoch",
    "bars.png": "Accuracy, precision, recall and F1 of every model, beside the paper's Table 1",
}
_COLORS = {
    "random_forest": "#8c564b", "xgboost": "#ff7f0e", "cnn": "#2ca02c", "lstm": "#9467bd",
    "cnn_lstm": "#1f77b4", "autoencoder": "#7f7f7f", "fused": "#d62728", "fused_rf": "#e377c2",
}


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def _num(value: Optional[float], digits: int = 4) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _fig_confusion(plt, metrics: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, name in zip(axes, ("fused", "xgboost")):
        cm = np.array(metrics["models"][name]["confusion"])
        ax.imshow(cm, cmap="Blues")
        ax.grid(False)
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=12,
                    color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks([0, 1], ["benign", "malicious"])
        ax.set_yticks([0, 1], ["benign", "malicious"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        m = metrics["models"][name]
        ax.set_title(f"{MODEL_LABELS[name]}\nF1 {_pct(m['f1'])}%, FPR {_pct(m['fpr'])}%")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fig_roc(plt, labels: np.ndarray, scores: Mapping[str, np.ndarray], metrics: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    budget = metrics.get("fpr_budget", 0.01)
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(labels, s)
        auc = metrics["models"][name]["roc_auc"]
        for ax in axes:
            ax.plot(fpr, tpr, color=_COLORS.get(name), lw=2.2 if name == "fused" else 1.2,
                    label=f"{MODEL_LABELS.get(name, name)} (AUC {_num(auc, 3)})")
        m = metrics["models"][name]
        axes[1].plot([m["fpr"]], [m["recall"]], "o", color=_COLORS.get(name), ms=4)
    axes[0].plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    axes[0].set_xlim(0, 1)
    axes[0].set_title("ROC, test set")
    axes[1].set_xlim(0, max(5 * budget, 0.05))
    axes[1].axvline(budget, ls="--", color="black", lw=0.8)
    axes[1].set_title(f"zoom (dashed: FPR budget {budget:g}; dots: chosen thresholds)")
    lowest = min(m["recall"] for m in metrics["models"].values())
    axes[0].set_ylim(0, 1.01)
    axes[1].set_ylim(max(0.0, np.floor((lowest - 0.02) * 20) / 20), 1.005)
    for ax in axes:
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate (recall)")
    axes[0].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fig_pr(plt, labels: np.ndarray, scores: Mapping[str, np.ndarray], metrics: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, s in scores.items():
        precision, recall, _ = pr_curve(labels, s)
        ax.step(np.r_[0.0, recall], np.r_[precision[:1], precision] if len(precision) else [1.0],
                where="post", color=_COLORS.get(name), lw=2.2 if name == "fused" else 1.2,
                label=f"{MODEL_LABELS.get(name, name)} (AP {_num(metrics['models'][name]['pr_auc'], 3)})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_title("Precision-recall, test set")
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fig_importance(plt, importance: Mapping[str, Mapping[str, float]], path: Path, top: int = 15) -> None:
    names = list(importance)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.6))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names):
        items = sorted(importance[name].items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
        ax.barh([k for k, _ in items], [v for _, v in items], color="#1f77b4")
        ax.set_title(name)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("importance")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fig_training(plt, history: Mapping[str, Mapping[str, list]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, h in history.items():
        color = _COLORS.get(name)
        epochs = np.arange(1, len(h.get("loss", [])) + 1)
        if "accuracy" in h:
            axes[0].plot(epochs, h["accuracy"], "--", color=color, lw=1)
            axes[0].plot(epochs, h["val_accuracy"], "-", color=color, lw=1.5, label=MODEL_LABELS.get(name, name))
        axes[1].plot(epochs, h["loss"], "--", color=color, lw=1)
        axes[1].plot(epochs, h["val_loss"], "-", color=color, lw=1.5, label=MODEL_LABELS.get(name, name))
    axes[0].set_title("accuracy (dashed: training, solid: validation)")
    axes[1].set_title("loss (dashed: training, solid: validation)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fig_bars(plt, metrics: dict, path: Path) -> None:
    keys = ("accuracy", "precision", "recall", "f1")
    metric_colors = ("#4c72b0", "#55a868", "#c44e52", "#8172b2")
    groups = [(MODEL_LABELS[n].replace(" (", "\n("), [100 * (metrics["models"][n][k] or 0.0) for k in keys], False)
              for n in metrics["models"]]
    groups += [(f"paper:\n{MODEL_LABELS[n].split(' (')[0]}", list(v), True) for n, v in PAPER_TABLE1.items()]
    fig, ax = plt.subplots(figsize=(12, 4.4))
    width = 0.2
    for g, (_label, values, paper) in enumerate(groups):
        for i, value in enumerate(values):
            ax.bar(g + (i - 1.5) * width, value, width, color=metric_colors[i], alpha=0.45 if paper else 1.0,
                   hatch="//" if paper else None, edgecolor="black" if paper else None, linewidth=0.3,
                   label=("F1" if keys[i] == "f1" else keys[i]) if g == 0 else None)
    ax.axvline(len(metrics["models"]) - 0.5, color="black", lw=0.8)
    ax.set_xticks(range(len(groups)), [label for label, _, _ in groups], fontsize=7)
    low = min(min(v) for _, v, _ in groups)
    ax.set_ylim(max(0.0, 5 * np.floor((low - 2) / 5)), 100.5)
    ax.set_ylabel("%")
    ax.set_title(f"Ours ({metrics['split']['name']} split, test set, validation-chosen thresholds) | "
                 "the paper's Table 1 (hatched, stratified split)")
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_figures(run: Path, metrics: dict, labels: np.ndarray, scores: Mapping[str, np.ndarray],
                  history: Mapping[str, Mapping[str, list]], importance: Mapping[str, Mapping[str, float]]) -> list[Path]:
    """Draw every figure of :data:`FIGURES` into ``run/figures``.

    Parameters
    ----------
    labels
        ``(n,)`` test labels.
    scores
        Model name -> ``(n,)`` test scores.
    """
    plt = _pyplot()
    figures = run / "figures"
    figures.mkdir(exist_ok=True)
    _fig_confusion(plt, metrics, figures / "confusion.png")
    _fig_roc(plt, labels, scores, metrics, figures / "roc.png")
    _fig_pr(plt, labels, scores, metrics, figures / "pr.png")
    _fig_importance(plt, importance, figures / "importance.png")
    _fig_training(plt, history, figures / "training.png")
    _fig_bars(plt, metrics, figures / "bars.png")
    return [figures / name for name in FIGURES]


# ----------------------------------------------------------------------------------------------
# text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _sections(metrics: dict, timings: Optional[Mapping[str, float]]) -> list[tuple[str, list[str]]]:
    """The report as (title, markdown lines) sections, shared by the md and html writers."""
    split = metrics["split"]
    models = metrics["models"]
    budget = metrics["fpr_budget"]
    out: list[tuple[str, list[str]]] = []

    lines = [f"- split: **{split['name']}**: {split['protocol']}."]
    if split["leaky"]:
        lines.append("- **Warning: this split leaks.** It is the paper's protocol, reproduced for comparison; "
                     "neighbouring flows of one capture are on both sides, so these numbers overstate what a "
                     "gateway would see. Use the temporal and leave-out splits to judge the models.")
    sizes = split["sizes"]
    lines.append("- sizes: " + "; ".join(
        f"{part} {s['flows']:,} flows ({s['benign']:,} benign, {s['malicious']:,} malicious)" for part, s in sizes.items()))
    lines.append(f"- test captures: {', '.join(split['test_captures'])}")
    data = metrics["data"]
    lines.append(f"- data: {', '.join(f['path'] for f in data['files'])}; {data['flows_labeled']:,} labeled flows"
                 + (f", {data['flows_used']:,} used (subsampled per capture)" if data["flows_used"] != data["flows_labeled"] else "")
                 + (f"; dropped (not benign/malicious): {data['dropped_unlabeled']}" if data["dropped_unlabeled"] else ""))
    cfg = metrics["config"]
    if cfg.get("sequence") == "feature-axis":
        lines.append(f"- feature profile **{cfg['profile']}**: the rows have no host or time columns, so the networks "
                     "cannot follow a host; they read **the feature axis as the sequence** (each flow's features as a "
                     "sequence of one value, the usual CNN-LSTM formulation on CICIDS2017), and file order stands "
                     "for time (each file is one capture)")
        lines.append(f"- seed {cfg['seed']}, {'quick' if cfg['quick'] else 'full'} configuration, "
                     f"up to {cfg['epochs']} epochs with early stopping")
    else:
        lines.append(f"- window {cfg['window']} flows per host, seed {cfg['seed']}, "
                     f"{'quick' if cfg['quick'] else 'full'} configuration, up to {cfg['epochs']} epochs with early stopping")
    lines.append(f"- thresholds: {metrics['threshold_policy']}.")
    out.append(("Run", lines))

    if "leave_out" in metrics:
        lo = metrics["leave_out"]
        lines = [f"Left out of training entirely and used as the test set: **{lo['name']}** "
                 f"({lo['matched']}: captures {', '.join(lo['captures'])}). This is the number that matters for "
                 "a botnet the models have never seen.", ""]
        lines += _table(["model", f"recall % (FPR budget {budget:g})", "test FPR %", "F1 %", "ROC AUC"],
                        [[MODEL_LABELS[n], _pct(m["recall"]), _pct(m["fpr"]), _pct(m["f1"]), _num(m["roc_auc"])]
                         for n, m in models.items()])
        lines += [""] + _leave_out_reading(models)
        out.append(("Leave-out: recall on the unseen family", lines))

    rows = []
    for name, paper in PAPER_TABLE1.items():
        m = models[name]
        rows.append([MODEL_LABELS[name]] + [f"{v:.1f}" for v in paper]
                    + [_pct(m[k]) for k in ("accuracy", "precision", "recall", "f1")])
    for name in ("xgboost", "autoencoder", "fused", "fused_rf"):
        m = models[name]
        rows.append([MODEL_LABELS[name], "-", "-", "-", "-"] + [_pct(m[k]) for k in ("accuracy", "precision", "recall", "f1")])
    lines = ["The paper's numbers (CICIDS2017 and IoT-23, stratified random 80/20) beside ours "
             f"(this data, {split['name']} split, test set, thresholds chosen on validation). %.", ""]
    lines += _table(["model", "paper acc", "paper prec", "paper rec", "paper F1", "ours acc", "ours prec",
                     "ours rec", "ours F1"], rows)
    out.append(("Table 1: the paper beside ours", lines))

    rows = [[MODEL_LABELS[n]] + [_pct(m[k]) for k in ("accuracy", "precision", "recall", "f1")]
            + [_num(m["roc_auc"]), _num(m["pr_auc"]), _pct(m["fpr"]), f"{m['threshold']:.6g}",
               f"{m['confusion'][0][0]:,} / {m['confusion'][0][1]:,} / {m['confusion'][1][0]:,} / {m['confusion'][1][1]:,}"]
            for n, m in models.items()]
    lines = _table(["model", "acc %", "prec %", "rec %", "F1 %", "ROC AUC", "PR AUC", "FPR %", "threshold",
                    "TN / FP / FN / TP"], rows)
    out.append(("All models, test set", lines))

    fam = metrics.get("per_family", {})
    if fam:
        names = list(models)
        rows = [[f"{f} ({e['malicious']:,})"] + [_pct(e[n]["recall"]) for n in names] for f, e in fam.items()]
        lines = [f"Recall per botnet family on the test set at the validation-chosen thresholds (FPR budget {budget:g}).", ""]
        lines += _table(["family (malicious flows)"] + [MODEL_LABELS[n] for n in names], rows)
        out.append(("Recall per family", lines))
    cap = metrics.get("per_capture", {})
    if cap:
        rows = [[c, f"{e['benign']:,}", f"{e['malicious']:,}", _pct(e["fused"]["recall"]), _pct(e["fused"]["fpr"]),
                 _pct(e["xgboost"]["recall"]), _pct(e["xgboost"]["fpr"])] for c, e in cap.items()]
        lines = _table(["capture", "benign", "malicious", "fused recall %", "fused FPR %", "XGBoost recall %",
                        "XGBoost FPR %"], rows)
        out.append(("Per capture (test set)", lines))
    if timings:
        out.append(("Timings (s)", [", ".join(f"{k} {v:.1f}" for k, v in timings.items())]))
    return out


def _leave_out_reading(models: dict) -> list[str]:
    """Plain-language reading of a leave-out result (why recall is what it is)."""
    fused, ae = models["fused"], models["autoencoder"]
    notes = []
    auc = fused["roc_auc"]
    if auc is not None and np.isfinite(auc) and auc >= 0.9 and fused["recall"] < 0.5:
        notes.append(
            f"- The fused score still ranks the unseen family above this capture's benign flows (ROC AUC {auc:.3f}), "
            "but mostly below the threshold set on the known families' validation data: the scores are not "
            "calibrated for a family the models never saw. The threshold is never tuned on the test set; "
            "that is the point of this split.")
    notes.append(
        f"- The autoencoder (trained on benign flows only, the one family-agnostic signal) flags "
        f"{_pct(ae['recall'])}% of the unseen family at a test FPR of {_pct(ae['fpr'])}%"
        + (": where it is high and the fused recall is not, the fuser learned from the known families to "
           "trust the supervised models instead." if ae["recall"] > fused["recall"] + 0.1 else "."))
    notes.append("- One run is one seed: on small data, leave-out recall moves a lot from seed to seed; "
                 "compare several seeds before drawing conclusions.")
    return notes


def write_markdown(run: Path, metrics: dict, timings: Optional[Mapping[str, float]] = None) -> Path:
    """Write ``report.md`` (figures linked from ``figures/``)."""
    lines = [f"# edgebot training report: {metrics['split']['name']} split", ""]
    for title, body in _sections(metrics, timings):
        lines += [f"## {title}", "", *body, ""]
    lines += ["## Figures", ""]
    for name, caption in FIGURES.items():
        lines += [f"**{caption}**", "", f"![{caption}](figures/{name})", ""]
    path = run / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _md_inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _md_to_html(lines: list[str]) -> str:
    """The tiny markdown subset the sections use: paragraphs, bullets and pipe tables."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
            out.append("<table><tr>" + "".join(f"<th>{_md_inline(c)}</th>" for c in cells[0]) + "</tr>")
            for row in cells[2:]:
                out.append("<tr>" + "".join(f"<td>{_md_inline(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
            continue
        if line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_md_inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        if line.strip():
            out.append(f"<p>{_md_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def write_html(run: Path, metrics: dict, timings: Optional[Mapping[str, float]] = None) -> Path:
    """Write a self-contained ``report.html`` (figures embedded as base64 PNG)."""
    title = f"edgebot training report: {metrics['split']['name']} split"
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section, lines in _sections(metrics, timings):
        body += [f"<h2>{html.escape(section)}</h2>", _md_to_html(lines)]
    body.append("<h2>Figures</h2>")
    for name, caption in FIGURES.items():
        png = run / "figures" / name
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        body.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "th{background:#f0f0f0}img{max-width:100%}figcaption{color:#555;font-size:.9em}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = run / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_report(run: Path, metrics: dict, *, labels: np.ndarray, scores: Mapping[str, np.ndarray],
                 history: Mapping[str, Mapping[str, list]], importance: Mapping[str, Mapping[str, float]],
                 timings: Optional[Mapping[str, float]] = None) -> None:
    """Figures, ``report.md`` and ``report.html`` for one run.

    Parameters
    ----------
    run
        The run dir being written.
    metrics
        The content of ``metrics.json``.
    labels
        ``(n,) int8`` test labels.
    scores
        Model name -> ``(n,)`` test scores (the autoencoder's is its reconstruction error).
    history
        Network name -> per-epoch ``loss``, ``val_loss`` (and ``accuracy``, ``val_accuracy``).
    importance
        Panel title -> feature name -> importance.
    """
    write_figures(run, metrics, labels, scores, history, importance)
    write_markdown(run, metrics, timings)
    write_html(run, metrics, timings)


def format_summary(metrics: dict, run_dir: Optional[Any] = None) -> str:
    """One screen for the terminal after ``edgebot train``: split, every model, the verdict."""
    split = metrics["split"]
    budget = metrics["fpr_budget"]
    lines = [f"split {split['name']}" + (" (LEAKY: the paper's protocol)" if split["leaky"] else "")
             + "; " + ", ".join(f"{p} {s['flows']:,}" for p, s in split["sizes"].items())]
    if metrics.get("config", {}).get("sequence") == "feature-axis":
        lines.append(f"profile {metrics['config']['profile']}: no hosts or times, the networks read the feature axis "
                     "as the sequence; file order stands for time")
    lines.append(f"thresholds chosen on validation at FPR budget {budget:g}; test-set metrics (%):")
    lines.append(f"  {'model':<24}{'acc':>7}{'prec':>7}{'rec':>7}{'F1':>7}{'FPR':>7}{'ROC AUC':>9}")
    for name, m in metrics["models"].items():
        lines.append(f"  {MODEL_LABELS.get(name, name):<24}{_pct(m['accuracy']):>7}{_pct(m['precision']):>7}"
                     f"{_pct(m['recall']):>7}{_pct(m['f1']):>7}{_pct(m['fpr']):>7}{_num(m['roc_auc'], 4):>9}")
    fused = metrics["models"]["fused"]
    best_single = max((n for n in metrics["models"] if n not in ("fused", "fused_rf")),
                      key=lambda n: metrics["models"][n]["f1"])
    lines.append(f"fused F1 {_pct(fused['f1'])}% vs best single model {MODEL_LABELS[best_single]} "
                 f"{_pct(metrics['models'][best_single]['f1'])}% and the paper's CNN-LSTM 95.0%")
    if "leave_out" in metrics:
        lo = metrics["leave_out"]
        lines.append(f"left out {lo['name']} ({', '.join(lo['captures'])}): fused recall {_pct(lo['recall'])}% "
                     f"at test FPR {_pct(lo['fpr'])}%")
    if run_dir is not None:
        lines.append(f"run dir: {run_dir} (report.html, metrics.json)")
    return "\n".join(lines)
