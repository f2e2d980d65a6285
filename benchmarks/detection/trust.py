"""Issue 11 in the detection study: leave-device-out, false incidents with and without site learning, detection delay.

Everything here replays flows through the gateway's own path and rule: the int8 bundle
(featurize, bundle scaler, per-host windows in start-time order, ``Bundle.score``), then
:class:`edgebot.judge.FlowJudge` (allow rules, site profile, evidence rule) in end-time order with
:func:`edgebot.judge.replay_records`, compared with the labels by
:func:`edgebot.judge.incident_outcomes` (through :func:`edgebot.evaluate.capture_incidents`, the
function ``edgebot eval --learn`` uses). Site learning is the agent's default
(:class:`edgebot.site.SiteSettings`: the first 6 h of each capture, 1 h for a device first seen later).

Three experiments, each a key of ``results.json``:

* ``leave_device_out`` - :func:`edgebot.train.leave_device_out.leave_device_out` on the default
  training set (IoT-23 + the 44 benign devices), K folds by physical device: per device, false
  incidents when it was never trained on, without and with learning;
* ``site_learning`` - false incidents per benign device per day on the long benign captures
  (Stratosphere 008/010/011, CTU-SME-11), without learning and with it (split into during / after
  the learning period);
* ``delays`` - every infected host of the bundled captures: incident or not, detection delay
  (first malicious flow's end to the incident's opening) and the rule that fired, without learning
  and with learning switched on from the capture's first flow (the 34-1 pcap metered by the
  project's own meter, its flows labeled from the 34-1 Zeek log).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

log = logging.getLogger("edgebot.detection")

#: Long benign captures of the site-learning table: display name -> (path under data/, registered device or None).
LONG_BENIGN: dict[str, tuple[str, Optional[str]]] = {
    "Strato 008": ("stratosphere/008-zeek-mixed.conn.log.labeled.xz", None),
    "Strato 010": ("stratosphere/010-zeek-mixed.conn.log.labeled.xz", None),
    "Strato 011": ("stratosphere/011-zeek-mixed.conn.log.labeled.xz", None),
    "CTU-SME-11": ("benign_devices/ctu_sme_11/ctu-sme-11_2023-02-20.conn.log.labeled.xz", "ctu-sme-11/192.168.1.109"),
}
#: Infected captures of the delay table: display name -> path under data/ (a pcap is metered and labeled).
INFECTED: dict[str, str] = {
    "Mirai 34-1 (log)": "iot23/CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz",
    "Mirai 34-1 (pcap)": "pcap:mirai_34_1",
    "Mirai 44-1": "iot23/CTU-IoT-Malware-Capture-44-1conn.log.labeled.csv.xz",
    "Hakai 8-1": "iot23/CTU-IoT-Malware-Capture-8-1conn.log.labeled.csv.xz",
    "RemcosRAT (slips-test18)": "stratosphere/slips-test18-ctu-sme-11-win.conn.log.labeled.xz",
}
#: The Zeek log that labels the 34-1 pcap's flows.
PCAP_LABELS = {"mirai_34_1": "iot23/CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz"}
#: A metered flow takes the label of the log's flow with the same 5-tuple starting within this many seconds.
LABEL_TOLERANCE_S = 1.0


def learn_settings() -> Any:
    """The agent's default site settings (what ``edgebot run`` learns with)."""
    from edgebot.site import SiteSettings

    return SiteSettings()


# --------------------------------------------------------------------------------------------
# flows
def load_records(spec: str) -> tuple[list, dict]:
    """Flow records of a capture in start-time order (``pcap:<name>``: metered and labeled); and notes."""
    from edgebot import datasets
    from edgebot.readers import read_flows

    root = datasets.data_root()
    if spec.startswith("pcap:"):
        name = spec.split(":", 1)[1]
        from edgebot.edge.sources.pcap import PcapSource

        records = sorted(PcapSource(root / datasets.PCAPS[name]), key=lambda r: r.ts)
        log_records, _ = read_flows([root / PCAP_LABELS[name]])
        matched = label_from_log(records, log_records)
        return records, {"file": f"data/{datasets.PCAPS[name]}", "labels_from": f"data/{PCAP_LABELS[name]}",
                         "flows": len(records), "labeled_by_match": matched}
    records, _ = read_flows([root / spec])
    records.sort(key=lambda r: r.ts)
    return records, {"file": f"data/{spec}", "flows": len(records)}


