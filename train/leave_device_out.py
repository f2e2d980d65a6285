"""Leave-device-out: false incidents on each benign device when that device was never trained on.

``edgebot train DATA... --split leave-device-out[:K] --out RUN`` deals the benign devices of the data
(the files :func:`edgebot.datasets.benign_devices` registers) into K folds by physical device. For each
fold it trains on everything else (every other device, and every file that is not a registered device:
the malicious captures stay in training with today's temporal split), converts that model to the int8
bundle, and replays each held-out device's flows through the deployed path (featurize, scale with the
bundle's scaler, per-host windows in start-time order, ``Bundle.score``), then counts the incidents the
agent's rule opens on the device's own addresses. Other hosts of a device's capture (the setup phone,
the gateway) are reported apart and never counted as the device.

The run dir holds ``leave_device_out.json``, ``report.md``, ``report.html`` and, per fold,
``folds/fold-<i>/run`` (an ordinary run dir) and ``folds/fold-<i>/bundle``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union, cast

import numpy as np

from edgebot.errors import DataError
from edgebot.train.data import DEVICE_FOLDS, device_folds

if TYPE_CHECKING:  # pragma: no cover
    from edgebot.flow import FlowRecord

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: The split name's prefix; ``leave-device-out:3`` asks for 3 folds.
SPLIT_NAME = "leave-device-out"
#: The issue's target: at most this many devices raise a false incident when never trained on.
TARGET_DEVICES_WITH_INCIDENT = 2
#: Fold bundles are evaluation artefacts: their int8 drop is reported, never a reason to stop.
FOLD_MAX_F1_DROP = 1.0
#: Fixed fused thresholds at which the false incidents are also counted (and each fold's recall on its malicious
#: temporal test flows reported): what a higher operating point would buy, for the threshold and incident work.
THRESHOLD_SWEEP = (0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 0.99)


def parse_leave_device_out(split: str) -> Optional[int]:
    """``"leave-device-out"`` -> 5, ``"leave-device-out:3"`` -> 3, any other split -> None.

    Raises
    ------
    DataError
        ``leave-device-out:`` followed by something that is not an integer of at least 2.
    """
    kind, sep, value = split.strip().partition(":")
    if kind.lower() != SPLIT_NAME:
        return None
    if not sep:
        return DEVICE_FOLDS
    try:
        k = int(value)
    except ValueError:
        raise DataError(f"leave-device-out:{value} - K must be a whole number of folds, e.g. leave-device-out:5") from None
    if k < 2:
        raise DataError(f"leave-device-out needs at least 2 folds, got {k}")
    return k


def _incident_rule() -> str:
    """One line naming the rule :func:`_count_false_incidents` applies (for the report)."""
    from edgebot.incidents import EvidenceRule

    r = EvidenceRule()
    return (f"the agent's evidence rule (edgebot.judge.FlowJudge, EvidenceRule defaults: confident {r.confident_flows} "
            f"flows in {r.window_s:g} s at >= {r.confident_share:.0%} of the host's flows, scan {r.scan_destinations} "
            f"destinations, flood {r.flood_rate:g}/s, retry {r.retry_rate:g}/s to one peer, beacon {r.beacon_flows} "
            "regular flows); without learning, and with the agent's default learning (the device is new to the gateway)")


def _count_false_incidents(flows: Sequence[Any], scores: np.ndarray, threshold: float,
                           learn_s: float = 0.0) -> dict[str, int]:
    """Incidents the agent's rule opens per host on scored benign flows (THE adapter to the incident rule).

    :class:`edgebot.judge.FlowJudge` with the evidence rule's defaults (the same implementation as
    ``edgebot run`` and ``edgebot eval``), flows in end-time order; ``learn_s`` > 0 starts the gateway's
    site learning at the capture's first flow (the device is new to it), 0 switches learning off.

    Parameters
    ----------
    flows
        :class:`~edgebot.flow.FlowRecord` of one capture.
    scores
        ``(n,)`` fused scores of those flows.
    threshold
        The bundle's threshold.
    learn_s
        The site learning period (0: none).

    Returns
    -------
    dict
        ``{host: number of incidents opened}``, only hosts with at least one.
    """
    from edgebot.judge import FlowJudge, replay_records
    from edgebot.site import SiteProfile, SiteSettings

    site = SiteProfile("fold", threshold, SiteSettings(learn_s=learn_s)) if learn_s > 0 else None
    judge = FlowJudge.build("leave-device-out", {"id": "fold", "version": ""}, threshold, site=site)
    messages = replay_records(judge, flows, np.asarray(scores, dtype=np.float64).tolist())
    opened: dict[str, int] = defaultdict(int)
    for message in messages:
        if message["type"] == "new":
            opened[message["host"]] += 1
    return dict(opened)


def score_device(bundle: Any, files: Sequence[PathLike], addresses: Sequence[str], capture_hours: float,
                 sweep: Sequence[float] = THRESHOLD_SWEEP) -> dict:
    """Replay one device's flow files through a bundle, as the gateway would, and count its false incidents.

    Parameters
    ----------
    bundle
        A loaded :class:`edgebot.bundle.Bundle`.
    files
        The device's flow files (one stream: their flows are merged in start-time order).
    addresses
        The device's own addresses; flows other hosts originate are scored but not counted as the device.
    capture_hours
        Hours of capture (for the per-day rate).
    sweep
        Fixed thresholds at which the device's false incidents are counted too.

    Returns
    -------
    dict
        ``flows, device_flows, flagged_flows, device_flagged_flows, max_score`` (of the device's flows; None
        without any), ``false_incidents`` (on the device's addresses), ``other_host_incidents``,
        ``incident_hosts`` (``{host: n}``), ``capture_hours``, ``false_incidents_per_day``, ``false_incidents_at``
        (``{threshold: false incidents}`` over ``sweep``).
    """
    from edgebot.readers import read_flows

    read, _ = read_flows([Path(f) for f in files])
    records = cast("list[FlowRecord]", read)  # device files are Zeek-style conn logs (host and time columns)
    records.sort(key=lambda r: r.ts)  # stable: file order breaks ties
    own = set(addresses)
    out: dict[str, Any] = {"flows": len(records), "device_flows": sum(r.orig_h in own for r in records)}
    if records:
        hosts = [r.orig_h for r in records]
        X = bundle.scale(bundle.featurize(records))
        scores = bundle.score(bundle.sequences(X, hosts, np.array([r.ts for r in records], dtype=np.float64)))
    else:
        scores = np.zeros(0, dtype=np.float32)
    flagged = bundle.decide(scores)
    mine = np.array([r.orig_h in own for r in records], dtype=np.bool_)
    incidents = _count_false_incidents(records, scores, bundle.threshold)
    false_incidents = sum(n for host, n in incidents.items() if host in own)
    from edgebot.site import SiteSettings

    learned = _count_false_incidents(records, scores, bundle.threshold, learn_s=SiteSettings().learn_s)
    days = capture_hours / 24.0
    out.update({
        "flagged_flows": int(flagged.sum()),
        "device_flagged_flows": int(flagged[mine].sum()),
        "max_score": float(scores[mine].max()) if mine.any() else None,
        "false_incidents": int(false_incidents),
        "false_incidents_with_learning": int(sum(n for host, n in learned.items() if host in own)),
        "other_host_incidents": int(sum(n for host, n in incidents.items() if host not in own)),
        "incident_hosts": dict(sorted(incidents.items())),
        "capture_hours": float(capture_hours),
        "false_incidents_per_day": float(false_incidents / days) if days > 0 else None,
        "false_incidents_at": {f"{t:g}": sum(n for host, n in _count_false_incidents(records, scores, t).items()
                                             if host in own) for t in sweep},
    })
    return out


def _check_out(out: Path, force: bool) -> None:
    """Refuse an existing --out unless ``force`` and it is a previous leave-device-out run dir (or empty)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"--out {out} is a file; give a directory path for the run")
    if not any(out.iterdir()):
        return
    if not force:
        raise DataError(f"--out {out} already exists; pass --force to replace it or choose another path")
    if not (out / "leave_device_out.json").exists():
        raise DataError(f"--out {out} exists and is not a leave-device-out run dir; --force only replaces run dirs")


