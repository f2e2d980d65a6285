"""``edgebot prepare``: labeled flow files to a shard set, out of core, resumable, parallel over files.

Per source file (one capture), in bounded memory:

1. stream the file once for the start time of every labeled flow (8 bytes a flow), rank the
   flows by time (file order breaks ties, as :func:`edgebot.train.data.make_split`) and assign
   the temporal split from the ranks;
2. stream it again in chunks, featurize each chunk with the shared featurizer and spill the rows
   to buckets of consecutive ranks (one bucket per shard);
3. for each bucket in time order: sort it, build every flow's per-host window of its part with
   :class:`edgebot.windows.HostWindows` (the window state is carried from one shard to the next)
   and write the shard.

Only the time ranks of one file, one chunk and one bucket are in memory at a time. A file whose
``sources/<capture>.json`` exists with the file's sha256 is skipped (resume).
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from edgebot.bundle import sha256_file
from edgebot.errors import DataError
from edgebot.features import profile_for_format
from edgebot.flow import MALICIOUS
from edgebot.train import shards as sh
from edgebot.train.data import TEST_FRACTION, VAL_FRACTION, _PROTOCOLS
from edgebot.windows import HostWindows

log = logging.getLogger(__name__)

#: Flows per shard (and per spill bucket).
SHARD_ROWS = 50_000
#: Labeled flows featurized at a time.
CHUNK_ROWS = 20_000
#: Most (part, host) window states kept per file; the least recently seen host is evicted beyond it
#: (its next flow starts a new window; counted in the manifest).
MAX_WINDOW_HOSTS = 200_000


def temporal_cuts(n: int) -> tuple[int, int]:
    """Time-rank boundaries of the temporal split of a capture of ``n`` flows: ``(val_start, test_start)``.

    Ranks below ``val_start`` train, below ``test_start`` validate, the rest test (as ``make_split``).
    """
    n_test = int(round(TEST_FRACTION * n))
    head = n - n_test
    n_val = int(round(VAL_FRACTION * head))
    return head - n_val, head


def _open(path: Path, family: Optional[str]):
    from edgebot.readers import open_flows

    return open_flows(path, family=family)


def _pass_times(path: Path, family: Optional[str]):
    """First pass: start time (or line, for CICFlowMeter) of every labeled row, and the reader."""
    from array import array

    reader = _open(path, family)
    profile = profile_for_format(reader.format)
    feature_axis = profile.sequence == "feature-axis"
    ts = array("d")
    dropped: Counter = Counter()
    for record in reader:
        if record.is_labeled:
            ts.append(float(record.line) if feature_axis else float(record.ts))
        else:
            dropped[record.label or "unlabeled"] += 1
    return np.frombuffer(ts, dtype=np.float64) if len(ts) else np.zeros(0), reader, profile, dropped


def _spill(path: Path, family: Optional[str], rank: np.ndarray, spill: Path, shard_rows: int, profile) -> None:
    """Second pass: featurize chunks, append each row to the bucket of its time rank."""
    reader = _open(path, family)
    k = 0
    chunk: list = []

    def flush() -> None:
        nonlocal k, chunk
        if not chunk:
            return
        X = profile.featurize(chunk)
        r = rank[k:k + len(chunk)]
        y = np.array([rec.label == MALICIOUS for rec in chunk], dtype=np.int8)
        fam = np.array([(rec.family or "") if rec.label == MALICIOUS else "" for rec in chunk], dtype=str)
        hosts = np.array([getattr(rec, "orig_h", "-") or "-" for rec in chunk], dtype=str)
        bucket = r // shard_rows
        for b in np.unique(bucket):
            sel = np.flatnonzero(bucket == b)
            with open(spill / f"{int(b):06d}.pkl", "ab") as fh:
                pickle.dump((X[sel], y[sel], r[sel], hosts[sel], fam[sel]), fh, protocol=pickle.HIGHEST_PROTOCOL)
        k += len(chunk)
        chunk = []

    for record in reader:
        if record.is_labeled:
            chunk.append(record)
            if len(chunk) >= CHUNK_ROWS:
                flush()
    flush()


def _load_bucket(path: Path) -> tuple[np.ndarray, ...]:
    pieces = []
    with open(path, "rb") as fh:
        while True:
            try:
                pieces.append(pickle.load(fh))
            except EOFError:
                break
    cols = [np.concatenate([p[i] for p in pieces]) for i in range(5)]
    order = np.argsort(cols[2], kind="stable")
    return tuple(c[order] for c in cols)


def prepare_file(path: str, out: str, window: int, shard_rows: int, family: Optional[str] = None) -> dict:
    """Prepare one source file into shards under ``out``; returns its ``sources/<capture>.json`` entry.

    Run in a worker process by :func:`prepare`; importable at top level for the process pool.
    """
    src, root = Path(path), Path(out)
    digest = sha256_file(src)
    ts, reader, profile, dropped = _pass_times(src, family)
    capture = reader.scenario or src.name
    slug = sh.capture_slug(capture)
    n = len(ts)
    entry = {"path": src.name, "sha256": digest, "rows": int(reader.rows_read), "labeled": n,
             "skipped": int(reader.rows_skipped), "format": reader.format, "scenario": reader.scenario,
             "capture": capture, "profile": profile.name, "featurizer_hash": profile.hash, "dropped": dict(dropped),
             "shards": [], "evictions": 0}
    if n == 0:
        return entry
    order = np.lexsort((np.arange(n), ts))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    del order
    val_start, test_start = temporal_cuts(n)
    entry["cuts"] = {"val_start": val_start, "test_start": test_start}
    ts_sorted = np.sort(ts)
    del ts
    spill = Path(tempfile.mkdtemp(prefix=f".spill-{slug}-", dir=root))
    try:
        _spill(src, family, rank, spill, shard_rows, profile)
        del rank
        feature_axis = profile.sequence == "feature-axis"
        T = 1 if feature_axis else window
        windows = HostWindows(T, profile.n_features, max_hosts=MAX_WINDOW_HOSTS)
        counts: dict[str, int] = {}
        for b in range((n + shard_rows - 1) // shard_rows):
            X, y, r, hosts, fam = _load_bucket(spill / f"{b:06d}.pkl")
            part = np.where(r < val_start, 0, np.where(r < test_start, 1, 2)).astype(np.int8)
            arrays = dict(y=y, rank=r, part=part, ts=ts_sorted[r], hosts=np.char.add(f"{capture}|", hosts),
                          families=fam, featurizer_hash=np.array(profile.hash),
                          featurizer_version=np.array(profile.version), window=np.array(T),
                          capture=np.array(capture))
            if feature_axis:
                arrays["X"] = X
            else:
                keys = [f"{p}|{h}" for p, h in zip(part.tolist(), hosts.tolist())]
                before = windows.evictions
                arrays["windows"] = windows.push_many(keys, X)
                if windows.evictions != before:
                    counts = {key: c for key, c in counts.items() if key in windows._buffers}
                wlen = np.empty(len(keys), dtype=np.int8)
                for i, key in enumerate(keys):
                    c = counts.get(key, 0) + 1
                    counts[key] = c
                    wlen[i] = min(c, T)
                arrays["wlen"] = wlen
            name = f"{sh.SHARDS_DIR}/{slug}-{b:05d}.npz"
            sh.write_shard(root / name, **arrays)
            (spill / f"{b:06d}.pkl").unlink()
            train = part == 0
            fams = Counter(fam[y == 1].tolist())
            entry["shards"].append({
                "file": name, "source": src.name, "capture": capture, "rows": int(len(y)),
                "ranks": [int(r[0]), int(r[-1]) + 1],
                "parts": {sh.PARTS[p]: int(np.sum(part == p)) for p in range(3)},
                "labels": {"benign": int(np.sum(y == 0)), "malicious": int(np.sum(y == 1))},
                "families": dict(sorted((k or "unknown", v) for k, v in fams.items())),
                "train_min": X[train].min(axis=0).tolist() if train.any() else None,
                "train_max": X[train].max(axis=0).tolist() if train.any() else None,
            })
        entry["evictions"] = int(windows.evictions)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return entry


def _done(root: Path, src: Path, digest: str, window: int) -> Optional[dict]:
    """The finished entry of ``src`` if a previous run completed it (same bytes, all shards there)."""
    for marker in (root / sh.SOURCES_DIR).glob("*.json"):
        try:
            entry = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if entry.get("sha256") == digest and entry.get("path") == src.name:
            if entry.get("window") != window or entry.get("featurizer_hash") != profile_for_format(
                    entry.get("format", "")).hash:
                return None  # prepared by another window or featurizer: prepare it again
            if all((root / s["file"]).is_file() for s in entry["shards"]):
                return entry
    return None


def prepare(paths: Sequence[str], out: str, *, window: int = 8, workers: int = 1, shard_rows: int = SHARD_ROWS,
            families: Optional[Mapping[str, str]] = None, progress: bool = True) -> dict:
    """Write the shard set of ``paths`` to ``out`` (see the module doc); returns the manifest.

    Raises
    ------
    DataError
        No files, a window below 1, an ``out`` that is another kind of directory or a shard set of
        another featurizer or window (both named), two files of one capture, mixed profiles, no labels.
    """
    from tqdm.auto import tqdm

    from edgebot.readers import _override_for

    if not paths:
        raise DataError("no data files given; pass one or more labeled flow logs")
    if window < 1:
        raise DataError(f"--window must be at least 1, got {window}")
    if shard_rows < 1000:
        raise DataError(f"--shard-rows must be at least 1000, got {shard_rows}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise DataError(f"--out {root} is a file; give a directory for the shard set")
    if root.is_dir() and any(root.iterdir()) and not (root / sh.SOURCES_DIR).is_dir():
        raise DataError(f"--out {root} exists and is not a shard set; choose another path")
    old = root / sh.MANIFEST
    if old.is_file():
        from edgebot.features import get_profile

        previous = json.loads(old.read_text(encoding="utf-8"))
        current = {"featurizer": get_profile(previous.get("featurizer", {}).get("profile")).info(), "window": window}
        sh.check_same_set(previous, f"the shard set {root}", current, "this prepare")
        old.unlink()  # rewritten at the end; its absence marks the set incomplete meanwhile
    for leftover in root.glob(".spill-*"):  # an interrupted run's spill buckets
        shutil.rmtree(leftover, ignore_errors=True)
    (root / sh.SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    (root / sh.SOURCES_DIR).mkdir(exist_ok=True)

    entries: dict[int, dict] = {}
    todo = []
    for i, p in enumerate(paths):
        src = Path(p)
        if not src.is_file():
            raise DataError(f"{src} is not a file")
        done = _done(root, src, sha256_file(src), window)
        if done is not None:
            log.info("%s: already prepared (%d shards), skipped", src, len(done["shards"]))
            entries[i] = done
        else:
            todo.append((i, src, _override_for(src, families)))

    def finished(i: int, entry: dict) -> None:
        entry["window"] = window
        sh.atomic_write_json(root / sh.SOURCES_DIR / f"{sh.capture_slug(entry['capture'])}.json", entry)
        entries[i] = entry

    bar = tqdm(total=len(todo), desc="preparing", unit="file", disable=not progress, leave=False)
    if workers <= 1 or len(todo) <= 1:
        for i, src, fam in todo:
            finished(i, prepare_file(str(src), str(root), window, shard_rows, fam))
            bar.update(1)
    else:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(prepare_file, str(src), str(root), window, shard_rows, fam): i
                       for i, src, fam in todo}
            for future in as_completed(futures):
                finished(futures[future], future.result())
                bar.update(1)
    bar.close()
    return _write_manifest(root, [entries[i] for i in sorted(entries)], window)


def _write_manifest(root: Path, sources: list[dict], window: int) -> dict:
    from edgebot.features import get_profile

    profiles = {s["profile"] for s in sources}
    if len(profiles) > 1:
        raise DataError(f"the files mix feature profiles ({', '.join(sorted(profiles))}); prepare one kind at a time")
    by_capture: dict[str, str] = {}
    for s in sources:
        if s["capture"] in by_capture:
            raise DataError(f"{by_capture[s['capture']]} and {s['path']} are both capture {s['capture']}; "
                            "the temporal split is per capture, give each capture as one file")
        by_capture[s["capture"]] = s["path"]
    if not any(s["labeled"] for s in sources):
        raise DataError("no row is labeled benign or malicious; the trainer needs labeled flow logs "
                        "(e.g. IoT-23 conn.log.labeled)")
    profile = get_profile(profiles.pop())
    shards = [shard for s in sources for shard in s["shards"]]
    totals: Counter = Counter()
    families: Counter = Counter()
    for shard in shards:
        totals.update(shard["labels"])
        totals.update({f"{k}_flows": v for k, v in shard["parts"].items()})
        families.update(shard["families"])
    dropped: Counter = Counter()
    for s in sources:
        dropped.update(s["dropped"])
    manifest = {
        "format": sh.FORMAT,
        "featurizer": profile.info(),
        "window": window if profile.sequence == "host-windows" else 1,
        "split": {"name": "temporal", "test_fraction": TEST_FRACTION, "val_fraction": VAL_FRACTION,
                  "protocol": _PROTOCOLS["temporal"]},
        "totals": dict(totals),
        "families": dict(sorted(families.items())),
        "dropped_unlabeled": dict(dropped),
        "sources": [{k: v for k, v in s.items() if k != "shards"} | {"n_shards": len(s["shards"])} for s in sources],
        "shards": shards,
    }
    sh.atomic_write_json(root / sh.MANIFEST, manifest)
    return manifest


def prepared_summary(manifest: dict, root: str) -> str:
    """The lines ``edgebot prepare`` prints."""
    t = manifest["totals"]
    return (f"shard set {root}: {len(manifest['sources'])} files, {len(manifest['shards'])} shards, "
            f"{t.get('benign', 0) + t.get('malicious', 0)} labeled flows ({t.get('benign', 0)} benign, "
            f"{t.get('malicious', 0)} malicious; train {t.get('train_flows', 0)}, val {t.get('val_flows', 0)}, "
            f"test {t.get('test_flows', 0)}); {describe(manifest)}")


def describe(manifest: dict) -> str:
    return sh.describe_set(manifest)


__all__ = ["prepare", "prepare_file", "temporal_cuts", "SHARD_ROWS"]
