"""The shard set as the shard trainer reads it: counts from the manifest, rows drawn before windows.

:class:`ShardSet` opens a prepared shard set (``edgebot prepare``), holds a part in memory (at most
``max_rows`` rows drawn with a seed before their windows are built), feeds the training part to
``tf.data`` shard by shard, and gives it to Dask as one chunk per shard (:func:`train_dask_arrays`).
Used by :mod:`edgebot.train.dask_train`, which re-exports :class:`ShardSet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgebot.errors import DataError
from edgebot.features import get_profile
from edgebot.train import shards as sh
from edgebot.train.data import PartArrays


@dataclass
class ShardSet:
    root: Path
    manifest: dict
    scaler: Any
    sequence: str
    keep: dict  # capture -> kept time ranks (None: all)

    @classmethod
    def open(cls, root, cap: Optional[int]) -> "ShardSet":
        manifest = sh.load_manifest(root)
        profile = get_profile(manifest["featurizer"]["profile"])
        keep = {s["capture"]: sh.keep_ranks(s["labeled"], cap) for s in manifest["sources"]}
        return cls(Path(root), manifest, sh.fit_scaler(manifest), profile.sequence, keep)

    def part_rows(self, entry: dict, data: dict, part: int) -> np.ndarray:
        return sh.select_rows(data, part, self.keep[entry["capture"]])

    def part_counts(self, part: int) -> list[tuple[dict, int]]:
        """(shard entry, kept rows of ``part``) for every shard holding any, in manifest order (no shard read)."""
        out = []
        for entry in sh.shards_of(self.manifest, [part]):
            lo, hi = entry["ranks"]
            cuts = next(s for s in self.manifest["sources"] if s["capture"] == entry["capture"])["cuts"]
            start = (0, cuts["val_start"], cuts["test_start"])[part]
            end = (cuts["val_start"], cuts["test_start"], hi)[part]
            lo, hi = max(lo, start), min(hi, end)
            keep = self.keep[entry["capture"]]
            n = max(0, hi - lo) if keep is None else int(np.sum((keep >= lo) & (keep < hi)))
            if n:
                out.append((entry, n))
        return out

    def train_counts(self) -> list[tuple[dict, int]]:
        """(shard entry, kept training rows) for every shard with training rows."""
        return self.part_counts(0)

    def pick_rows(self, part: int, max_rows: Optional[int], seed: int = 0) -> Optional[np.ndarray]:
        """Sorted positions of at most ``max_rows`` rows of ``part`` (drawn with ``seed``), None for all.

        Positions count the part's kept rows shard by shard in manifest order, as :meth:`load_rows` reads them.
        """
        n = sum(k for _, k in self.part_counts(part))
        if not max_rows or n <= max_rows:
            return None
        return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))

    def load_part(self, part: int, max_rows: Optional[int] = None, seed: int = 0) -> PartArrays:
        """One part in memory (every kept row, or at most ``max_rows`` spread over it)."""
        return self.load_rows(part, self.pick_rows(part, max_rows, seed))

    def load_rows(self, part: int, rows: Optional[np.ndarray] = None, windows: bool = True) -> PartArrays:
        """The rows at sorted positions ``rows`` of ``part`` (None: all), read shard by shard into one array each.

        Windows are built for those rows only. ``windows=False`` leaves ``windows`` empty (``(0, ...)``): the
        Random Forest needs only the last rows.

        Raises
        ------
        DataError
            The part is empty, or a shard holds another number of its rows than the manifest says.
        """
        counts = self.part_counts(part)
        total = sum(k for _, k in counts)
        if not total:
            raise DataError(f"the {sh.PARTS[part]} part of the shard set is empty")
        rows = np.arange(total) if rows is None else np.asarray(rows, dtype=np.int64)
        cols: list[Any] = [None] * 7
        offset, at = 0, 0
        for entry, n in counts:
            first, end = np.searchsorted(rows, (offset, offset + n))
            local = rows[first:end] - offset
            offset += n
            if not len(local) and cols[0] is not None:
                continue  # (the first shard is read even so: it gives the columns their shapes)
            data = sh.open_shard(self.root, entry, self.manifest)
            idx = self.part_rows(entry, data, part)
            if len(idx) != n:
                raise DataError(f"shard {entry['file']} holds {len(idx)} {sh.PARTS[part]} rows, its manifest "
                                f"entry {n}; prepare the data again")
            idx = idx[local]
            wins, last = sh.scaled_sequences(data, idx, self.scaler, self.sequence)
            piece = (wins if windows else wins[:0], last, data["y"][idx], data["families"][idx],
                     data["hosts"][idx], np.full(len(idx), entry["capture"], dtype=object), data["ts"][idx])
            _fill(cols, piece, at, (len(rows) if windows else 0,) + (len(rows),) * 6)
            at += len(idx)
        return PartArrays(cols[0], cols[1], cols[2].astype(np.int8, copy=False), *cols[3:])

    def train_generator(self, benign_only: bool = False, autoencoder: bool = False):
        """Per-shard arrays of the training part for ``tf.data``: (windows, y), or (last, last) benign."""
        for entry in sh.shards_of(self.manifest, [0]):
            data = sh.open_shard(self.root, entry, self.manifest)
            idx = self.part_rows(entry, data, 0)
            if benign_only:
                idx = idx[data["y"][idx] == 0]
            if not len(idx):
                continue
            windows, last = sh.scaled_sequences(data, idx, self.scaler, self.sequence)
            if autoencoder:
                yield last, last
            else:
                yield windows, data["y"][idx].astype(np.float32)


def _fill(cols: list, piece: tuple, at: int, sizes: tuple) -> None:
    """Copy ``piece``'s columns into ``cols`` at row ``at``, allocating ``sizes[i]`` rows of column ``i`` first.

    String columns are held as ``object`` (as in-memory training's part arrays); a column of 0 rows
    (``windows=False``) stays empty.
    """
    for i, values in enumerate(piece):
        if cols[i] is None:
            dtype = object if values.dtype.kind in "USO" else values.dtype
            cols[i] = np.empty((sizes[i],) + values.shape[1:], dtype=dtype)
        if sizes[i]:
            cols[i][at:at + len(values)] = values


def _train_flows(root: str, entry: dict, head: dict, scaler: dict, sequence: str,
                 keep: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Scaled last rows and labels of a shard's kept training flows (a task on a Dask worker)."""
    from edgebot.features import MinMaxScaler

    data = sh.open_shard(Path(root), entry, head)
    idx = sh.select_rows(data, 0, keep)
    _, last = sh.scaled_sequences(data, idx, MinMaxScaler.from_dict(scaler), sequence)
    return last, data["y"][idx].astype(np.float32)


def train_dask_arrays(shards: ShardSet):
    """The training part's scaled flows and labels as dask arrays, one chunk per shard."""
    import dask
    import dask.array as da

    F = len(shards.manifest["featurizer"]["feature_names"])
    head = {"featurizer": shards.manifest["featurizer"], "window": shards.manifest["window"]}
    scaler = shards.scaler.to_dict()
    xs, ys = [], []
    for entry, n in shards.train_counts():
        small = {k: entry[k] for k in ("file", "capture")}
        pair = dask.delayed(_train_flows, nout=2, pure=False)(
            str(shards.root.resolve()), small, head, scaler, shards.sequence, shards.keep[entry["capture"]])
        xs.append(da.from_delayed(pair[0], shape=(n, F), dtype=np.float32))
        ys.append(da.from_delayed(pair[1], shape=(n,), dtype=np.float32))
    return da.concatenate(xs), da.concatenate(ys)