def label_from_log(records: list, log_records: Sequence[Any]) -> int:
    """Give metered flows the label of the Zeek log's flow with the same 5-tuple and a start within
    :data:`LABEL_TOLERANCE_S` (nearest start); returns how many matched. Unmatched flows stay unlabeled."""
    from bisect import bisect_left

    index: dict[tuple, list] = {}
    for r in log_records:
        index.setdefault((r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto), []).append(r)
    for rows in index.values():
        rows.sort(key=lambda r: r.ts)
    matched = 0
    for i, rec in enumerate(records):
        rows = index.get((rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p, rec.proto))
        if not rows:
            continue
        starts = [r.ts for r in rows]
        j = bisect_left(starts, rec.ts)
        best = min((k for k in (j - 1, j) if 0 <= k < len(rows)), key=lambda k: abs(starts[k] - rec.ts))
        if abs(starts[best] - rec.ts) <= LABEL_TOLERANCE_S:
            src = rows[best]
            records[i] = replace(rec, label=src.label, detailed_label=src.detailed_label, family=src.family)
            matched += 1
    return matched


def score_records(bundle: Any, records: Sequence[Any]) -> np.ndarray:
    """Fused int8 scores of one capture's flows on the gateway's path (as ``edgebot eval`` scores them)."""
    if not records:
        return np.zeros(0, dtype=np.float64)
    X = bundle.scale(bundle.featurize(records))
    hosts = [r.orig_h for r in records]
    ts = np.array([r.ts for r in records], dtype=np.float64)
    return np.asarray(bundle.score(bundle.sequences(X, hosts, ts)), dtype=np.float64)


def incidents(bundle: Any, records: Sequence[Any], scores: np.ndarray, learn: bool) -> dict:
    """What the gateway raises on one capture, without learning or with the agent's default learning.

    The same calls as :func:`edgebot.evaluate.capture_incidents` (``edgebot eval --learn``):
    a fresh :class:`edgebot.site.SiteProfile`, :class:`edgebot.judge.FlowJudge`,
    :func:`edgebot.judge.replay_records`, :func:`edgebot.judge.incident_outcomes`; plus ``openings``
    (``{host: [opening times of its incidents]}``) to split false incidents at the end of learning.
    """
    from edgebot.flow import MALICIOUS
    from edgebot.judge import FlowJudge, incident_outcomes, replay_records
    from edgebot.site import SiteProfile

    settings = learn_settings()
    site = SiteProfile(bundle.bundle_id, bundle.threshold, settings) if learn else None
    judge = FlowJudge.build("detection-study", {"id": bundle.bundle_id, "version": bundle.version}, bundle.threshold,
                            site=site)
    hosts = [r.orig_h for r in records]
    ends = [r.ts + (r.duration or 0.0) for r in records]
    messages = replay_records(judge, records, np.asarray(scores, dtype=np.float64).tolist())
    out = incident_outcomes(messages, hosts, ends, [r.label == MALICIOUS for r in records],
                            [r.is_labeled for r in records])
    openings: dict[str, list[float]] = {}
    for m in messages:
        if m["type"] == "new":
            openings.setdefault(m["host"], []).append(float(m["opened"]))
    out["openings"] = openings
    out["suppressed_while_learning"] = int(judge.tracker.events.get("suppressed_while_learning", 0))
    return out


# --------------------------------------------------------------------------------------------
# detection delay
def delay_table(bundle: Any, captures: Optional[dict[str, str]] = None) -> dict:
    """Per infected capture and host: detected, delay and rules, without learning and learning from the first flow."""
    out: dict[str, dict] = {}
    for name, spec in (captures or INFECTED).items():
        t = time.perf_counter()
        records, notes = load_records(spec)
        scores = score_records(bundle, records)
        entry: dict[str, Any] = {**notes, "threshold": float(bundle.threshold), "hosts": {}}
        span = (max(r.ts + (r.duration or 0.0) for r in records) - min(r.ts for r in records)) if records else 0.0
        entry["hours"] = span / 3600.0
        for mode, learn in (("no_learning", False), ("learning", True)):
            inc = incidents(bundle, records, scores, learn)
            for host in inc["infected_hosts"]:
                h = inc["hosts"][host]
                row = entry["hosts"].setdefault(host, {"malicious_flows": 0, "first_malicious": h["first_malicious"]})
                row[mode] = {"detected": h["incidents"] > 0 and h["delay_s"] is not None, "delay_s": h["delay_s"],
                             "incidents": h["incidents"], "rules": h["rules"]}
            entry[f"false_incidents_{mode}"] = inc["false_incidents"]
        mal = [r.orig_h for r in records if r.label == "malicious"]
        for host in entry["hosts"]:
            entry["hosts"][host]["malicious_flows"] = mal.count(host)
            entry["hosts"][host]["flagged_malicious"] = int(sum(
                1 for r, s in zip(records, scores) if r.orig_h == host and r.label == "malicious"
                and s >= bundle.threshold))
        entry["seconds"] = round(time.perf_counter() - t, 1)
        log.info("delays %s: %d infected hosts, %s", name, len(entry["hosts"]),
                 {h: v["no_learning"]["delay_s"] for h, v in list(entry["hosts"].items())[:3]})
        out[name] = entry
    return out


