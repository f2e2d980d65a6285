"""The data summary (what `edgebot data summary` prints) on the real bundled data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgebot import datasets
from edgebot.errors import DataFormatError
from edgebot.readers import format_summary, summarize

DATA = datasets.data_root()
# data/benign_devices/ (derived flow records) is summarized in tests/core/test_datasets.py
FLOW_FILES = sorted(p for p in DATA.rglob("*.xz") if "pcaps" not in p.parts and "benign_devices" not in p.parts)
FILE_KEYS = {"path", "format", "rows", "skipped", "skipped_reasons", "labels", "families", "first_ts", "last_ts", "hosts"}


@pytest.fixture(scope="module")
def summary():
    return summarize(FLOW_FILES)


def test_totals_over_all_bundled_data(summary):
    assert len(summary["files"]) == 11
    # 23145 + 452 + 1374 + 10403 + 237 + 5663 + 5347 + 9048 + 766 + 9998 + 6311
    assert summary["rows"] == 72744 and summary["skipped"] == 0
    assert summary["labels"] == {"benign": 24520, "malicious": 47798, "background": 423, "unknown": 3}
    assert summary["families"] == {
        "Mirai": 21222 + 26, "External-Attack-to-Device": 4201 + 3373 + 3951, "Hakai": 8222, "WebAttack": 2180,
        "Bot": 1966, "DoS": 952, "RemcosRAT": 719, "BruteForce": 553, "PortScan": 397, "Infiltration": 36,
    }
    assert summary["time_span"]["first"] == pytest.approx(1533042911.474174)  # 8-1, 2018-07-31
    assert summary["time_span"]["last"] > 1677024000  # slips, 2023-02-22
    json.dumps(summary)  # plain JSON, for --json


def test_per_file_entries(summary):
    by_name = {Path(entry["path"]).name: entry for entry in summary["files"]}
    assert all(set(entry) >= FILE_KEYS for entry in summary["files"])
    mirai = by_name["CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz"]
    assert (mirai["rows"], mirai["format"], mirai["hosts"]) == (23145, "iot23-labeled", 2)
    assert mirai["labels"] == {"benign": 1923, "malicious": 21222}
    assert mirai["detailed_labels"] == {"DDoS": 14394, "C&C": 6706, "PartOfAHorizontalPortScan": 122}
    assert mirai["last_ts"] - mirai["first_ts"] == pytest.approx(86397, abs=60)  # the README's 24 h
    hue = by_name["CTU-Honeypot-Capture-4-1.conn.log.labeled.xz"]
    assert hue["labels"] == {"benign": 452, "malicious": 0} and hue["families"] == {} and hue["hosts"] == 1
    cic = by_name["WesternOC2_CICIDS2017_sample_subset6311.csv.xz"]
    assert cic["hosts"] == 0 and cic["first_ts"] is None and cic["labels"] == {"benign": 227, "malicious": 6084}


def test_cic_only_summary_has_no_time_span():
    summary = summarize(datasets.path(datasets.CICIDS2017_CSVS["ddos"]))
    assert summary["time_span"] is None and summary["hosts"] == 0
    assert summary["labels"] == {"benign": 9998, "malicious": 0}


def test_summary_counts_skipped_rows_and_strict_raises(tmp_path):
    import lzma

    text = lzma.decompress(datasets.iot23("5-1").read_bytes())
    path = tmp_path / "five.log"
    path.write_bytes(text + b"1.0\tbroken\n")
    summary = summarize([path])
    entry = summary["files"][0]
    assert (entry["rows"], entry["skipped"]) == (1374, 1)
    assert entry["skipped_reasons"] == {"wrong number of fields": 1}
    assert "skipped: wrong number of fields 1" in format_summary(summary)
    with pytest.raises(DataFormatError, match=r"five\.log:\d+: 2 fields, expected 21"):
        summarize([path], strict=True)


def test_format_summary_is_readable(summary):
    text = format_summary(summary)
    assert "format iot23-labeled, scenario 34-1, 23,145 rows, 0 skipped, 2 hosts" in text
    assert "families: Mirai 21,222" in text
    assert "detailed: C&C 14, C&C-FileDownload 11, DDoS 1" in text
    assert text.splitlines()[-3].startswith("total: 11 files, 72,744 rows, 0 skipped")
