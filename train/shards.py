"""Prepared shard sets: the on-disk format ``edgebot prepare`` writes and ``edgebot train SHARDS/`` reads.

A shard set is a directory::

    manifest.json          what the set holds (written last: its presence means complete)
    sources/<capture>.json one per source file, written when all its shards are (resume marker)
    shards/<capture>-NNNNN.npz

Each shard holds consecutive flows of one capture in start-time order (``rank`` is the flow's
position in its capture's time order) with the temporal split already assigned (``part``: 0
train, 1 validation, 2 test, exactly as :func:`edgebot.train.data.make_split` assigns it) and
each flow's per-host window of *unscaled* features built from the flows of the same part
(``wlen``: how many of the ``T`` rows are real flows, the rest is left padding). Scaling is
per feature, so the trainer scales a window and re-zeroes its padding to get exactly the window
in-memory training builds from scaled rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from edgebot.errors import DataError
from edgebot.features import MinMaxScaler, get_profile

PathLike = Union[str, "os.PathLike[str]"]

#: Format tag of manifest.json and every shard.
FORMAT = "edgebot-shards-1"
MANIFEST = "manifest.json"
SOURCES_DIR = "sources"
SHARDS_DIR = "shards"
#: Split parts as stored in a shard's ``part`` column.
PARTS = ("train", "val", "test")


def atomic_write_json(path: Path, data: dict) -> None:
    """Write JSON to a temporary sibling, then rename (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_shard(path: Path, **arrays: np.ndarray) -> None:
    """A compressed ``.npz`` shard, written to a temporary sibling and renamed when complete."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def capture_slug(capture: str) -> str:
    """A file-name-safe form of a capture id."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in capture) or "capture"


def describe_set(manifest: dict) -> str:
    """``"featurizer zeek-3 (hash ab12...), window 8"`` - how errors name a shard set."""
    feat = manifest.get("featurizer", {})
    return f"featurizer {feat.get('version', '?')} (hash {feat.get('hash', '?')}), window {manifest.get('window', '?')}"


def check_same_set(found: dict, where: str, expected: dict, what: str) -> None:
    """Refuse two descriptions (manifest, shard or current featurizer) that differ in featurizer or window.

    Raises
    ------
    DataError
        Naming both: ``where`` holds ``describe_set(found)``, ``what`` is ``describe_set(expected)``.
    """
    same = (found.get("featurizer", {}).get("hash") == expected.get("featurizer", {}).get("hash")
            and int(found.get("window", -1)) == int(expected.get("window", -2)))
    if not same:
        raise DataError(
            f"{where} was prepared with {describe_set(found)} but {what} uses {describe_set(expected)}; "
            "prepare the data again with this edgebot (edgebot prepare DATA... --out NEW_DIR)"
        )


def load_manifest(root: PathLike) -> dict:
    """Read and check a shard set's manifest: complete, this edgebot's featurizer, every shard present.

    Raises
    ------
    DataError
        Not a shard set, an unfinished one, another featurizer version, or a missing shard (named).
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        partial = (root / SOURCES_DIR).is_dir()
        raise DataError(
            f"{root} is not a complete shard set (no {MANIFEST}"
            + ("; an interrupted edgebot prepare: run it again with the same --out to finish" if partial else
               "; make one with edgebot prepare DATA... --out DIR") + ")"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable shard manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path} is not an edgebot shard manifest (format {manifest.get('format')!r}, "
                        f"expected {FORMAT!r})" if isinstance(manifest, dict) else f"{path} is not a shard manifest")
    profile = get_profile(manifest["featurizer"]["profile"])
    current = {"featurizer": profile.info(), "window": manifest["window"]}
    check_same_set(manifest, f"the shard set {root}", current, "this edgebot's featurizer")
    missing = [s["file"] for s in manifest["shards"] if not (root / s["file"]).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"shard {missing[0]}{more} listed in {path} is missing; prepare the data again "
                        "(edgebot prepare re-creates only what is missing)")
    return manifest


def fit_scaler(manifest: dict) -> MinMaxScaler:
    """The min-max scaler of the training part, from the per-shard minima and maxima (no data read).

    Identical to ``MinMaxScaler().fit(X_train)``: the minimum of minima is the minimum.
    """
    mins = [s["train_min"] for s in manifest["shards"] if s.get("train_min") is not None]
    maxs = [s["train_max"] for s in manifest["shards"] if s.get("train_max") is not None]
    if not mins:
        raise DataError("the shard set has no training rows")
    return MinMaxScaler(np.min(np.asarray(mins, dtype=np.float32), axis=0),
                        np.max(np.asarray(maxs, dtype=np.float32), axis=0))


def keep_ranks(n: int, cap: Optional[int]) -> Optional[np.ndarray]:
    """Time ranks a per-capture cap keeps: ``cap`` evenly spaced in time (as ``subsample_per_capture``).

    None when every flow is kept.
    """
    if not cap or n <= cap:
        return None
    return np.unique(np.linspace(0, n - 1, cap).round().astype(np.int64))


def open_shard(root: Path, entry: dict, manifest: dict) -> dict:
    """A shard's arrays as a dict, its header checked against the manifest.

    Raises
    ------
    DataError
        The file is missing or damaged, or it belongs to another featurizer or window (both named).
    """
    path = root / entry["file"]
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"shard {entry['file']} listed in {root / MANIFEST} is missing") from None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"shard {path} is damaged ({exc}); delete it and run edgebot prepare again") from None
    found = {"featurizer": {"hash": str(data.get("featurizer_hash", "?")),
                            "version": str(data.get("featurizer_version", "?"))},
             "window": int(data.get("window", -1))}
    check_same_set(found, f"shard {entry['file']}", manifest, f"the manifest of {root}")
    return data


def select_rows(data: dict, part: int, keep: Optional[np.ndarray]) -> np.ndarray:
    """Indices of a shard's rows in ``part`` kept by the per-capture cap."""
    mask = data["part"] == part
    if keep is not None:
        mask &= np.isin(data["rank"], keep, assume_unique=False)
    return np.flatnonzero(mask)


def scaled_sequences(data: dict, idx: np.ndarray, scaler: MinMaxScaler, sequence: str) -> tuple[np.ndarray, np.ndarray]:
    """Scaled model sequences and scaled last rows of rows ``idx``: ``(n, T, F)`` or ``(n, F, 1)``, and ``(n, F)``."""
    if sequence == "feature-axis":
        last = scaler.transform(data["X"][idx])
        return last[:, :, None], last
    windows = scaler.transform(data["windows"][idx])
    T = windows.shape[1]
    pad = (T - data["wlen"][idx].astype(np.int64))[:, None] > np.arange(T)[None, :]
    windows[pad] = 0.0
    return windows, np.ascontiguousarray(windows[:, -1, :])


def shards_of(manifest: dict, parts: Iterable[int]) -> list[dict]:
    """Shard entries holding any row of ``parts``, in manifest order."""
    wanted = [PARTS[p] for p in parts]
    return [s for s in manifest["shards"] if any(s["parts"].get(w, 0) for w in wanted)]
