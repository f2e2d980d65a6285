"""`make demo` end to end in the quick configuration: a Mirai incident, a quiet benign capture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _replay(result, truth_name: str):
    (r,) = [r for r in result["replays"] if r["name"].startswith(truth_name)]
    return r


def test_demo_flags_the_mirai_host(demo_run):
    mirai = _replay(demo_run, "Mirai 34-1")
    assert "192.168.1.195" in mirai["summary"]["flagged_hosts"]
    assert mirai["incidents"] >= 1
    lines = [json.loads(x) for x in Path(mirai["jsonl"]).read_text().splitlines()]
    new = [m for m in lines if m.get("type") == "new"]
    assert new and new[0]["host"] == "192.168.1.195" and new[0]["score"] >= new[0]["threshold"]
    assert new[0]["peers"] and new[0]["community_id"].startswith("1:")


def test_demo_stays_quiet_on_the_benign_hue_capture(demo_run):
    hue = _replay(demo_run, "Philips Hue 4-1")
    assert hue["summary"]["flows"] > 400  # the 4-1 capture holds 452 Zeek connections
    assert hue["incidents"] == 0, hue["summary"]["flagged_hosts"]


def test_demo_summary_and_bundle(demo_run):
    printed = demo_run["printed"]
    assert "edgebot demo: summary" in printed and "192.168.1.195" in printed
    assert demo_run["bundle_bytes"] < 300 * 1024
    v = demo_run["verification"]
    assert v["float"]["f1"] - v["int8"]["f1"] <= 0.005 + 1e-9
    assert Path(demo_run["report"]).is_file()
