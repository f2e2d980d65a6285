"""Following a growing Zeek conn.log across rotation, and reading flow files once (--csv)."""

from __future__ import annotations

import lzma
import threading
import time

import pytest

from edgebot.edge.sources import create_source
from edgebot.errors import SourceError
from fixtures_core import HONEYPOT_4_1, MIRAI_44_1


def _lines():
    text = lzma.decompress(HONEYPOT_4_1.read_bytes()).decode()
    header = [ln for ln in text.splitlines() if ln.startswith("#") and not ln.startswith("#close")]
    rows = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return header, rows


def test_follow_growing_log_with_partial_lines_and_rotation(tmp_path):
    header, rows = _lines()
    log = tmp_path / "conn.log"
    log.write_text("\n".join(header) + "\n")
    src = create_source("zeek-log", path=str(log), follow=True, poll_s=0.02)
    got = []

    def consume():
        for item in src:
            if item is not None:
                got.append(item)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    with open(log, "a") as fh:  # rows arrive in pieces, a line split across two writes
        for row in rows[:100]:
            fh.write(row[:10])
            fh.flush()
            fh.write(row[10:] + "\n")
        fh.flush()
    time.sleep(0.3)
    log.rename(tmp_path / "conn.2018-10-25.log")  # Zeek rotates: rename, then a fresh file with headers
    log.write_text("\n".join(header) + "\n" + "\n".join(rows[100:]) + "\n")
    deadline = time.time() + 10
    while len(got) < len(rows) and time.time() < deadline:
        time.sleep(0.05)
    src.stop()
    t.join(5)
    assert len(got) == len(rows) == 452
    assert src.stats()["rotations"] == 1 and src.stats()["rows_skipped"] == 0
    assert got[0].orig_h == "192.168.1.132"


def test_follow_counts_a_malformed_row_and_goes_on(tmp_path):
    header, rows = _lines()
    log = tmp_path / "conn.log"
    log.write_text("\n".join(header) + "\n" + rows[0] + "\nthis\tis\tbroken\n" + rows[1] + "\n")
    src = create_source("zeek-log", path=str(log), follow=False)
    flows = [f for f in src if f is not None]
    assert len(flows) == 2 and src.stats()["rows_skipped"] == 1


def test_csv_source_reads_a_flow_file_once():
    src = create_source("csv", path=str(MIRAI_44_1))
    flows = list(src)
    assert len(flows) == 237 and src.stats()["flows"] == 237


def test_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError):
        create_source("csv", path=str(tmp_path / "nope.csv"))
    with pytest.raises(SourceError):
        create_source("zeek-log", path=str(tmp_path / "nope.log"), follow=False)


def test_csv_source_with_a_corrupt_gzip_member_delivers_its_flows_then_errors(tmp_path):
    import gzip

    from edgebot.errors import DataFormatError

    header, rows = _lines()
    rows = rows * 2  # the first member must outgrow the format sniffer's 64 KiB
    first = ("\n".join(header) + "\n" + "\n".join(rows[:600]) + "\n").encode()
    assert len(first) > 64 * 1024
    second = gzip.compress(("\n".join(rows[600:]) + "\n").encode(), mtime=0)
    path = tmp_path / "conn.log.gz"
    path.write_bytes(gzip.compress(first, mtime=0) + second[:10] + bytes(b ^ 0x5A for b in second[10:40]) + second[40:])
    src = create_source("csv", path=str(path))
    items = []
    with pytest.raises(DataFormatError) as err:
        for item in src:
            items.append(item)
    assert str(err.value).startswith(f"{path}: compressed data is corrupt") and "\n" not in str(err.value)
    assert items[-1] is None and len([i for i in items if i is not None]) == 600
    assert src.stats()["damaged"] == 1