def delay_summary(delays: dict) -> dict:
    """Infected hosts, how many raised an incident (without / with learning), the longest delay."""
    rows = [(cap, h, v) for cap, e in delays.items() for h, v in e["hosts"].items()]
    out: dict[str, Any] = {"infected_hosts": len(rows)}
    for mode in ("no_learning", "learning"):
        found = [v[mode]["delay_s"] for _, _, v in rows if v[mode]["detected"]]
        out[mode] = {"detected": len(found), "missed": [f"{c}|{h}" for c, h, v in rows if not v[mode]["detected"]],
                     "max_delay_s": max(found) if found else None}
    return out


# --------------------------------------------------------------------------------------------
# false incidents on long benign captures
def site_learning_table(bundles: dict[str, Any], captures: Optional[dict[str, tuple[str, Optional[str]]]] = None) -> dict:
    """False incidents per benign device per day on each long benign capture, per model, without and with learning.

    ``bundles`` maps a model label to ``(bundle, {capture: in_training})``; a capture of a registered
    device also gets the row of the leave-device-out fold that never trained on it (given as
    ``"leave-device-out fold"`` with ``{capture: False}``).
    """
    settings = learn_settings()
    out: dict[str, dict] = {}
    for name, (spec, device) in (captures or LONG_BENIGN).items():
        records, notes = load_records(spec)
        ends = np.array([r.ts + (r.duration or 0.0) for r in records], dtype=np.float64)
        start = float(min(r.ts for r in records))
        days = float((ends.max() - ends.min()) / 86400.0)
        learn_end = start + settings.learn_s
        cap: dict[str, Any] = {**notes, "days": days, "learn_h": settings.learn_s / 3600.0,
                               "days_after_learning": max(0.0, float(ends.max() - learn_end) / 86400.0), "models": {}}
        for label, (bundle, seen) in bundles.items():
            if name not in seen:
                continue
            scores = score_records(bundle, records)
            plain = incidents(bundle, records, scores, learn=False)
            learned = incidents(bundle, records, scores, learn=True)
            devs = [h for h, v in plain["hosts"].items() if v["truth"] == "benign"]
            if device is not None:  # a registered device: its own addresses only (other hosts are companions)
                own = set(_registered_addresses(device))
                devs = [h for h in devs if h in own]
            devset = set(devs)
            n = max(1, len(devs))
            after = sum(1 for h in devs for o in learned["openings"].get(h, []) if o >= learn_end)
            total_learned = sum(learned["hosts"][h]["incidents"] for h in devs if h in learned["hosts"])
            during = total_learned - after
            d_after = cap["days_after_learning"]
            cap["models"][label] = {
                "in_training": bool(seen[name]), "threshold": float(bundle.threshold), "benign_devices": len(devs),
                "flagged_flows": int(sum(1 for r, s in zip(records, scores)
                                         if r.orig_h in devset and s >= bundle.threshold)),
                "no_learning": {"false_incidents": sum(plain["hosts"][h]["incidents"] for h in devs),
                                "per_device_per_day": sum(plain["hosts"][h]["incidents"] for h in devs) / n / days
                                if days > 0 else 0.0,
                                "devices": [h for h in devs if plain["hosts"][h]["incidents"]],
                                "rules": sorted({r for h in devs for r in plain["hosts"][h]["rules"]})},
                "learning": {"false_incidents": total_learned, "during_learning": during,
                             "after_learning": after,
                             "per_device_per_day_after": after / n / d_after if d_after > 0 else None,
                             "per_device_per_day": total_learned / n / days if days > 0 else 0.0,
                             "devices": [h for h in devs if learned["hosts"].get(h, {}).get("incidents")],
                             "rules": sorted({r for h in devs for r in learned["hosts"].get(h, {}).get("rules", [])}),
                             "suppressed_while_learning": learned.get("suppressed_while_learning", 0)},
            }
        out[name] = cap
        log.info("site learning %s: %s", name, {m: (v["no_learning"]["false_incidents"],
                                                    v["learning"]["false_incidents"])
                                                for m, v in cap["models"].items()})
    return out


