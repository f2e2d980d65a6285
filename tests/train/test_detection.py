"""The detection study (benchmarks/detection/run.py) on a subset: the issue-11 tables with a real bundle.

The whole study trains a dozen models (``make detection-quick``, minutes); here the ``delays`` and
``site`` parts run with the session's real int8 bundle instead of training, and ``--render-only``
re-renders the committed results (every section, the leave-device-out and family tables included).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "detection" / "run.py"
RESULTS = REPO / "benchmarks" / "detection" / "results.json"
INFECTED = ("Mirai 34-1 (log)", "Mirai 34-1 (pcap)", "Mirai 44-1", "Hakai 8-1", "RemcosRAT (slips-test18)")
LONG_BENIGN = ("Strato 008", "Strato 010", "Strato 011", "CTU-SME-11")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=170, cwd=REPO)


@pytest.mark.tf
@pytest.mark.slow
def test_delays_and_site_learning_tables(tmp_path: Path, int8_bundle: Path) -> None:  # noqa: F811
    proc = _run("--quick", "--parts", "delays,site", "--bundle", str(int8_bundle), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "detection" / "results.json").read_text())
    assert res["parts"] == ["site", "delays"] and res["table1"] == {} and res["matrix"] == {}

    assert set(res["delays"]) == set(INFECTED)
    for name, cap in res["delays"].items():
        assert cap["hosts"], f"{name}: no infected host found"
        for h in cap["hosts"].values():
            assert h["malicious_flows"] > 0 and 0 <= h["flagged_malicious"] <= h["malicious_flows"]
            for mode in ("no_learning", "learning"):
                v = h[mode]
                assert v["detected"] == (v["delay_s"] is not None)
                assert v["delay_s"] is None or v["delay_s"] >= 0
    pcap = res["delays"]["Mirai 34-1 (pcap)"]
    assert pcap["labeled_by_match"] == pcap["flows"] > 1000  # every metered flow found in the 34-1 log
    for name in ("Mirai 34-1 (log)", "Mirai 34-1 (pcap)"):
        mirai = res["delays"][name]["hosts"]["192.168.1.195"]
        assert mirai["no_learning"]["detected"] and mirai["learning"]["detected"], name
    summary = res["delays_summary"]
    assert summary["infected_hosts"] == sum(len(c["hosts"]) for c in res["delays"].values())
    assert summary["no_learning"]["detected"] + len(summary["no_learning"]["missed"]) == summary["infected_hosts"]

    assert set(res["site_learning"]) == set(LONG_BENIGN)
    for name, cap in res["site_learning"].items():
        assert cap["days"] > 0.5 and cap["days_after_learning"] > 0, name  # longer than the 6 h of learning
        (model,) = cap["models"].values()
        assert model["benign_devices"] == 1, name
        nl, le = model["no_learning"], model["learning"]
        assert le["during_learning"] + le["after_learning"] == le["false_incidents"]
        assert math.isfinite(nl["per_device_per_day"]) and le["per_device_per_day_after"] >= 0

    names = [t["target"] for t in res["targets"]]
    assert any(n.startswith("every infected host raises an incident") for n in names)
    assert sum(n.startswith("0 false incidents per device per day after learning") for n in names) == 4
    md = (tmp_path / "DETECTION.md").read_text()
    assert "## Detection delay of every infected host" in md and "## False incidents per device per day, without" in md
    assert "## Table 1 reproduced" not in md  # parts that did not run leave no empty section


def test_bad_parts_is_a_usage_error(tmp_path: Path) -> None:
    proc = _run("--parts", "delays,nonsense", "--out", str(tmp_path))
    assert proc.returncode == 2 and "nonsense" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("--bundle", str(tmp_path), "--out", str(tmp_path))
    assert proc.returncode == 2 and "not a bundle" in proc.stderr


def test_render_only_writes_every_section_of_the_committed_results(tmp_path: Path) -> None:
    det = tmp_path / "detection"
    det.mkdir()
    shutil.copy(RESULTS, det / "results.json")
    res = json.loads(RESULTS.read_text())
    proc = _run("--render-only", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "DETECTION.md").read_text()
    assert res["command"] in md
    if "ldo" in res.get("parts", []):
        ldo = res["leave_device_out"]
        assert ldo["totals"]["devices"] == ldo["totals"]["registered_devices"] == 44
        assert "## Leave-device-out" in md
        for device in ldo["devices"]:
            assert f"| {device} |" in md
    if "default" in res.get("parts", []):
        assert "## Per-family recall and FPR, before and after" in md
    for heading in ("## Targets", "## What we learn"):
        assert heading in md
