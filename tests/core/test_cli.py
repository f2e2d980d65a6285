"""The command line: every command's help reads well, errors are one line, --version works."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgebot import __version__
from edgebot.cli import main

COMMANDS = [["data", "summary"], ["train"], ["convert"], ["eval"], ["run"], ["bench"], ["keygen"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_help_has_an_example_and_no_truncated_summary(cmd):
    res = CliRunner().invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example:" in res.output and "edgebot " + cmd[0] in res.output


def test_top_level_help_lists_every_command_in_full():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for name in ("train", "convert", "eval", "run", "bench", "data", "keygen"):
        assert f"  {name} " in res.output
    commands = res.output.split("Commands:")[1]
    assert "..." not in commands  # short help fits; nothing cut off


def test_run_help_groups_options():
    res = CliRunner().invoke(main, ["run", "--help"])
    for heading in ("Source (exactly one):", "Alerts:", "Configuration:"):
        assert heading in res.output


def test_version():
    res = CliRunner().invoke(main, ["--version"])
    assert __version__ in res.output


def test_bad_input_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\nworld\n")
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "data", "summary", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1
    assert "not a Zeek conn log or CICFlowMeter CSV" in res.stderr


def test_an_unwritable_summary_json_is_refused_before_the_run(tmp_path):
    """Issue 12 item 10: the path was only tried after the whole run, then a traceback."""
    from conftest_bundle import write_fake_bundle

    bundle = write_fake_bundle(tmp_path / "bundle")  # placeholder models: a run would fail differently
    (tmp_path / "cap.pcap").write_bytes(b"")
    for target, why in ((tmp_path / "missing" / "s.json", "no such directory"),
                        (tmp_path / "cap.pcap" / "s.json", "no such directory")):
        res = subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(bundle), "--pcap",
                              str(tmp_path / "cap.pcap"), "--summary-json", str(target)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        assert res.stderr.startswith("Error: --summary-json: ") and res.stderr.count("\n") == 1
        assert why in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(bundle), "--pcap",
                          str(tmp_path / "cap.pcap"), "--summary-json", str(tmp_path / "missing" / "s.json"),
                          "--check-config"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "--summary-json: no such directory" in res.stderr


def test_the_summary_json_is_written_atomically(tmp_path):
    from edgebot.cli import _write_summary_json

    target = tmp_path / "summary.json"
    target.write_text("old")
    _write_summary_json(str(target), {"flows": 3, "incidents": {"new": 1}})
    assert json.loads(target.read_text()) == {"flows": 3, "incidents": {"new": 1}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary file left
