"""The detection study's --quick variant runs end to end and writes sane numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_quick_study_writes_tables_and_numbers(tmp_path):
    pytest.importorskip("tensorflow")
    md = tmp_path / "DETECTION.md"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks/detection/study.py"), "--quick",
                          "--out-md", str(md), "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) >= {"table1", "matrix", "leave_out", "incidents", "quick"}
    assert set(results["table1"]) == {"IoT-23 stratified", "IoT-23 temporal", "CICIDS2017 stratified"}
    for table in results["table1"].values():
        for model in ("random_forest", "cnn", "lstm", "cnn_lstm", "xgboost", "fused"):
            for key in ("accuracy", "precision", "recall", "f1"):
                assert 0.0 <= table["models"][model][key] <= 1.0
        assert {"float", "int8", "f1_drop"} <= set(table["verification"])
    for row in results["matrix"].values():
        for cell in row.values():
            assert cell["metric"] in ("f1", "recall", "fpr")
            assert 0.0 <= cell["int8"] <= 1.0 and 0.0 <= cell["float"] <= 1.0
    assert set(results["leave_out"]) == {"Hakai", "Mirai"}
    text = md.read_text()
    assert "## Table 1 reproduced" in text and "## Generalization matrix" in text and "## Targets" in text
    for png in ("generalization.png", "int8_vs_float.png", "table1.png"):
        assert (tmp_path / "figures" / png).stat().st_size > 10_000
