"""``edgebot eval``: score labeled flow files with a bundle (the deployed int8 path) and report metrics.

The path is the gateway's: read flows -> featurize -> scale with the bundle's scaler -> per-host
windows -> int8 hybrid and autoencoder -> fuser -> threshold. Windows are built from every flow
of a capture, labeled or not (the gateway sees background traffic too); metrics count the flows
labeled benign or malicious. Hosts are keyed ``"<capture>|<orig_h>"`` like the trainer's, so
the same address in two captures stays two hosts.

A ``cicflowmeter`` bundle scores CICFlowMeter CSV rows with that profile's featurizer, each row
alone along the feature axis (the rows have no host or time columns; the host key is
``"<file>|-"``). A file of the other profile is refused with a one-line error naming both.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from edgebot.errors import DataError
from edgebot.features import ZEEK_PROFILE, profile_for_format
from edgebot.flow import MALICIOUS, FlowRecord

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Keys of the dict :func:`evaluate_bundle` returns (``edgebot eval --json``), pinned by a test.
RESULT_KEYS: tuple[str, ...] = (
    "accuracy", "precision", "recall", "f1", "fpr", "confusion", "threshold", "flows", "families",
    "hosts", "incidents", "bundle", "files",
)


def binary_rates(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 and false-positive rate of 0/1 predictions.

    Parameters
    ----------
    y_true, y_pred
        ``(n,)`` 0/1 or bool; 1 = malicious.

    Returns
    -------
    dict
        ``accuracy, precision, recall, f1, fpr`` (floats; 0.0 where the denominator is 0) and
        ``confusion`` ``[[tn, fp], [fn, tp]]``.
    """
    t = np.asarray(y_true).reshape(-1).astype(bool)
    p = np.asarray(y_pred).reshape(-1).astype(bool)
    if t.shape != p.shape:
        raise DataError(f"y_true has {t.size} rows but y_pred has {p.size}")
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))
    cm = [[tn, fp], [fn, tp]]
    return {**rates_from_confusion(cm), "confusion": cm}


