"""Training data: labeled flows to a feature table, the three splits, and per-part windows.

Only rows labeled benign or malicious are used; background / unknown / unlabeled rows are
dropped and counted. A *capture* is one scenario (IoT-23 id such as ``"34-1"``, else the
file stem). Hosts are keyed by capture, so the same private address in two captures never
shares a window.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from edgebot.bundle import sha256_file
from edgebot.errors import DataError
from edgebot.features import MinMaxScaler, get_profile, profile_for_format
from edgebot.flow import BENIGN, MALICIOUS, CicFlowRecord, FlowRecord
from edgebot.windows import model_sequences

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Share of each capture (latest flows) held out as the test set by the temporal split, and of
#: all rows by the stratified split.
TEST_FRACTION = 0.2
#: Share of the training part (its latest flows, per capture) carved out as validation data:
#: early stopping, every threshold, and the fuser's training rows.
VAL_FRACTION = 0.25
#: Split names accepted by :func:`parse_split` (plus ``leave-out:NAME``); ``leave-device-out[:K]`` is an
#: evaluation of K trainings (:mod:`edgebot.train.leave_device_out`), not a split of one table.
SPLITS = ("temporal", "stratified", "leave-out:NAME")
#: Folds of leave-device-out when ``leave-device-out`` names no K.
DEVICE_FOLDS = 5


@dataclass
class FlowTable:
    """Labeled flows as arrays, one row per flow, in file order.

    Attributes
    ----------
    X : ``(n, F) float32`` unscaled features (the profile's featurizer).
    y : ``(n,) int8``, 1 = malicious.
    ts : ``(n,) float64`` flow start times (CICFlowMeter rows: the line number, file order as time).
    hosts : ``(n,)`` str, ``"<capture>|<orig_h>"`` (window key; ``"<capture>|-"`` for CICFlowMeter rows).
    captures : ``(n,)`` str, scenario id or file stem.
    families : ``(n,)`` str, family of malicious rows (``""`` for benign or unknown).
    files : per-file ``{"path", "sha256", "rows", "skipped", "format", "scenario"}``.
    dropped : rows not used, by reason (``background``, ``unknown``, ``unlabeled``...).
    profile : feature profile name (``"zeek"`` or ``"cicflowmeter"``, see :mod:`edgebot.features`).
    """

    X: np.ndarray
    y: np.ndarray
    ts: np.ndarray
    hosts: np.ndarray
    captures: np.ndarray
    families: np.ndarray
    files: list[dict] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    profile: str = "zeek"

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> "FlowTable":
        """Rows ``idx`` as a new table (files and dropped counts are kept)."""
        return FlowTable(self.X[idx], self.y[idx], self.ts[idx], self.hosts[idx], self.captures[idx],
                         self.families[idx], self.files, self.dropped, self.profile)

    def capture_families(self) -> dict[str, str]:
        """Each capture's family: the most common family of its malicious rows (``""`` if none)."""
        out: dict[str, str] = {}
        for capture in sorted(set(self.captures.tolist())):
            fams = Counter(f for f in self.families[(self.captures == capture) & (self.y == 1)].tolist() if f)
            out[capture] = fams.most_common(1)[0][0] if fams else ""
        return out


@dataclass
class Split:
    """Row indices of the three parts of a split, plus what the report says about it.

    Attributes
    ----------
    name : ``"temporal"``, ``"stratified"`` or ``"leave-out:NAME"``.
    train, val, test : ``(k,) int64`` row indices into the :class:`FlowTable`.
    leaky : True for the paper's stratified random split (neighbouring flows on both sides).
    left_out : for leave-out splits: ``{"name", "matched", "captures"}``.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    leaky: bool = False
    left_out: Optional[dict] = None

    def describe(self, table: FlowTable) -> dict:
        """The ``split`` entry of ``metrics.json``: name, protocol, sizes per part and class."""
        sizes = {}
        for part in ("train", "val", "test"):
            idx = getattr(self, part)
            y = table.y[idx]
            sizes[part] = {"flows": int(len(idx)), "benign": int(np.sum(y == 0)), "malicious": int(np.sum(y == 1))}
        out = {
            "name": self.name,
            "leaky": self.leaky,
            "protocol": _PROTOCOLS[self.name.split(":")[0]],
            "sizes": sizes,
            "test_captures": sorted(set(table.captures[self.test].tolist())),
        }
        if self.left_out:
            out["left_out"] = self.left_out
        return out


_PROTOCOLS = {
    "temporal": (
        f"per capture, sorted by start time: the earlier {1 - TEST_FRACTION:.0%} trains (its last "
        f"{VAL_FRACTION:.0%} is validation), the later {TEST_FRACTION:.0%} is the test set"
    ),
    "stratified": (
        f"the paper's protocol: stratified random {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} over rows "
        f"(validation: stratified random {VAL_FRACTION:.0%} of training). LEAKY: neighbouring flows of one "
        "capture land on both sides"
    ),
    "leave-out": (
        "the named captures (a scenario, or every capture of a family) are the test set and never "
        f"seen in training; the other captures train (per capture, the latest {VAL_FRACTION:.0%} is validation)"
    ),
}


def load_flows(
    paths: Sequence[PathLike],
    *,
    families: Optional[Mapping[str, str]] = None,
    progress: bool = True,
) -> FlowTable:
    """Read flow files, keep the labeled rows and featurize them.

    Parameters
    ----------
    paths
        Zeek-like flow files (IoT-23 logs or CSVs, Stratosphere labeled logs, Zeek conn logs
        with labels), or CICFlowMeter CSVs (the ``cicflowmeter`` profile; they have no hosts or
        times, so file order stands for time and each file is one capture); compressed files are
        fine. All files must be of one profile.
    families
        File -> family of its malicious rows (``--family FILE=NAME``); overrides the IoT-23 table.
    progress
        Show a progress bar over the files on stderr.

    Returns
    -------
    FlowTable

    Raises
    ------
    DataError
        No files, Zeek-like and CICFlowMeter files mixed, or no labeled rows at all.
    DataFormatError, SourceError
        From the readers: a file that is not a flow log, or cannot be opened.
    """
    from tqdm.auto import tqdm

    from edgebot.readers import read_flows

    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no data files given; pass one or more labeled flow logs")
    records: list[FlowRecord | CicFlowRecord] = []
    profile = None
    files: list[dict] = []
    dropped: Counter = Counter()
    for path in tqdm(paths, desc="loading flows", unit="file", disable=not progress, leave=False):
        rows, readers = read_flows([path], families=families)
        reader = readers[0]
        file_profile = profile_for_format(reader.format)
        if profile is not None and file_profile is not profile:
            raise DataError(
                f"{path} is a {reader.format} file ({file_profile.name} profile) but the files before it are of the "
                f"{profile.name} profile; their features differ, train on one kind at a time"
            )
        profile = file_profile
        kept = 0
        for record in rows:
            if record.is_labeled:
                records.append(record)
                kept += 1
            else:
                dropped[record.label or "unlabeled"] += 1
        files.append({
            "path": path.name,
            "sha256": sha256_file(path),
            "rows": int(reader.rows_read),
            "labeled": kept,
            "skipped": int(reader.rows_skipped),
            "format": reader.format,
            "scenario": reader.scenario,
        })
        log.info("%s: %d rows, %d labeled, %d skipped", path, reader.rows_read, kept, reader.rows_skipped)
    if dropped:
        log.info("dropped rows without a benign/malicious label: %s", dict(dropped))
    if not records:
        raise DataError(
            "no row is labeled benign or malicious; the trainer needs labeled flow logs "
            "(e.g. IoT-23 conn.log.labeled)"
        )
    assert profile is not None  # set by every file read, and records come from at least one
    captures = np.array([r.scenario or Path(r.source).name for r in records], dtype=object)
    if profile.sequence == "feature-axis":  # no host or time columns: file order is time
        log.info("%s profile: no hosts or timestamps; file order stands for time, each file is a capture",
                 profile.name)
        ts = np.array([r.line for r in records], dtype=np.float64)
        hosts = np.array([f"{c}|-" for c in captures], dtype=object)
    else:
        flows = [r for r in records if isinstance(r, FlowRecord)]
        assert len(flows) == len(records)  # one profile per table; only the feature-axis one reads CicFlowRecords
        ts = np.array([r.ts for r in flows], dtype=np.float64)
        hosts = np.array([f"{c}|{r.orig_h}" for c, r in zip(captures, flows)], dtype=object)
    return FlowTable(
        X=profile.featurize(records),
        y=np.array([r.label == MALICIOUS for r in records], dtype=np.int8),
        ts=ts,
        hosts=hosts,
        captures=captures,
        families=np.array([(r.family or "") if r.label == MALICIOUS else "" for r in records], dtype=object),
        files=files,
        dropped=dict(dropped),
        profile=profile.name,
    )


def check_classes(table: FlowTable) -> None:
    """Refuse data the trainer cannot learn from: no benign rows, or a single class.

    Raises
    ------
    DataError
    """
    n_benign = int(np.sum(table.y == 0))
    n_malicious = int(np.sum(table.y == 1))
    if n_benign == 0:
        raise DataError(
            f"no benign rows among {n_malicious} labeled flows: the autoencoder trains on benign flows only; "
            "add a benign capture (e.g. data/iot23/CTU-Honeypot-Capture-4-1.conn.log.labeled.xz)"
        )
    if n_malicious == 0:
        raise DataError(
            f"only benign rows ({n_benign} flows), a single class: add a capture with malicious flows"
        )


def subsample_per_capture(table: FlowTable, max_flows: int) -> np.ndarray:
    """Rows to keep so that no capture has more than ``max_flows``, evenly spaced in time.

    Returns
    -------
    np.ndarray
        ``(k,) int64`` sorted row indices.
    """
    keep = []
    for capture in sorted(set(table.captures.tolist())):
        idx = _time_sorted(table, np.flatnonzero(table.captures == capture))
        if len(idx) > max_flows:
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, max_flows).round().astype(np.int64))]
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def parse_split(split: str) -> tuple[str, Optional[str]]:
    """``"temporal"`` -> ``("temporal", None)``; ``"leave-out:Hakai"`` -> ``("leave-out", "Hakai")``.

    Raises
    ------
    DataError
        An unknown split name, or ``leave-out:`` without a name.
    """
    kind, _, name = split.partition(":")
    kind = kind.strip().lower()
    if kind in ("temporal", "stratified") and not name:
        return kind, None
    if kind == "leave-out" and name.strip():
        return kind, name.strip()
    raise DataError(
        f"unknown split {split!r}; use temporal, stratified, leave-out:NAME (a scenario such as 8-1 or a family such "
        "as Hakai) or leave-device-out[:K]"
    )


def device_folds(groups: Iterable[str], k: int = DEVICE_FOLDS, seed: int = 0) -> list[list[str]]:
    """Deal device groups into ``k`` folds, deterministically for a seed.

    Parameters
    ----------
    groups
        Group names (a physical device; devices sharing a MAC share one). Duplicates count once.
    k
        Number of folds, at least 2 and at most the number of groups.
    seed
        Seed of the shuffle: the same groups and seed give the same folds.

    Returns
    -------
    list of list of str
        ``k`` folds; each is a sorted list of groups, every group in exactly one fold, fold sizes differ by
        at most one.

    Raises
    ------
    DataError
        ``k`` below 2 or above the number of groups.
    """
    names = sorted(set(groups))
    if k < 2:
        raise DataError(f"leave-device-out needs at least 2 folds, got {k}")
    if k > len(names):
        raise DataError(f"leave-device-out:{k} needs at least {k} devices, the data hold {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    folds: list[list[str]] = [[] for _ in range(k)]
    for position, index in enumerate(order):
        folds[position % k].append(names[index])
    return [sorted(fold) for fold in folds]


def _time_sorted(table: FlowTable, idx: np.ndarray) -> np.ndarray:
    """``idx`` ordered by start time (file order breaks ties)."""
    return idx[np.lexsort((idx, table.ts[idx]))]


def _temporal_parts(table: FlowTable, captures: Iterable[str], test_fraction: float) -> tuple[list, list, list]:
    train, val, test = [], [], []
    for capture in captures:
        idx = _time_sorted(table, np.flatnonzero(table.captures == capture))
        n_test = int(round(test_fraction * len(idx)))
        head, tail = idx[: len(idx) - n_test], idx[len(idx) - n_test:]
        n_val = int(round(VAL_FRACTION * len(head)))
        train.append(head[: len(head) - n_val])
        val.append(head[len(head) - n_val:])
        test.append(tail)
    return train, val, test


def _cat(parts: list) -> np.ndarray:
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)


def _stratified_parts(y: np.ndarray, idx: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, held) with ``fraction`` of each class held, at random."""
    rest, held = [], []
    for cls in (0, 1):
        members = idx[y[idx] == cls]
        members = members[rng.permutation(len(members))]
        n_held = int(round(fraction * len(members)))
        held.append(members[:n_held])
        rest.append(members[n_held:])
    return _cat(rest), _cat(held)


def _capture_aliases(table: FlowTable, capture: str) -> set[str]:
    """Lower-case names a capture answers to: its id, its files' names, its IoT-23 capture name."""
    from edgebot.readers.scenarios import file_stem, iot23_scenario

    aliases = {capture.lower()}
    for f in table.files:
        if f["scenario"] == capture:
            aliases |= {f["path"].lower(), file_stem(f["path"]).lower()}
            entry = iot23_scenario(f["path"])
            if entry is not None:
                aliases.add(entry.capture.lower())
    return aliases


def _match_leave_out(table: FlowTable, name: str) -> tuple[list[str], str]:
    """Captures a leave-out name selects, and whether it matched a scenario or a family."""
    wanted = name.lower()
    capture_family = table.capture_families()
    by_capture = [c for c in capture_family if wanted in _capture_aliases(table, c)]
    if by_capture:
        return by_capture, "scenario"
    by_family = [c for c, fam in capture_family.items() if fam and fam.lower() == wanted]
    if by_family:
        return by_family, "family"
    scenarios = ", ".join(capture_family)
    fams = ", ".join(sorted({f for f in capture_family.values() if f})) or "none"
    raise DataError(
        f"leave-out name {name!r} matches no scenario or family in the data; "
        f"scenarios: {scenarios}; families: {fams}"
    )


def make_split(table: FlowTable, split: str, seed: int = 0) -> Split:
    """Split the table into train / validation / test rows.

    Parameters
    ----------
    table
        The labeled flows.
    split
        ``"temporal"`` (default protocol: per capture, earlier flows train, later flows test),
        ``"stratified"`` (the paper's random 80/20; leaky), or ``"leave-out:NAME"`` (a scenario
        such as ``8-1`` or a family such as ``Hakai``: its captures are the test set only).
    seed
        Seed of the stratified split's shuffles.

    Returns
    -------
    Split

    Raises
    ------
    DataError
        Unknown split, a leave-out name matching nothing or everything, or a part the models
        cannot use (training without one class, validation without benign rows).
    """
    kind, name = parse_split(split)
    captures = sorted(set(table.captures.tolist()))
    left_out = None
    if kind == "temporal":
        train, val, test = (_cat(p) for p in _temporal_parts(table, captures, TEST_FRACTION))
        result = Split("temporal", train, val, test)
    elif kind == "stratified":
        rng = np.random.default_rng(seed)
        rest, test = _stratified_parts(table.y, np.arange(len(table), dtype=np.int64), TEST_FRACTION, rng)
        train, val = _stratified_parts(table.y, rest, VAL_FRACTION, rng)
        result = Split("stratified", train, val, test, leaky=True)
    else:
        assert name is not None  # parse_split names every leave-out split
        chosen, matched = _match_leave_out(table, name)
        kept = [c for c in captures if c not in chosen]
        if not kept:
            raise DataError(f"leave-out:{name} leaves no capture to train on; add other captures")
        train, val, _ = (_cat(p) for p in _temporal_parts(table, kept, 0.0))
        test = _cat([np.flatnonzero(np.isin(table.captures, chosen))])
        left_out = {"name": name, "matched": matched, "captures": chosen}
        result = Split(f"leave-out:{name}", train, val, test, left_out=left_out)
    _check_parts(table, result)
    return result


def _check_parts(table: FlowTable, split: Split) -> None:
    y_train, y_val = table.y[split.train], table.y[split.val]
    where = f"the training part of the {split.name} split"
    if not np.any(y_train == 1):
        raise DataError(f"{where} has no malicious rows; add captures with malicious flows that are not left out")
    if not np.any(y_train == 0):
        raise DataError(f"{where} has no benign rows; add a benign capture (e.g. an IoT-23 honeypot)")
    if not np.any(y_val == 0):
        raise DataError(
            f"the validation part of the {split.name} split has no benign rows to set thresholds on; add benign flows"
        )
    if len(split.test) == 0:
        raise DataError(f"the test part of the {split.name} split is empty; add more flows")


def check_window(table: FlowTable, split: Split, window: int) -> None:
    """Refuse a window longer than the flows of a part (no part could fill one window).

    Raises
    ------
    DataError
    """
    if window < 1:
        raise DataError(f"--window must be at least 1, got {window}")
    for part in ("train", "val", "test"):
        n = len(getattr(split, part))
        if n < window:
            raise DataError(
                f"too few flows for one window: the {part} part of the {split.name} split has {n} flows "
                f"but --window is {window}; give more data or a smaller --window"
            )


@dataclass
class PartArrays:
    """Model inputs of one split part.

    Attributes
    ----------
    windows : ``(n, T, F) float32`` scaled window ending at each flow (``(n, F, 1)`` under the
        ``feature-axis`` layout of the cicflowmeter profile).
    last : ``(n, F) float32`` scaled features of each flow (= each window's last row).
    y : ``(n,) int8`` labels.
    families, hosts, captures : ``(n,)`` str.
    ts : ``(n,) float64``.
    """

    windows: np.ndarray
    last: np.ndarray
    y: np.ndarray
    families: np.ndarray
    hosts: np.ndarray
    captures: np.ndarray
    ts: np.ndarray


def part_arrays(table: FlowTable, idx: np.ndarray, scaler: MinMaxScaler, window: int) -> PartArrays:
    """Scale one part and build its per-host windows (or feature-axis sequences) from that part's rows only.

    Windows are made per part, so no window straddles the split.
    """
    last = scaler.transform(table.X[idx])
    windows = model_sequences(last, get_profile(table.profile).sequence, table.hosts[idx], table.ts[idx], window)
    return PartArrays(windows, last, table.y[idx], table.families[idx], table.hosts[idx],
                      table.captures[idx], table.ts[idx])


def label_counts(y: np.ndarray) -> dict[str, int]:
    """``{"benign": n0, "malicious": n1}`` of a label vector."""
    return {BENIGN: int(np.sum(y == 0)), MALICIOUS: int(np.sum(y == 1))}
