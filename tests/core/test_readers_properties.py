"""Property tests: garbage inserted into real files never breaks a reader or its row accounting."""

from __future__ import annotations

import gzip
import lzma
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebot import datasets
from edgebot.errors import EdgebotError
from edgebot.readers import open_flows


# (file, number of header lines, are "#" lines comments?) for every reader; only the first
# lines of each file are used, so that an example runs in milliseconds.
CASES = {
    "zeek-23-fields": (datasets.iot23("34-1"), 8, True),
    "zeek-21-packed": (datasets.iot23("4-1"), 8, True),
    "stratosphere": (datasets.path(datasets.STRATOSPHERE_LOGS["slips-18"]), 8, True),
    "iot23-csv": (datasets.iot23("44-1"), 1, False),
    "cicflowmeter": (datasets.path(datasets.CICIDS2017_CSVS["ddos"]), 1, False),
}
HEAD_ROWS = 120


def _lines(name: str) -> tuple[list[bytes], int]:
    path, header, _ = CASES[name]
    lines = lzma.decompress(path.read_bytes()).split(b"\n")
    return lines[: header + HEAD_ROWS], header


def _json_lines() -> list[bytes]:
    import json

    from edgebot.readers import open_flows as _open

    out = []
    for record in _open(CASES["zeek-23-fields"][0]):
        out.append(json.dumps({
            "ts": record.ts, "uid": record.uid, "id.orig_h": record.orig_h, "id.orig_p": record.orig_p,
            "id.resp_h": record.resp_h, "id.resp_p": record.resp_p, "proto": record.proto,
            "duration": record.duration, "conn_state": record.conn_state, "orig_pkts": record.orig_pkts,
            "label": record.label,
        }).encode())
        if len(out) == HEAD_ROWS:
            return out
    return out


BASE = {name: _lines(name) for name in CASES}
BASE["zeek-json"] = (_json_lines(), 0)
COMMENTS = {name: case[2] for name, case in CASES.items()} | {"zeek-json": False}


def expected_data_rows(content: bytes, header_lines: int, hash_is_comment: bool) -> int:
    """Data rows by the readers' documented rule, computed independently of them.

    Lines end at ``\\n`` (trailing ``\\r`` dropped); empty lines are not rows; for Zeek TSV,
    ``#`` lines are headers; for CSV formats the first non-empty line is the header.
    """
    lines = [line.rstrip(b"\r") for line in content.split(b"\n")]
    lines = [line for line in lines if line]
    if hash_is_comment:
        return sum(1 for line in lines if not line.startswith(b"#"))
    return max(len(lines) - header_lines, 0)


# A line of garbage: text, bytes, a truncated or mutated real row, or separators only.
def garbage(real_rows: list[bytes]) -> st.SearchStrategy[bytes]:
    row = st.sampled_from(real_rows)
    return st.one_of(
        st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.binary(max_size=80),
        st.tuples(row, st.integers(0, 400)).map(lambda rc: rc[0][: rc[1]]),
        st.tuples(row, st.integers(0, 400), st.binary(min_size=1, max_size=6)).map(
            lambda rcb: rcb[0][: rcb[1]] + rcb[2] + rcb[0][rcb[1] + len(rcb[2]):]),
        st.sampled_from([b"\t" * 22, b"|" * 22, b"," * 78, b"-", b"(empty)", b"\r", b"  ", b"{}", b"[]", b"null",
                         b"NaN", b"-   Malicious   ", b"\x00" * 30]),
    )


def _check(name: str, content: bytes, header: int, compress: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("flows.gz" if compress else "flows")
        path.write_bytes(gzip.compress(content, compresslevel=1) if compress else content)
        try:
            reader = open_flows(path)
            records = list(reader)
        except EdgebotError:
            return  # a clear, deliberate error is an acceptable outcome; anything else is a bug
        assert len(records) == reader.rows_read
        assert reader.rows_read + reader.rows_skipped == expected_data_rows(content, header, COMMENTS[name])
        assert sum(reader.skipped_reasons.values()) == reader.rows_skipped
        assert len(reader.skipped_examples) == min(reader.rows_skipped, 20)


@pytest.mark.parametrize("name", sorted(BASE))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_inserted_garbage_keeps_row_accounting(name, data):
    lines, header = BASE[name]
    rows = lines[header:]
    insertions = data.draw(st.lists(st.tuples(st.integers(0, len(rows)), garbage([r for r in rows if r])), max_size=6))
    body = list(rows)
    for position, junk in sorted(insertions, key=lambda item: -item[0]):
        body.insert(position, junk)
    content = b"\n".join(lines[:header] + body)
    if data.draw(st.booleans()):  # cut the file anywhere after the header
        start = len(b"\n".join(lines[:header])) + 1
        content = content[: data.draw(st.integers(start, len(content)))]
    _check(name, content, header, compress=data.draw(st.booleans()))


@pytest.mark.parametrize("name", sorted(BASE))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_bytes_anywhere_raise_only_edgebot_errors(name, data):
    lines, header = BASE[name]
    content = b"\n".join(lines)
    position = data.draw(st.integers(0, len(content)))
    junk = data.draw(st.binary(min_size=1, max_size=200))
    mutated = content[:position] + junk + content[position:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows"
        path.write_bytes(mutated)
        try:
            reader = open_flows(path)
            list(reader)
        except EdgebotError:
            return
        assert reader.rows_read + reader.rows_skipped >= 1


@settings(max_examples=30, deadline=None)
@given(cut=st.integers(1, 5000))
def test_truncated_compressed_file_gives_edgebot_error(cut):
    lines, _ = BASE["zeek-23-fields"]
    compressed = lzma.compress(b"\n".join(lines))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.xz"
        path.write_bytes(compressed[: min(cut, len(compressed) - 1)])
        with pytest.raises(EdgebotError):
            list(open_flows(path))
