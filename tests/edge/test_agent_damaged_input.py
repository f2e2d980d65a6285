"""The agent on a capture that breaks part-way: a one-line error, and nothing metered before it is lost."""

from __future__ import annotations

import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_core import PCAP_MIRAI

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _run(bundle: Path, pcap: Path, jsonl: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(bundle), "--pcap", str(pcap),
                           "--jsonl", str(jsonl)], capture_output=True, text=True, timeout=300)


def test_corrupt_gzip_member_keeps_every_incident_of_the_intact_part(demo_bundle, tmp_path):  # noqa: F811
    raw = lzma.decompress(PCAP_MIRAI.read_bytes())
    pos = 24
    while pos < len(raw) * 0.8:  # cut at a record boundary 80 % into the capture
        pos += 16 + int.from_bytes(raw[pos + 8:pos + 12], "little")
    intact = tmp_path / "intact.pcap"
    intact.write_bytes(raw[:pos])
    tail = gzip.compress(raw[pos:], mtime=0)
    broken = tmp_path / "broken.pcap.gz"
    broken.write_bytes(gzip.compress(raw[:pos], mtime=0) + tail[:20] + bytes(b ^ 0x5A for b in tail[20:80]) + tail[80:])

    res = _run(demo_bundle, broken, tmp_path / "broken.jsonl")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"Error: {broken}: compressed data is corrupt")
    ref = _run(demo_bundle, intact, tmp_path / "intact.jsonl")
    assert ref.returncode == 0, ref.stderr
    got = [json.loads(line) for line in (tmp_path / "broken.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (tmp_path / "intact.jsonl").read_text().splitlines()]
    # Same messages as a clean run over the intact part, except the "end" that closes each
    # incident when a source ends normally.
    assert [m for m in got if m["type"] != "end"] == [m for m in want if m["type"] != "end"]
    assert any(m["type"] == "new" and m["host"] == "192.168.1.195" for m in got)
