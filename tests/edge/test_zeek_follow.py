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


# -- bounds and refusals of the follower (issue 12 items 11 and 13) ---------------------------

CAP = 1 << 20


def _write_long_line(fh, chars: int, piece: str = "x\t") -> None:
    block = piece * (256 * 1024 // len(piece))
    for _ in range(chars // len(block)):
        fh.write(block)


def test_follower_skips_a_20_mb_line_without_holding_it(tmp_path, caplog):
    header, rows = _lines()
    log = tmp_path / "conn.log"
    with open(log, "w") as fh:
        fh.write("\n".join(header + rows[:5]) + "\n")
        _write_long_line(fh, 20 * 1024 * 1024)
        fh.write("\n" + "\n".join(rows[5:10]) + "\n")
    long_line_no = len(header) + 6
    caplog.set_level("WARNING", logger="edgebot.edge.sources.zeeklog")
    src = create_source("zeek-log", path=str(log), follow=False)
    flows = [f for f in src if f is not None]
    stats = src.stats()
    assert len(flows) == 10 and [f.uid for f in flows] == [r.split("\t")[1] for r in rows[:10]]
    assert stats["lines_too_long"] == 1 and stats["rows_skipped"] == 1
    assert 0 < stats["line_buffer_peak"] <= CAP + 1 == stats["max_line_chars"] + 1
    assert any(f"conn.log:{long_line_no}: skipped a line longer than {CAP} characters" in r.getMessage()
               for r in caplog.records)


def test_unterminated_partial_line_stays_under_the_cap(tmp_path):
    header, rows = _lines()
    log = tmp_path / "conn.log"
    log.write_text("\n".join(header) + "\n" + rows[0] + "\n")
    src = create_source("zeek-log", path=str(log), follow=True, poll_s=0.01)
    got, peaks = [], []

    def consume():
        for item in src:
            peaks.append(src.line_buffer_peak)
            if item is not None:
                got.append(item)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    with open(log, "a") as fh:  # a writer that never ends its line: 3 MiB in 128 KiB pieces
        for _ in range(24):
            fh.write("y" * (128 * 1024))
            fh.flush()
            time.sleep(0.005)
        time.sleep(0.2)
        assert src.line_buffer_peak <= CAP + 1
        fh.write("\n" + rows[1] + "\n")  # the line ends at last; the next row is read normally
    deadline = time.time() + 10
    while len(got) < 2 and time.time() < deadline:
        time.sleep(0.02)
    src.stop()
    t.join(5)
    assert [f.uid for f in got] == [rows[0].split("\t")[1], rows[1].split("\t")[1]]
    assert src.stats()["lines_too_long"] == 1 and max(peaks) <= CAP + 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("content,match", [
    ("hello\nthis is a shopping list, not a log\n", "not a Zeek conn log"),
    ("just some words without a newline", "not a Zeek conn log"),
    ("#separator \\x09\n#set_separator\t,\n#path\tdns\n", "'dns' log"),
    ('{"query": "example.com", "qtype": 1}\n', "conn log keys"),
])
def test_small_non_log_is_a_one_line_error_not_a_silent_wait(tmp_path, content, match):
    path = tmp_path / "notes.log"
    path.write_text(content)
    assert path.stat().st_size < 4096
    src = create_source("zeek-log", path=str(path), follow=True, poll_s=0.01)
    items = iter(src)
    with pytest.raises(SourceError, match=match) as err:
        for _ in range(50):  # a follower that waits would yield ticks here instead
            next(items)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("start,why", [
    ("", "is empty"),
    ("#separator \\x09\n#set_separator\t,\n#path\tconn\n", "without its #fields line yet"),
    ("#separator \\x09\n#set_sep", "without its #fields line yet"),
    ("#separ", "no complete first line yet"),
])
def test_young_log_is_waited_for_with_one_warning(tmp_path, caplog, start, why):
    header, rows = _lines()
    log = tmp_path / "conn.log"
    log.write_text(start)
    caplog.set_level("WARNING", logger="edgebot.edge.sources.zeeklog")
    src = create_source("zeek-log", path=str(log), follow=True, poll_s=0.01)
    items = iter(src)
    assert [next(items) for _ in range(5)] == [None] * 5  # still waiting, no error
    waits = [r.getMessage() for r in caplog.records if "waiting for it" in r.getMessage()]
    assert len(waits) == 1 and why in waits[0] and str(log) in waits[0]
    log.write_text("\n".join(header) + "\n" + rows[0] + "\n")  # Zeek finishes the header
    flow = next(f for f in items if f is not None)
    assert flow.uid == rows[0].split("\t")[1]
    src.stop()