def rates_from_confusion(cm: list[list[int]]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and FPR of a confusion matrix ``[[tn, fp], [fn, tp]]``.

    Undefined ratios (a zero denominator) are 0.0.
    """
    (tn, fp), (fn, tp) = cm

    def ratio(num: float, den: float) -> float:
        return float(num / den) if den > 0 else 0.0

    return {
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "fpr": ratio(fp, fp + tn),
    }


def family_recall(y_true: np.ndarray, y_pred: np.ndarray, families: Sequence[str]) -> dict[str, dict]:
    """Recall of the malicious flows of each family.

    Returns
    -------
    dict
        ``{family: {"flows": n, "detected": k, "recall": k / n}}``; malicious rows without a
        family are grouped as ``"unknown"``.
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    fam = np.asarray([f or "unknown" for f in families], dtype=object)
    out: dict[str, dict] = {}
    for name in sorted(set(fam[t].tolist())):
        mask = t & (fam == name)
        n, k = int(mask.sum()), int(np.sum(p & mask))
        out[name] = {"flows": n, "detected": k, "recall": k / n}
    return out


def host_verdicts(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, hosts: Sequence[str]) -> dict[str, dict]:
    """Per-host truth and verdict over labeled flows.

    A host is ``malicious`` when any of its flows is labeled malicious, and ``flagged`` when
    any of its flows reaches the threshold; ``outcome`` is ``TP``, ``FP``, ``FN`` or ``TN``.

    Returns
    -------
    dict
        ``{host: {"flows", "malicious_flows", "alerts", "max_score", "truth", "verdict", "outcome"}}``.
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    h = np.asarray(hosts, dtype=object)
    out: dict[str, dict] = {}
    for host in sorted(set(h.tolist())):
        mask = h == host
        truth = bool(t[mask].any())
        flagged = bool(p[mask].any())
        out[host] = {
            "flows": int(mask.sum()),
            "malicious_flows": int(t[mask].sum()),
            "alerts": int(p[mask].sum()),
            "max_score": float(s[mask].max()),
            "truth": "malicious" if truth else "benign",
            "verdict": "malicious" if flagged else "benign",
            "outcome": ("TP" if flagged else "FN") if truth else ("FP" if flagged else "TN"),
        }
    return out


def evaluate_scores(y_true: np.ndarray, scores: np.ndarray, threshold: float, families: Sequence[str],
                    hosts: Sequence[str]) -> dict[str, Any]:
    """Metrics, per-family recall and per-host verdicts of fused scores at a threshold.

    Parameters
    ----------
    y_true
        ``(n,)`` 0/1 labels of the labeled flows.
    scores
        ``(n,)`` fused scores (higher = more malicious).
    threshold
        Flag when ``score >= threshold``.
    families, hosts
        ``(n,)`` family of each flow (``""`` for benign) and host key.
    """
    pred = np.asarray(scores, dtype=np.float64) >= threshold  # float64: see Bundle.decide
    out: dict[str, Any] = binary_rates(y_true, pred)
    out["threshold"] = float(threshold)
    out["flows"] = {"labeled": int(len(pred)), "benign": int(np.sum(np.asarray(y_true) == 0)),
                    "malicious": int(np.sum(np.asarray(y_true) == 1)), "flagged": int(pred.sum())}
    out["families"] = family_recall(y_true, pred, families)
    out["hosts"] = host_verdicts(y_true, pred, scores, hosts)
    return out


def capture_incidents(bundle: Any, records: Sequence[Any], scores: np.ndarray, *, learn_s: float = 0.0,
                      rule: Any = None, site_settings: Any = None) -> dict[str, Any]:
    """What the gateway would do with one capture: its incidents through the agent's own rule.

    The capture's flows (labeled or not, as the gateway sees them) go through
    :class:`edgebot.judge.FlowJudge` in end-time order with a fresh site profile that learns for
    the first ``learn_s`` seconds of the capture (0: no learning), then are compared with the labels.

    Parameters
    ----------
    bundle
        The loaded bundle (its id and threshold).
    records
        ``(n,)`` flow records of one capture.
    scores
        ``(n,)`` fused scores of those records.
    learn_s
        Learning period at the start of the capture (``edgebot eval --learn``).
    rule, site_settings
        :class:`edgebot.incidents.EvidenceRule` and :class:`edgebot.site.SiteSettings` (defaults when None).

    Returns
    -------
    dict
        :func:`edgebot.judge.incident_outcomes` plus ``messages`` (counts by type) and ``learn_s``.
    """
    from dataclasses import replace

    from edgebot.judge import FlowJudge, incident_outcomes, replay_records
    from edgebot.site import SiteProfile, SiteSettings

    site = None
    if learn_s > 0:
        settings = replace(site_settings or SiteSettings(), learn_s=float(learn_s))
        site = SiteProfile(bundle.bundle_id, bundle.threshold, settings)
    judge = FlowJudge.build("eval", {"id": bundle.bundle_id, "version": bundle.version}, bundle.threshold, rule,
                            site=site)
    hosts = [r.orig_h for r in records]
    ends = [r.ts + (r.duration or 0.0) for r in records]
    messages = replay_records(judge, records, np.asarray(scores, dtype=np.float64).tolist())
    out = incident_outcomes(messages, hosts, ends, [r.label == MALICIOUS for r in records],
                            [r.is_labeled for r in records])
    kinds: dict[str, int] = defaultdict(int)
    for m in messages:
        kinds[m["type"]] += 1
    out["messages"] = dict(kinds)
    out["learn_s"] = float(learn_s)
    out["suppressed_while_learning"] = int(judge.tracker.events.get("suppressed_while_learning", 0))
    return out


def evaluate_bundle(bundle_dir: PathLike, paths: Sequence[PathLike], *, strict: bool = False,
                    bundle: Any = None, learn_s: float = 0.0) -> dict[str, Any]:
    """Score labeled flow files with a bundle, exactly as the gateway would, and measure it.

    Parameters
    ----------
    bundle_dir
        A bundle written by ``edgebot convert``.
    paths
        Labeled flow files of the bundle's profile: Zeek-style flow logs (IoT-23, Stratosphere)
        for a zeek bundle, CICFlowMeter CSVs for a cicflowmeter bundle; compressed is fine.
    strict
        Raise on the first malformed row instead of skipping it.
    bundle
        An already loaded :class:`edgebot.bundle.Bundle` (skips loading ``bundle_dir``).
    learn_s
        Replay the first ``learn_s`` seconds of each capture as the site's learning period when
        counting incidents (``--learn``); 0 counts them without learning.

    Returns
    -------
    dict
        Keys :data:`RESULT_KEYS`: ``accuracy, precision, recall, f1, fpr`` (floats), ``confusion``
        ``[[tn, fp], [fn, tp]]``, ``threshold``, ``flows`` (counts), ``families``
        (``{family: {flows, detected, recall}}``), ``hosts`` (``{"capture|ip": {flows,
        malicious_flows, alerts, max_score, truth, verdict, outcome}}``), ``bundle`` (id, path,
        runtime), ``files`` (per-file rows, labeled rows, skipped rows) and ``incidents`` (what the
        gateway would raise, per capture, with its own rule: :func:`capture_incidents`; ``totals``
        over captures: false incidents per benign device per day, infected hosts detected, delays).

    Raises
    ------
    BundleError, RuntimeMissingError
        From :func:`edgebot.bundle.load_bundle`.
    DataError
        No labeled benign or malicious flow, or a file of another feature profile than the bundle's.
    DataFormatError, SourceError
        From the readers.
    """
    from edgebot.bundle import load_bundle
    from edgebot.readers import read_flows

    if bundle is None:
        bundle = load_bundle(bundle_dir)
    flow_paths = [Path(p) for p in paths]
    if not flow_paths:
        raise DataError("no data files given; pass one or more labeled flow logs")
    ys: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    families: list[str] = []
    hosts: list[str] = []
    files: list[dict] = []
    incidents: dict[str, dict] = {}
    for path in flow_paths:
        records, readers = read_flows([path], strict=strict)
        reader = readers[0]
        profile = getattr(bundle, "profile", ZEEK_PROFILE)
        file_profile = profile_for_format(reader.format)
        if file_profile is not profile:
            raise DataError(
                f"{path} is a {reader.format} file ({file_profile.name} profile) but the bundle was trained on the "
                f"{profile.name} profile: evaluate it with {profile.name} flows or a {file_profile.name} bundle"
            )
        labeled = np.array([r.is_labeled for r in records], dtype=bool)
        files.append({"path": str(path), "rows": int(reader.rows_read), "labeled": int(labeled.sum()),
                      "skipped": int(reader.rows_skipped)})
        if not labeled.any():
            log.warning("%s: no row labeled benign or malicious; it only feeds the windows", path)
            continue
        capture = reader.scenario or path.name
        X = bundle.scale(bundle.featurize(records))
        if profile.sequence == "feature-axis":  # rows without host or time: each is scored alone
            keys = [f"{r.scenario or capture}|-" for r in records]
            W = bundle.sequences(X[labeled])
        else:
            flows = [r for r in records if isinstance(r, FlowRecord)]
            assert len(flows) == len(records)  # only the feature-axis profile reads CicFlowRecords
            keys = [f"{r.scenario or capture}|{r.orig_h}" for r in flows]
            W = None
        if profile.sequence == "feature-axis":
            s = bundle.score(W)
        else:
            s_all = bundle.score(bundle.sequences(X, keys, np.array([r.ts for r in flows], dtype=np.float64)))
            s = s_all[labeled]
            incidents[capture] = capture_incidents(bundle, records, s_all, learn_s=learn_s)
        kept = [r for r, keep in zip(records, labeled) if keep]
        ys.append(np.array([r.label == MALICIOUS for r in kept], dtype=np.int8))
        scores.append(s)
        families.extend((r.family or "") if r.label == MALICIOUS else "" for r in kept)
        hosts.extend(k for k, keep in zip(keys, labeled) if keep)
        log.info("%s: %d flows, %d labeled, scored", path, len(records), int(labeled.sum()))
    if not ys:
        raise DataError("no flow is labeled benign or malicious: eval needs labeled data "
                        "(e.g. an IoT-23 conn.log.labeled); use `edgebot run` for unlabeled traffic")
    y = np.concatenate(ys)
    s = np.concatenate(scores)
    result = evaluate_scores(y, s, bundle.threshold, families, hosts)
    result["bundle"] = {"path": str(bundle.path), "id": bundle.bundle_id, "version": bundle.version,
                        "runtime": f"{bundle.runtime} {bundle.runtime_version}", "window": bundle.window}
    result["files"] = files
    result["incidents"] = {"learn_s": float(learn_s), "captures": incidents, "totals": _incident_totals(incidents)}
    return {k: result[k] for k in RESULT_KEYS}


def _incident_totals(captures: dict[str, dict]) -> dict[str, Any]:
    """False incidents and detection over every capture's incidents."""
    devices = sum(c["benign_devices"] for c in captures.values())
    device_days = sum(c["benign_devices"] * c["days"] for c in captures.values())
    false = sum(c["false_incidents"] for c in captures.values())
    infected = [f"{name}|{h}" for name, c in captures.items() for h in c["infected_hosts"]]
    detected = [f"{name}|{h}" for name, c in captures.items() for h in c["infected_detected"]]
    delays = [d for c in captures.values() for d in c["delays_s"].values() if d is not None]
    return {
        "benign_devices": devices,
        "false_incidents": false,
        "devices_with_false_incidents": sum(len(c["devices_with_false_incidents"]) for c in captures.values()),
        "false_incidents_per_device_per_day": false / device_days if device_days > 0 else 0.0,
        "infected_hosts": len(infected),
        "infected_detected": len(detected),
        "missed": sorted(set(infected) - set(detected)),
        "max_delay_s": max(delays) if delays else None,
    }


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:6.2f}"


