"""Tests of the sink contract (every sink), the JSON-lines sink, the registry and the on-disk queue."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edgebot.edge.config import AgentConfig
from edgebot.edge.sinks.jsonl import JsonlConfig
from edgebot.edge.sinks.mqtt import MqttConfig
from edgebot.edge.sinks.base import (
    MultiSink,
    NullSink,
    Sink,
    create_sink,
    encode_message,
    get_sink_class,
    sink_types,
    sinks_from_config,
)
from edgebot.edge.sinks.jsonl import JsonlSink
from edgebot.edge.sinks.queue import DiskQueue
from edgebot.errors import ConfigError, SinkError
from brokers import fill_disk


def incident(i: int, host: str = "192.168.1.7", kind: str = "new") -> dict:
    """An incident as the agent builds it."""
    return {
        "type": kind, "incident_id": f"inc-{i}", "gateway_id": "gw", "host": host,
        "first_seen": 1_700_000_000.0 + i, "last_seen": 1_700_000_010.0 + i, "flows": 10 + i,
        "malicious_flows": 3, "score": 0.93, "threshold": 0.5, "severity": "high",
        "model": "bundle-abc123", "peers": ["203.0.113.9:23"], "community_id": None,
    }


# -- the generic contract, over every sink ------------------------------------------------
SINK_KINDS = ["null", "jsonl-file", "jsonl-stdout", "mqtt", "multi"]


@pytest.fixture(params=SINK_KINDS)
def any_sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sink]:
    kind = request.param
    if kind == "null":
        sink: Sink = NullSink()
    elif kind == "jsonl-file":
        sink = JsonlSink(tmp_path / "out.jsonl")
    elif kind == "jsonl-stdout":
        sink = JsonlSink("-")
    elif kind == "mqtt":
        broker = request.getfixturevalue("mosquitto")
        sink = create_sink("mqtt", url=broker.url, gateway_id="contract",
                           queue_path=tmp_path / "q.sqlite", reconnect_delay=(0.1, 1.0))
    else:
        sink = MultiSink([NullSink(), JsonlSink(tmp_path / "multi.jsonl")])
    yield sink
    sink.close(timeout=1.0)


def test_contract_publish_flush_close(any_sink: Sink):
    sink = any_sink
    sink.start()
    sink.start()  # idempotent
    incidents = [incident(i) for i in range(3)]
    originals = json.loads(json.dumps(incidents))
    for item in incidents:
        sink.publish_incident(item)
    sink.publish_stats({"flows_scored": 1234, "uptime_s": 5.0})
    assert sink.flush(timeout=10.0) is True
    stats = sink.stats()
    assert {"type", "published", "queued", "dropped", "errors", "stats_published"} <= set(stats)
    assert stats["published"] == 3
    assert stats["queued"] == 0
    assert stats["dropped"] == 0 and stats["errors"] == 0
    assert incidents == originals, "a sink must not modify the caller's dicts"
    sink.check()
    sink.close(timeout=5.0)
    sink.close(timeout=5.0)  # idempotent
    with pytest.raises(SinkError, match="closed"):
        sink.publish_incident(incident(9))


def test_contract_context_manager(any_sink: Sink):
    with any_sink as sink:
        sink.publish_incident(incident(1))
        assert sink.flush(10.0)
    with pytest.raises(SinkError):
        any_sink.publish_stats({})


# -- registry -----------------------------------------------------------------------------
def test_registry_knows_every_type(tmp_path: Path):
    assert {"jsonl", "mqtt", "null"} <= set(sink_types())
    assert get_sink_class("null") is NullSink
    assert get_sink_class("jsonl") is JsonlSink
    assert get_sink_class("mqtt").__name__ == "MqttSink"
    sink = create_sink("jsonl", path=tmp_path / "x.jsonl")
    assert isinstance(sink, JsonlSink) and sink.type == "jsonl"
    with pytest.raises(ConfigError, match=r"unknown sink type 'mqt' \(did you mean 'mqtt'\?\)"):
        get_sink_class("mqt")


def test_sinks_from_config(tmp_path: Path):
    assert isinstance(sinks_from_config(AgentConfig(gateway_id="gw")), JsonlSink)
    config = AgentConfig(gateway_id="gw",
                         mqtt=MqttConfig(url="mqtt://127.0.0.1:1", queue_path=str(tmp_path / "q")),
                         jsonl=JsonlConfig(path=str(tmp_path / "o.jsonl")))
    both = sinks_from_config(config)
    assert isinstance(both, MultiSink)
    assert [s.type for s in both.sinks] == ["mqtt", "jsonl"]
    assert both.sinks[0].topic_incidents == "edgebot/gw/incidents"


def test_multisink_keeps_going_when_one_sink_breaks(tmp_path: Path):
    class Broken(NullSink):
        def publish_incident(self, incident):
            raise RuntimeError("boom")

    good = JsonlSink(tmp_path / "good.jsonl")
    with MultiSink([Broken(), good]) as multi:
        multi.publish_incident(incident(1))
        stats = multi.stats()
    assert stats["errors"] == 1
    assert stats["sinks"][1]["published"] == 1
    assert len((tmp_path / "good.jsonl").read_text().splitlines()) == 1


# -- JSON lines -----------------------------------------------------------------------------
def test_jsonl_appends_and_marks_the_kind(tmp_path: Path):
    path = tmp_path / "incidents.jsonl"
    path.write_text('{"kind":"incident","incident_id":"from-before"}\n')
    with JsonlSink(path) as sink:
        sink.publish_incident(incident(1))
        sink.publish_stats({"flows_scored": 7, "kind": "ignored"})
        # line-buffered: the line is on disk before close
        assert len(path.read_text().splitlines()) == 3
    with JsonlSink(path) as sink:
        sink.publish_incident(incident(2, kind="end"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["incident", "incident", "stats", "incident"]
    assert lines[0]["incident_id"] == "from-before"          # never truncated
    assert lines[1] == {"kind": "incident", **incident(1)}
    assert list(lines[1])[0] == "kind"
    assert lines[2] == {"kind": "stats", "flows_scored": 7}
    assert lines[3]["type"] == "end"


def test_jsonl_stdout(capsys: pytest.CaptureFixture[str]):
    with JsonlSink("-") as sink:
        sink.publish_incident(incident(1))
        sink.publish_stats({"uptime_s": 1})
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["kind"] for line in out] == ["incident", "stats"]
    assert not sys.stdout.closed


def test_jsonl_missing_directory_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SinkError, match=r"cannot open the JSON lines file .*no-dir.*create its directory"):
        JsonlSink(tmp_path / "no-dir" / "x.jsonl").start()


@pytest.mark.skipif(not Path(os.devnull).with_name("full").exists(), reason="no /dev/full")
def test_jsonl_write_errors_are_counted_not_raised():
    with JsonlSink(Path(os.devnull).with_name("full")) as sink:
        for i in range(3):
            sink.publish_incident(incident(i))
        stats = sink.stats()
    assert stats["published"] == 0
    assert stats["errors"] == 3 and stats["dropped"] == 3


def test_encode_message_handles_numpy_and_nan():
    text = encode_message({"score": np.float32(0.5), "flows": np.int64(3), "v": np.arange(2),
                           "bad": math.nan, "inf": [math.inf]})
    assert json.loads(text) == {"score": 0.5, "flows": 3, "v": [0, 1], "bad": None, "inf": [None]}
    assert "\n" not in text


# -- the on-disk queue ------------------------------------------------------------------------
def test_queue_is_fifo_with_ack(tmp_path: Path):
    with DiskQueue(tmp_path / "q.sqlite") as q:
        ids = [q.put(f"m{i}", "t/a") for i in range(5)]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert len(q) == 5
        head = q.peek(2)
        assert [m.payload for m in head] == [b"m0", b"m1"]
        assert [m.payload for m in q.peek(10, after_id=ids[2])] == [b"m3", b"m4"]
        assert q.ack([ids[0], ids[1], 999_999]) == 2
        assert len(q) == 3
        assert [m.payload for m in q.peek(10)] == [b"m2", b"m3", b"m4"]
        q.put(b"\x00binary", "t/b", qos=0, retain=True)
        last = q.peek(10)[-1]
        assert (last.payload, last.topic, last.qos, last.retain) == (b"\x00binary", "t/b", 0, True)
        assert q.bytes == sum(len(m.payload) for m in q.peek(100))


def test_queue_drops_the_oldest_when_full_and_counts(tmp_path: Path):
    with DiskQueue(tmp_path / "q.sqlite", max_messages=5) as q:
        for i in range(8):
            assert q.put(f"m{i}", "t") is not None
        assert len(q) == 5
        assert [m.payload for m in q.peek(10)] == [b"m3", b"m4", b"m5", b"m6", b"m7"]
        assert q.dropped == 3 and q.stats()["dropped_overflow"] == 3


def test_queue_byte_bound(tmp_path: Path):
    with DiskQueue(tmp_path / "q.sqlite", max_messages=100, max_bytes=100) as q:
        for i in range(4):
            q.put(b"%d" % i * 40, "t")
        assert len(q) == 2 and q.bytes == 80
        assert q.peek(1)[0].payload == b"2" * 40
        assert q.put(b"x" * 101, "t") is None        # larger than the bound on its own
        assert q.dropped == 3 and len(q) == 2


def test_queue_ids_are_never_reused(tmp_path: Path):
    path = tmp_path / "q.sqlite"
    with DiskQueue(path) as q:
        first = q.put("a", "t")
        q.ack([first])
        second = q.put("b", "t")
        assert second > first
    with DiskQueue(path) as q:
        q.ack([second])
        assert q.put("c", "t") > second


def test_queue_survives_a_killed_process(tmp_path: Path):
    """Messages put before a SIGKILL (no close, no checkpoint) are there after a restart."""
    path = tmp_path / "q.sqlite"
    script = (
        "import os, signal, sys\n"
        "from edgebot.edge.sinks.queue import DiskQueue\n"
        "q = DiskQueue(sys.argv[1])\n"
        "for i in range(50):\n"
        "    q.put('msg-%d' % i, 'edgebot/gw/incidents')\n"
        "q.ack([m.id for m in q.peek(10)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()
    with DiskQueue(path) as q:
        assert len(q) == 40
        assert [m.payload.decode() for m in q.peek(100)] == [f"msg-{i}" for i in range(10, 50)]


def test_queue_full_database_drops_new_messages_and_keeps_going(tmp_path: Path, caplog):
    """A full database (PRAGMA max_page_count) behaves like a full disk: count, log, go on."""
    with DiskQueue(tmp_path / "q.sqlite", max_messages=100_000, max_db_pages=8) as q:
        accepted = 0
        for _ in range(200):
            if q.put(b"x" * 500, "t") is not None:
                accepted += 1
        stats = q.stats()
        assert 0 < accepted < 200
        assert stats["dropped_disk_full"] == 200 - accepted == q.dropped
        assert len(q) == accepted
        assert sum("database is full" in r.message or "full" in r.message for r in caplog.records) == 1
        # acknowledging frees room: new messages are accepted again, in order
        q.ack([m.id for m in q.peek(accepted)])
        assert q.put(b"after", "t") is not None
        assert [m.payload for m in q.peek(5)] == [b"after"]


def test_queue_on_a_really_full_disk(tiny_tmpfs: Path):
    """Another process fills the disk: puts are dropped and counted, nothing raises, and the
    queue works again once space is freed."""
    with DiskQueue(tiny_tmpfs / "q.sqlite", max_messages=100_000) as q:
        for i in range(20):
            assert q.put(f"before-{i}", "t") is not None
        filler = fill_disk(tiny_tmpfs)
        results = [q.put(os.urandom(1000), "t") for _ in range(50)]
        assert results == [None] * 50
        assert q.stats()["dropped_disk_full"] == 50 and q.dropped == 50
        q.ack([m.id for m in q.peek(5)])       # may or may not succeed on a full disk; no raise
        filler.unlink()
        assert q.put(b"after", "t") is not None
        left = [m.payload for m in q.peek(100)]
        assert left[-1] == b"after"
        before = [f"before-{i}".encode() for i in range(20)]
        assert left[:-1] == before[20 - (len(left) - 1):]  # in order; at most the 5 acked are gone
        assert q.ack([m.id for m in q.peek(100)]) == len(left)
        assert len(q) == 0


def test_queue_concurrent_producers(tmp_path: Path):
    with DiskQueue(tmp_path / "q.sqlite") as q:
        def produce(tag: str) -> None:
            for i in range(200):
                q.put(f"{tag}{i}", "t")

        threads = [threading.Thread(target=produce, args=(tag,)) for tag in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        messages = q.peek(1000)
        assert len(q) == len(messages) == 400
        for tag in "ab":  # each producer's messages keep their order
            mine = [m.payload.decode() for m in messages if m.payload.startswith(tag.encode())]
            assert mine == [f"{tag}{i}" for i in range(200)]


class QueueModel(RuleBasedStateMachine):
    """The queue behaves like a bounded deque that drops its oldest, across reopenings."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="edgebot-queue-")
        self.path = Path(self.dir) / "q.sqlite"
        self.limit = 7
        self.queue = DiskQueue(self.path, max_messages=self.limit)
        self.model: deque[tuple[int, bytes]] = deque()
        self.dropped = 0

    @rule(payload=st.binary(max_size=40))
    def put(self, payload: bytes) -> None:
        new_id = self.queue.put(payload, "t")
        assert new_id is not None
        assert not self.model or new_id > self.model[-1][0]
        self.model.append((new_id, payload))
        if len(self.model) > self.limit:
            self.model.popleft()
            self.dropped += 1

    @rule(n=st.integers(0, 4))
    def ack_head(self, n: int) -> None:
        ids = [m.id for m in self.queue.peek(n)]
        assert self.queue.ack(ids) == len(ids)
        for _ in ids:
            self.model.popleft()

    @rule()
    def reopen(self) -> None:
        self.queue.close()
        self.queue = DiskQueue(self.path, max_messages=self.limit)
        self.queue.dropped = self.dropped  # counters are per process; carry the model's over

    @invariant()
    def same_content(self) -> None:
        assert len(self.queue) == len(self.model)
        assert [(m.id, m.payload) for m in self.queue.peek(100)] == list(self.model)
        assert self.queue.dropped == self.dropped

    def teardown(self) -> None:
        self.queue.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
