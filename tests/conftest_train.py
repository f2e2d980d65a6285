"""Fixtures of the trainer's tests: the bundled data, small crafted flow files, one quick run per session.

Import what a test module needs: ``from conftest_train import quick_run, ...  # noqa: F401``.
Training happens ONCE per session in the quick configuration (``quick_run``); the
determinism and leave-out checks share ``tiny_runs`` (two identical small runs).
"""

from __future__ import annotations

import lzma
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edgebot import datasets
REPO = Path(__file__).resolve().parents[1]
MIRAI_34_1 = datasets.iot23("34-1")
HAKAI_8_1 = datasets.iot23("8-1")
MIRAI_44_1 = datasets.iot23("44-1")
HONEYPOT_4_1 = datasets.iot23("4-1")
HONEYPOT_5_1 = datasets.iot23("5-1")
#: The data set of the issue's acceptance run: Mirai 34-1 + Hakai 8-1 + the benign honeypots.
BUNDLED = [MIRAI_34_1, HAKAI_8_1, HONEYPOT_4_1, HONEYPOT_5_1]


def iot23_csv_rows(path: Path = MIRAI_44_1) -> tuple[str, list[str]]:
    """Header and data lines of a bundled IoT-23 pipe-separated CSV."""
    lines = lzma.open(path, "rt").read().splitlines()
    return lines[0], lines[1:]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    """Write an IoT-23-style CSV flow file (format is sniffed from content, not the name)."""
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def crafted_files(tmp_path_factory) -> dict[str, Path]:
    """Small flow files for the bad-input tests: malicious-only, benign-only, a short mixed one."""
    root = tmp_path_factory.mktemp("crafted")
    header, rows = iot23_csv_rows(MIRAI_44_1)
    malicious = [r for r in rows if "|Malicious" in r]
    benign = [r for r in rows if "|Benign|" in r]
    return {
        "malicious_only": write_csv(root / "malicious-only.csv", header, malicious),
        "benign_only": write_csv(root / "benign-only.csv", header, benign),
        "short_mixed": write_csv(root / "short-mixed.csv", header, malicious[:6] + benign[:6]),
    }


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """ONE quick training run on the bundled data, temporal split: ``(run_dir, result, seconds)``."""
    pytest.importorskip("tensorflow")
    from edgebot.train import train_run

    out = tmp_path_factory.mktemp("quick") / "run"
    started = time.monotonic()
    result = train_run([str(p) for p in BUNDLED], out, split="temporal", quick=True, seed=0, progress=False)
    return out, result, time.monotonic() - started


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Two identical small leave-out:Hakai runs (same seed): ``[(run_dir, result), (run_dir, result)]``."""
    pytest.importorskip("tensorflow")
    from edgebot.train import TrainConfig, train_run

    config = replace(TrainConfig.quick(), epochs=2, max_flows_per_capture=1200, rf_trees=20, xgb_trees=30,
                     fuser_trees=20, fuser_rf_trees=20)
    runs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"tiny{i}") / "run"
        result = train_run([str(MIRAI_34_1), str(HAKAI_8_1), str(HONEYPOT_4_1)], out, split="leave-out:Hakai",
                           window=4, seed=7, progress=False, config=config)
        runs.append((out, result))
    return runs
