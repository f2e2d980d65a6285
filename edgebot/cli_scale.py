"""``edgebot prepare`` (flow files to a shard set) and the shard-set side of ``edgebot train``.

Registered on the main group by :mod:`edgebot.cli`; see docs/training-at-scale.md.
"""

from __future__ import annotations

from pathlib import Path

import click


def register(main: click.Group, handle_errors, context_settings: dict) -> None:
    """Add ``prepare`` to the ``edgebot`` group."""

    @main.command("prepare", context_settings=context_settings,
                  short_help="Stream flow files into shards for training at scale.")
    @click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Shard set directory.")
    @click.option("--window", default=8, type=click.IntRange(1, 64), help="Flows per host window (T).")
    @click.option("--workers", default=1, type=click.IntRange(1, 256), help="Files prepared in parallel (processes).")
    @click.option("--shard-rows", default=50_000, type=click.IntRange(1000, 10_000_000), help="Flows per shard.")
    @click.option("--family", "families", multiple=True, metavar="FILE=NAME",
                  help="Family of the malicious rows of FILE (for data outside the IoT-23 table).")
    @handle_errors
    def prepare(paths, out, window, workers, shard_rows, families) -> None:
        """Featurize labeled flow files into compressed shards with a manifest, in bounded memory.

        Each file is one capture: its flows are ranked by time, split as edgebot train's temporal
        split, windowed per host (the window state carried across shards) and written as .npz
        shards. Run it again with the same --out to resume: finished files are skipped.

        \b
        Example:
          edgebot prepare data/iot23/*.xz --out shards/iot23 --workers 2
          edgebot train shards/iot23 --out runs/iot23 --dask-workers 2
        """
        from edgebot.cli import _parse_families
        from edgebot.train.prepare import prepare as run_prepare, prepared_summary

        manifest = run_prepare(list(paths), out, window=window, workers=workers, shard_rows=shard_rows,
                               families=_parse_families(families))
        click.echo(prepared_summary(manifest, out))


def is_shard_set(paths) -> bool:
    """True when ``edgebot train`` was given one directory (a shard set) instead of flow files."""
    return len(paths) == 1 and Path(paths[0]).is_dir()


def train_from_shards(paths, out, *, dask, dask_workers, split, window_given, epochs, seed, fpr_budget, quick,
                      force):
    """``edgebot train SHARDS/``: refuse the options a shard set fixes, then train on Dask."""
    from edgebot.errors import DataError
    from edgebot.train.dask_train import train_shards

    if split != "temporal":
        raise DataError(f"a shard set carries the temporal split assigned by edgebot prepare; --split {split} "
                        "needs the flow files (edgebot train DATA...)")
    if window_given:
        raise DataError("a shard set carries its window (edgebot prepare --window); drop --window")
    return train_shards(paths[0], out, scheduler=dask, workers=dask_workers, epochs=epochs, seed=seed,
                        quick=quick, fpr_budget=fpr_budget, force=force)
