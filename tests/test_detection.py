"""The detection study (benchmarks/detection/run.py) end to end in its --quick configuration."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "detection" / "run.py"
TABLE1 = ("IoT-23 stratified (paper protocol)", "IoT-23 temporal", "CICIDS2017 stratified (paper protocol)")
MODELS = ("random_forest", "cnn", "lstm", "cnn_lstm", "xgboost", "fused")
RATES = ("accuracy", "precision", "recall", "f1", "fpr")


def _fractions(obj, where: str = "") -> list[tuple[str, float]]:
    """Every (path, value) of a rate-like key (accuracy/precision/recall/f1/fpr/int8/float) in a nested dict."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in RATES + ("int8", "float") and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((f"{where}/{k}", float(v)))
            else:
                out.extend(_fractions(v, f"{where}/{k}"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_fractions(v, f"{where}[{i}]"))
    return out


@pytest.mark.tf
@pytest.mark.slow
def test_quick_study_writes_every_table(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path), "--seed", "0"],
                          capture_output=True, text=True, timeout=290, cwd=REPO)
    seconds = time.monotonic() - t0
    log.info("quick detection study: %.0f s", seconds)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 290

    res = json.loads((tmp_path / "detection" / "results.json").read_text())
    for key in ("command", "quick", "seed", "date", "table1", "matrix", "incidents", "row_runs", "targets", "seconds"):
        assert key in res, key
    assert res["quick"] is True and res["seed"] == 0
    for name in TABLE1:
        entry = res["table1"][name]
        assert "error" not in entry, entry.get("error")
        for m in MODELS:
            assert set(RATES) <= set(entry["models"][m])
        assert set(entry["int8_vs_float"]) >= {"float", "int8", "f1_drop", "refused"}
    assert res["table1"]["IoT-23 stratified (paper protocol)"]["leaky"] is True
    assert res["matrix"], "no generalization row"
    for row, cells in res["matrix"].items():
        assert "Mirai 34-1" in cells and "family: Hakai" in cells
        for col, c in cells.items():
            assert c["metric"] in ("f1", "recall", "fpr"), (row, col)
            assert c["flows"] > 0, (row, col)
    for row, caps in res["incidents"].items():
        for cap, v in caps.items():
            for kind in ("int8", "float"):
                assert v[kind]["days"] > 0 and v[kind]["devices"] >= 1
                assert v[kind]["per_device_per_day"] >= 0
    numbers = _fractions({k: res[k] for k in ("table1", "matrix", "row_runs")})
    assert len(numbers) > 100
    for where, x in numbers:
        assert math.isfinite(x) and 0.0 <= x <= 1.0, (where, x)
    assert all({"target", "value", "goal", "met"} <= set(t) for t in res["targets"])

    md = (tmp_path / "DETECTION.md").read_text()
    for heading in ("## Targets", "## Table 1 reproduced", "## Generalization matrix",
                    "## False incidents per benign device per day", "## int8 bundle vs float", "## What we learn"):
        assert heading in md
    assert "benchmarks/detection/run.py --quick" in md
    for png in ("generalization.png", "table1.png", "int8_vs_float.png"):
        assert (tmp_path / "detection" / "figures" / png).stat().st_size > 1000