def _devices_in(paths: Sequence[Path], root: Optional[PathLike]) -> tuple[dict[str, Any], dict[str, list[Path]], list[Path]]:
    """Registered devices among ``paths``: ``({device: BenignDevice}, {device: its given files}, other files)``."""
    from edgebot import datasets

    registry = datasets.benign_devices(root)
    by_name: dict[str, str] = {}
    for name, dev in registry.items():
        for f in dev.files:
            by_name[f.name] = name
    given: dict[str, list[Path]] = defaultdict(list)
    others: list[Path] = []
    for path in paths:
        device = by_name.get(path.name)
        if device is None:
            others.append(path)
        else:
            given[device].append(path)
    devices = {name: registry[name] for name in registry if name in given}
    return devices, {name: given[name] for name in devices}, others


def leave_device_out(
    paths: Sequence[PathLike],
    out: PathLike,
    *,
    k: int = DEVICE_FOLDS,
    window: int = 8,
    epochs: Optional[int] = None,
    seed: int = 0,
    quick: bool = False,
    fpr_budget: float = 0.01,
    families: Optional[Mapping[str, str]] = None,
    progress: bool = True,
    force: bool = False,
    config: Any = None,
    data_root: Optional[PathLike] = None,
) -> dict:
    """Train K models, each without one fold of benign devices, and count false incidents on those devices.

    Parameters
    ----------
    paths
        Labeled flow files, as for :func:`edgebot.train.train_run`; the files of registered benign devices
        (``data/benign_devices/DEVICES.tsv``) are dealt into folds, every other file always trains.
    out
        Run dir to create (replaced with ``force`` when it is a previous leave-device-out run).
    k
        Folds (devices sharing a MAC stay in one fold); assignment is deterministic for ``seed``.
    window, epochs, seed, quick, fpr_budget, families, progress, config
        Passed to every fold's :func:`~edgebot.train.train_run` (``split="temporal"``).
    force
        Replace a previous run dir at ``out``.
    data_root
        Data folder of the device registry (default: :func:`edgebot.datasets.data_root`).

    Returns
    -------
    dict
        The content of ``leave_device_out.json`` plus ``"summary"`` (the text the CLI prints).

    Raises
    ------
    DataError
        No registered device among ``paths``, fewer devices than folds, an --out that is not a run dir; and
        whatever one fold's training raises.
    """
    from edgebot import datasets
    from edgebot.bundle import load_bundle
    from edgebot.convert.bundle_writer import convert_run
    from edgebot.jsonsafe import write_json
    from edgebot.statefiles import staged_dir
    from edgebot.train.fit import train_run

    started = time.monotonic()
    files = [Path(p) for p in paths]
    out = Path(out)
    _check_out(out, force)
    devices, given, others = _devices_in(files, data_root)
    if not devices:
        raise DataError("leave-device-out needs benign device files (data/benign_devices, see edgebot.datasets); "
                        "none of the given files is a registered device")
    folds = device_folds([dev.group for dev in devices.values()], k, seed)
    fold_of_group = {group: i for i, fold in enumerate(folds) for group in fold}
    configuration = "custom" if config is not None else ("quick" if quick else "full")
    result: dict[str, Any] = {"split": f"{SPLIT_NAME}:{k}", "k": k, "seed": seed, "configuration": configuration,
                              "protocol": _PROTOCOL, "incident_rule": _incident_rule(), "folds": [], "devices": {}}
    with staged_dir(out) as tmp:
        for i, fold in enumerate(folds):
            held = [name for name, dev in devices.items() if fold_of_group[dev.group] == i]
            held_files = {f for name in held for f in given[name]}
            train_files = [p for p in files if p not in held_files]
            fold_dir = tmp / "folds" / f"fold-{i}"
            log.info("fold %d/%d: %d devices held out, training on %d files", i + 1, k, len(held), len(train_files))
            t = time.monotonic()
            metrics = train_run(train_files, fold_dir / "run", split="temporal", window=window, epochs=epochs,
                                seed=seed, quick=quick, fpr_budget=fpr_budget, families=families, progress=progress,
                                config=config)
            train_s = time.monotonic() - t
            verification = convert_run(fold_dir / "run", fold_dir / "bundle", max_f1_drop=FOLD_MAX_F1_DROP)
            bundle = load_bundle(fold_dir / "bundle")
            for name in held:
                dev = devices[name]
                scored = score_device(bundle, given[name], dev.addresses, dev.capture_hours)
                result["devices"][name] = {"dataset": dev.dataset, "group": dev.group, "fold": i,
                                           "files": [p.name for p in given[name]], **scored}
            models = metrics["models"]
            test = np.load(fold_dir / "run" / "test_scores.npz")
            malicious = test["fused"][test["labels"] == 1].astype(np.float64)
            result["folds"].append({
                "fold": i, "groups": fold, "devices": held, "held_out_files": sorted(p.name for p in held_files),
                "train_files": [p.name for p in train_files], "threshold": float(bundle.threshold),
                "bundle_id": bundle.bundle_id, "fused_f1": models["fused"]["f1"], "xgboost_f1": models["xgboost"]["f1"],
                "int8_f1_drop": verification.get("f1_drop"), "train_seconds": round(train_s, 1),
                "recall_at": {f"{t:g}": float((malicious >= t).mean()) if len(malicious) else None
                              for t in THRESHOLD_SWEEP},
                "run": f"folds/fold-{i}/run", "bundle": f"folds/fold-{i}/bundle",
            })
        result["devices"] = {name: result["devices"][name] for name in devices}  # registry order
        result["always_trained"] = [p.name for p in others]
        result["totals"] = _totals(result["devices"], registered=len(datasets.benign_devices(data_root)))
        result["seconds"] = round(time.monotonic() - started, 1)
        write_json(tmp / "leave_device_out.json", result)
        write_reports(tmp, result)
    return {**result, "summary": format_leave_device_out(result, out)}