def format_evaluation(result: dict[str, Any], max_hosts: int = 20) -> str:
    """The human-readable report of :func:`evaluate_bundle` (``edgebot eval`` without ``--json``)."""
    b = result["bundle"]
    fl = result["flows"]
    (tn, fp), (fn, tp) = result["confusion"]
    lines = [
        f"bundle {b['id']} ({b['path']}, edgebot {b['version']}, {b['runtime']}), threshold {result['threshold']:.4g}",
        f"flows: {fl['labeled']} labeled ({fl['benign']} benign, {fl['malicious']} malicious), {fl['flagged']} flagged",
        "",
        f"  accuracy  {_pct(result['accuracy'])} %",
        f"  precision {_pct(result['precision'])} %",
        f"  recall    {_pct(result['recall'])} %",
        f"  F1        {_pct(result['f1'])} %",
        f"  FPR       {_pct(result['fpr'])} %   ({fp} of {fp + tn} benign flows flagged)",
        f"  confusion tn={tn} fp={fp} fn={fn} tp={tp}",
    ]
    if result["families"]:
        lines += ["", "per-family recall:"]
        width = max(len(f) for f in result["families"])
        for name, f in result["families"].items():
            lines.append(f"  {name:<{width}}  {_pct(f['recall'])} %  ({f['detected']} of {f['flows']})")
    hosts = result["hosts"]
    if hosts:
        counts: defaultdict[str, int] = defaultdict(int)
        for h in hosts.values():
            counts[h["outcome"]] += 1
        summary = ", ".join(f"{k} {counts[k]}" for k in ("TP", "FP", "FN", "TN"))
        lines += ["", f"hosts: {len(hosts)} ({summary}; a host is flagged when any of its flows is)"]
        order = sorted(hosts.items(), key=lambda kv: (kv[1]["outcome"] in ("TN",), -kv[1]["alerts"], kv[0]))
        width = min(max(len(k) for k in hosts), 48)
        lines.append(f"  {'host':<{width}}  {'truth':<9}  {'verdict':<9}  {'outcome':<7}  {'flows':>7}  {'alerts':>7}  max score")
        for key, h in order[:max_hosts]:
            lines.append(f"  {key:<{width}}  {h['truth']:<9}  {h['verdict']:<9}  {h['outcome']:<7}  "
                         f"{h['flows']:>7}  {h['alerts']:>7}  {h['max_score']:.3f}")
        if len(hosts) > max_hosts:
            lines.append(f"  ... {len(hosts) - max_hosts} more hosts (all of them with --json)")
    inc = result.get("incidents") or {}
    if inc.get("captures"):
        learn = inc["learn_s"]
        tot = inc["totals"]
        lines += ["", "what the gateway would raise (its incident rule" +
                  (f", learning the first {learn / 3600:g} h of each capture):" if learn else ", no learning period):")]
        for name, c in inc["captures"].items():
            fi = ", ".join(c["devices_with_false_incidents"][:5]) or "none"
            lines.append(f"  {name}: {c['false_incidents']} false incident(s) on {c['benign_devices']} benign "
                         f"device(s) over {c['days']:.2f} days ({fi})")
            shown = c["infected_hosts"][:max_hosts]
            for h in shown:
                d = c["delays_s"][h]
                lines.append(f"    infected {h}: " + (f"incident after {d:.0f} s" if d is not None else "NO incident"))
            if len(c["infected_hosts"]) > len(shown):
                rest = c["infected_hosts"][len(shown):]
                found = sum(1 for h in rest if c["delays_s"][h] is not None)
                lines.append(f"    ... {len(rest)} more infected hosts ({found} with an incident; all with --json)")
        lines.append(f"  total: {tot['false_incidents']} false incident(s), "
                     f"{tot['false_incidents_per_device_per_day']:.2f} per benign device per day; infected hosts "
                     f"detected {tot['infected_detected']} of {tot['infected_hosts']}")
    skipped = sum(f["skipped"] for f in result["files"])
    if skipped:
        lines += ["", f"{skipped} malformed rows skipped (see `edgebot data summary`)"]
    return "\n".join(lines)