def _registered_addresses(device: str) -> tuple[str, ...]:
    from edgebot import datasets

    return datasets.benign_devices()[device].addresses


# --------------------------------------------------------------------------------------------
# leave-device-out
def leave_device_out_table(quick: bool, seed: int, k: int, work: Path, devices: Optional[int] = None) -> dict:
    """Run leave-device-out on the default training set; per device the false incidents without / with learning.

    ``devices`` keeps only the first N registered devices (a smaller, faster run for tests; the
    target is then not judged).
    """
    from edgebot import datasets
    from edgebot.train.leave_device_out import leave_device_out

    paths = list(datasets.iot23_training())
    registry = list(datasets.benign_devices().values())
    chosen = registry if devices is None else registry[:devices]
    paths += [f for dev in chosen for f in dev.files]
    t = time.perf_counter()
    res = leave_device_out(paths, work / "leave-device-out", k=k, quick=quick, seed=seed, progress=False, force=True)
    res.pop("summary", None)
    table = {name: {"dataset": d["dataset"], "fold": d["fold"], "flows": d["flows"], "device_flows": d["device_flows"],
                    "device_flagged_flows": d["device_flagged_flows"], "max_score": d["max_score"],
                    "capture_hours": d["capture_hours"], "false_incidents": d["false_incidents"],
                    "false_incidents_with_learning": d["false_incidents_with_learning"],
                    "other_host_incidents": d["other_host_incidents"]}
             for name, d in res["devices"].items()}
    folds = [{k2: f[k2] for k2 in ("fold", "devices", "threshold", "bundle_id", "fused_f1", "xgboost_f1",
                                   "int8_f1_drop", "train_seconds")} for f in res["folds"]]
    totals = res["totals"]
    return {"k": k, "configuration": res["configuration"], "seed": seed, "protocol": res["protocol"],
            "incident_rule": res["incident_rule"], "devices": table, "folds": folds,
            "totals": {**{k2: totals[k2] for k2 in (
                "devices", "registered_devices", "devices_with_false_incident", "devices_with_false_incident_list",
                "devices_with_false_incident_with_learning", "false_incidents", "other_host_incidents",
                "capture_hours", "target_max_devices", "target_met")},
                "devices_with_false_incident_with_learning_list": [
                    n for n, d in table.items() if d["false_incidents_with_learning"] > 0]},
            "fold_bundles": {name: str(work / "leave-device-out" / "folds" / f"fold-{d['fold']}" / "bundle")
                             for name, d in res["devices"].items()},
            "seconds": round(time.perf_counter() - t, 1)}


# --------------------------------------------------------------------------------------------
# per-family recall and FPR
#: Captures that hold each family (the FPR of a family is over these captures' benign flows).
FAMILY_CAPTURES = {"Mirai": ["Mirai 34-1", "Mirai 44-1"], "Hakai": ["Hakai 8-1"],
                   "External-Attack-to-Device": ["Strato 008", "Strato 010", "Strato 011"],
                   "RemcosRAT": ["Remcos 18"]}


def family_rates(cells: dict) -> dict:
    """Per family of one matrix row: recall of its malicious flows and the FPR over the benign flows of the
    captures that hold it (int8 and float; in-training captures on their last 20% only, as in the matrix)."""
    out = {}
    for fam, caps in FAMILY_CAPTURES.items():
        c = cells.get(f"family: {fam}")
        if c is None:
            continue
        row: dict[str, Any] = {"in_training": c["in_training"], "malicious_flows": c["flows"],
                               "recall": c["int8"], "recall_float": c["float"]}
        for which, key in (("int8_rates", "fpr"), ("float_rates", "fpr_float")):
            fp = sum(cells[k][which]["confusion"][0][1] for k in caps if k in cells)
            tn = sum(cells[k][which]["confusion"][0][0] for k in caps if k in cells)
            row[key] = fp / (fp + tn) if fp + tn else 0.0
            row["benign_flows"] = fp + tn
        out[fam] = row
    return out