_PROTOCOL = (
    "benign devices (data/benign_devices/DEVICES.tsv) dealt into K folds by physical device (a shared MAC keeps "
    "two folders together), deterministically for the seed; per fold: train on every other file (malicious "
    "captures always, with the temporal split), convert to the int8 bundle, replay each held-out device through "
    "the deployed path (featurize, bundle scaler, per-host windows in start-time order, Bundle.score) and count "
    "incidents on the device's own addresses"
)


def _totals(devices: Mapping[str, dict], registered: int) -> dict:
    """Totals over the held-out devices; the issue's target is judged only when every registered device took part."""
    with_incident = [name for name, d in devices.items() if d["false_incidents"] > 0]
    any_host = [name for name, d in devices.items() if d["false_incidents"] + d["other_host_incidents"] > 0]
    hours = sum(d["capture_hours"] for d in devices.values())
    incidents = sum(d["false_incidents"] for d in devices.values())
    sweep = next(iter(devices.values()))["false_incidents_at"] if devices else {}
    return {
        "devices": len(devices),
        "devices_with_false_incident": len(with_incident),
        "devices_with_false_incident_list": with_incident,
        "captures_with_any_incident": len(any_host),
        "captures_with_any_incident_list": any_host,
        "false_incidents": incidents,
        "devices_with_false_incident_with_learning": sum(
            1 for d in devices.values() if d.get("false_incidents_with_learning", 0) > 0),
        "other_host_incidents": sum(d["other_host_incidents"] for d in devices.values()),
        "capture_hours": hours,
        "false_incidents_per_device_day": incidents / (hours / 24.0) if hours > 0 else None,
        "registered_devices": registered,
        "devices_with_false_incident_at": {t: sum(d["false_incidents_at"][t] > 0 for d in devices.values())
                                           for t in sweep},
        "target_max_devices": TARGET_DEVICES_WITH_INCIDENT,
        "target_met": len(with_incident) <= TARGET_DEVICES_WITH_INCIDENT if len(devices) == registered else None,
    }


