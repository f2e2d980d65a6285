"""Private state files: 0700 directories, 0600 files, atomic writes; the MQTT queue uses them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgebot.edge.config import AgentConfig
from edgebot.edge.sinks.mqtt import MqttConfig
from edgebot.edge.sinks.queue import DiskQueue
from edgebot.statefiles import atomic_write, atomic_write_private, open_private, prepare_private_file, private_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def open_umask():
    """A permissive umask, as on many desktops: the modes must not depend on it."""
    old = os.umask(0o002)
    yield
    os.umask(old)


def test_private_dir_creates_every_missing_level_0700(tmp_path):
    target = private_dir(tmp_path / "a" / "b" / "c")
    assert target.is_dir()
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3


def test_private_dir_narrows_only_a_directory_edgebot_owns(tmp_path, caplog):
    mine, theirs = tmp_path / "state", tmp_path / "cwd"
    for d in (mine, theirs):
        d.mkdir()
        os.chmod(d, 0o755)
    private_dir(mine, tighten=True)
    with caplog.at_level("WARNING", logger="edgebot.statefiles"):
        private_dir(theirs)
    assert mode(mine) == 0o700 and mode(theirs) == 0o755
    assert "can be entered by other users" in caplog.text
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        private_dir(tmp_path / "file")


def test_files_are_0600_and_existing_ones_are_narrowed(tmp_path):
    new = prepare_private_file(tmp_path / "new")
    old = tmp_path / "old"
    old.write_text("keep me")
    os.chmod(old, 0o644)
    prepare_private_file(old)
    assert mode(new) == 0o600 and mode(old) == 0o600 and old.read_text() == "keep me"
    with open_private(tmp_path / "log", "a") as fh:
        fh.write("line\n")
    assert mode(tmp_path / "log") == 0o600
    with pytest.raises(IsADirectoryError):
        prepare_private_file(tmp_path)
    with pytest.raises(OSError):
        prepare_private_file("/dev/null")


def test_atomic_write_replaces_whole_files_with_the_given_mode(tmp_path):
    path = tmp_path / "site" / "profile.json"
    atomic_write_private(path, b"one")
    assert path.read_bytes() == b"one" and mode(path) == 0o600 and mode(path.parent) == 0o700
    atomic_write(path, b"two", mode=0o644)
    assert path.read_bytes() == b"two" and mode(path) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["profile.json"]  # no temporary left
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "x", b"")


def test_the_queue_is_0600_in_a_0700_directory_outside_systemd(tmp_path, monkeypatch):
    """Issue 12 item 14: the queue was 0644 in a 0755 directory."""
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    state = tmp_path / "xdg" / "edgebot"
    state.mkdir(parents=True)
    os.chmod(state, 0o755)  # as an older edgebot (or systemd's StateDirectory=) left it
    config = AgentConfig(gateway_id="gw", mqtt=MqttConfig(url="mqtt://127.0.0.1:1"))
    from edgebot.edge.sinks.mqtt import MqttSink

    sink = MqttSink.from_config(config)
    queue = DiskQueue(sink.queue_path, own_dir=sink.queue_own_dir)
    for i in range(20):
        queue.put(b"incident %d" % i, "t")
    files = sorted(state.iterdir())
    assert {p.name for p in files} >= {"mqtt-queue-gw.sqlite", "mqtt-queue-gw.sqlite-wal"}
    assert all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}
    assert mode(state) == 0o700
    queue.close()


def test_an_existing_world_readable_queue_is_narrowed(tmp_path):
    path = tmp_path / "q.sqlite"
    DiskQueue(path).close()
    os.chmod(path, 0o644)
    q = DiskQueue(path)
    q.put(b"x", "t")
    assert mode(path) == 0o600 and len(q) == 1
    q.close()