# ---------------------------------------------------------------------------------------------- reports

def _verdict(totals: Mapping[str, Any]) -> str:
    if totals["target_met"] is None:
        return (f"a subset of the {totals['registered_devices']} registered devices; the target, at most "
                f"{totals['target_max_devices']} of all of them, is not judged")
    return f"target: at most {totals['target_max_devices']}; {'met' if totals['target_met'] else 'NOT met'}"


def _score(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def report_lines(result: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """The report as (title, markdown lines) sections."""
    from edgebot.train.report import _table

    t = result["totals"]
    summary = [
        f"**{t['devices_with_false_incident']} of {t['devices']} devices** raise at least one false incident on "
        f"their own addresses when never trained on ({_verdict(t)}).",
        f"With the agent's default site learning (the device new to the gateway): "
        f"{t.get('devices_with_false_incident_with_learning', 0)} of {t['devices']} devices.",
        f"{t['false_incidents']} false incidents over {t['capture_hours']:.1f} capture hours; "
        f"{t['other_host_incidents']} more on other hosts of the captures (setup phones, gateways); "
        f"{t['captures_with_any_incident']} captures raise an incident on any host.",
    ]
    if t["devices_with_false_incident_list"]:
        summary.append("Devices with a false incident: " + ", ".join(t["devices_with_false_incident_list"]) + ".")
    rows = []
    for name, d in result["devices"].items():
        rows.append([name, str(d["fold"]), str(d["flows"]), str(d["device_flows"]), str(d["device_flagged_flows"]),
                     _score(d["max_score"]), str(d["false_incidents"]), str(d.get("false_incidents_with_learning", "-")),
                     str(d["other_host_incidents"]),
                     f"{d['capture_hours']:.3f}",
                     "-" if d["false_incidents_per_day"] is None else f"{d['false_incidents_per_day']:.1f}"])
    devices = _table(["device", "fold", "flows", "device flows", "flagged", "max score", "false incidents",
                      "with learning", "other hosts' incidents", "capture h", "per day"], rows)
    folds = _table(["fold", "devices", "train files", "threshold", "fused F1", "XGBoost F1", "int8 F1 drop", "train s"],
                   [[str(f["fold"]), str(len(f["devices"])), str(len(f["train_files"])), f"{f['threshold']:.4g}",
                     f"{f['fused_f1']:.4f}", f"{f['xgboost_f1']:.4f}",
                     "-" if f["int8_f1_drop"] is None else f"{f['int8_f1_drop']:+.4f}", f"{f['train_seconds']:.0f}"]
                    for f in result["folds"]])
    sweep = t["devices_with_false_incident_at"]
    recall = {th: [f["recall_at"][th] for f in result["folds"] if f["recall_at"][th] is not None] for th in sweep}
    at = _table(["fused threshold", "devices with a false incident", "fold recall on malicious test flows (min)"],
                [[th, str(n), f"{min(recall[th]):.4f}" if recall[th] else "-"] for th, n in sweep.items()])
    notes = [
        f"- Protocol: {result['protocol']}.",
        f"- Incident rule: {result['incident_rule']}",
        "- flagged = the device's flows at or above the fold bundle's threshold; max score over the device's flows; "
        "per day = false incidents / capture days (IoT Sentinel setup captures last seconds to minutes, so their "
        "per-day rate is large and noisy).",
        "- Fused / XGBoost F1 are each fold's own temporal test set (the data it trained on), not the held-out devices; "
        "the recall at fixed thresholds is the float fused model's on those malicious test flows.",
    ]
    return [("Result", summary), ("Per device (never trained on)", devices), ("Folds", folds),
            ("At fixed thresholds (instead of each fold's own)", at), ("Notes", notes)]


def write_reports(run: Path, result: Mapping[str, Any]) -> None:
    """``report.md`` and a self-contained ``report.html`` of a leave-device-out run."""
    import html

    from edgebot.train.report import _md_to_html

    title = f"edgebot training report: {result['split']}"
    sections = report_lines(result)
    md = [f"# {title}", ""]
    for name, lines in sections:
        md += [f"## {name}", "", *lines, ""]
    (run / "report.md").write_text("\n".join(md), encoding="utf-8")
    style = ("body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "th{background:#f0f0f0}")
    body = [f"<h1>{html.escape(title)}</h1>"]
    for name, lines in sections:
        body += [f"<h2>{html.escape(name)}</h2>", _md_to_html(lines)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    (run / "report.html").write_text(page, encoding="utf-8")


def format_leave_device_out(result: Mapping[str, Any], run_dir: Optional[PathLike] = None) -> str:
    """The one-screen summary ``edgebot train --split leave-device-out`` prints."""
    t = result["totals"]
    lines = [f"leave-device-out, {result['k']} folds, {t['devices']} devices never trained on "
             f"({result['configuration']} configuration, seed {result['seed']})",
             f"devices with a false incident: {t['devices_with_false_incident']} of {t['devices']} ({_verdict(t)})"]
    for name in t["devices_with_false_incident_list"]:
        d = result["devices"][name]
        lines.append(f"  {name:<34} {d['false_incidents']} incident(s), max score {_score(d['max_score'])}, "
                     f"{d['device_flagged_flows']} of {d['device_flows']} flows flagged")
    lines.append(f"false incidents: {t['false_incidents']} in {t['capture_hours']:.1f} h on the devices, "
                 f"{t['other_host_incidents']} on other hosts; captures with any incident: "
                 f"{t['captures_with_any_incident']}")
    for f in result["folds"]:
        lines.append(f"  fold {f['fold']}: {len(f['devices'])} devices held out, threshold {f['threshold']:.4g}, "
                     f"fused F1 {f['fused_f1']:.4f} (XGBoost {f['xgboost_f1']:.4f}) on its temporal test set")
    if run_dir is not None:
        lines.append(f"run dir: {run_dir} (leave_device_out.json, report.html, folds/)")
    return "\n".join(lines)
