"""The gateway agent end to end: real pcaps, the real int8 bundle, a real Mosquitto broker; its end of life
(refused credentials exit 2, signals end incidents and stop the drain)."""

from __future__ import annotations

import json
import lzma
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fixtures_core import HONEYPOT_4_1, MIRAI_34_1, PCAP_HUE, PCAP_MIRAI

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.broker]

GW = "test-gw"


def _cfg(bundle, **overrides):
    from edgebot.edge.config import load_config

    base = {"bundle": str(bundle), "gateway_id": GW}
    base.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(None, base).validate()


def _incidents(collector, timeout=10.0, count=1):
    topic = f"edgebot/{GW}/incidents"
    got = collector.wait_for(topic, count=count, timeout=timeout)
    return [m.json() for m in got]


def test_mirai_replay_raises_an_incident_a_subscriber_receives(demo_bundle, mosquitto, mqtt_collector, tmp_path):
    from edgebot.edge.agent import run_agent

    sub = mqtt_collector(mosquitto, [f"edgebot/{GW}/#"])
    summary = run_agent(_cfg(demo_bundle, source__pcap=str(PCAP_MIRAI), mqtt__url=mosquitto.url,
                             mqtt__queue_path=str(tmp_path / "q.sqlite")))
    published = summary.sink["published"]
    msgs = _incidents(sub, count=published, timeout=30)
    ids = {m["message_id"] for m in msgs}
    assert len(ids) == published  # every incident message arrived (duplicates allowed, none lost)
    new = [m for m in msgs if m["type"] == "new"]
    # the infected host and no other (its incident may end in a quiet spell and open again)
    assert new and {m["host"] for m in new} == {"192.168.1.195"}
    assert new[0]["gateway_id"] == GW and new[0]["model"]["id"]
    status = sub.wait_for(f"edgebot/{GW}/status", predicate=lambda ms: ms and ms[-1].text == "offline")
    assert status[-1].text == "offline"


def test_benign_hue_replay_raises_nothing(demo_bundle, mosquitto, mqtt_collector, tmp_path):
    from edgebot.edge.agent import run_agent

    sub = mqtt_collector(mosquitto, [f"edgebot/{GW}/#"])
    summary = run_agent(_cfg(demo_bundle, source__pcap=str(PCAP_HUE), mqtt__url=mosquitto.url,
                             mqtt__queue_path=str(tmp_path / "q.sqlite")))
    assert summary.flows > 400
    sub.wait_for(f"edgebot/{GW}/status", predicate=lambda ms: ms and ms[-1].text == "offline")
    assert sub.on(f"edgebot/{GW}/incidents") == []
    assert summary.incidents.get("new", 0) == 0


class _BrokerOutage:
    """Wraps a source: stops the broker after ``down_at`` flows, starts it again after ``up_at``."""

    def __init__(self, source, broker, down_at: int, up_at: int):
        self.source, self.broker, self.down_at, self.up_at = source, broker, down_at, up_at
        self.description = "outage wrapper"
        self.seen = 0

    def __iter__(self):
        for item in self.source:
            if item is not None:
                self.seen += 1
                if self.seen == self.down_at:
                    self.broker.stop()
                elif self.seen == self.up_at:
                    time.sleep(1.0)  # the agent keeps scoring into its disk queue meanwhile
                    self.broker.restart()
            yield item

    def stats(self):
        return self.source.stats()

    def close(self):
        self.source.close()


def test_broker_outage_mid_replay_loses_no_incident(demo_bundle, mosquitto, mqtt_collector, tmp_path):
    from edgebot.edge.agent import Agent
    from edgebot.edge.sources import build_source

    sub = mqtt_collector(mosquitto, [f"edgebot/{GW}/incidents"])
    cfg = _cfg(demo_bundle, source__pcap=str(PCAP_MIRAI), mqtt__url=mosquitto.url,
               mqtt__queue_path=str(tmp_path / "q.sqlite"))
    agent = Agent(cfg, source=_BrokerOutage(build_source(cfg), mosquitto, down_at=1500, up_at=4000))
    agent.start()
    summary = agent.run()
    published = summary.sink["published"]
    assert summary.sink.get("dropped", 0) == 0
    assert published == sum(summary.incidents.values())  # every message the tracker made was acknowledged
    msgs = _incidents(sub, count=published, timeout=60)
    received = {m["message_id"] for m in msgs}
    assert len(received) == published, f"published {published}, received {len(received)} distinct"


def test_agent_never_imports_the_training_stack(demo_bundle, tmp_path):
    """Run the CLI in a process where TensorFlow, Keras, scikit-learn and pandas cannot be imported."""
    out = tmp_path / "inc.jsonl"
    code = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'tf_keras', 'sklearn', 'pandas'):\n"
        "    sys.modules[m] = None\n"
        "from edgebot.cli import main\n"
        "try:\n"
        f"    main(['run', '--bundle', {str(demo_bundle)!r}, '--pcap', {str(PCAP_MIRAI)!r}, '--jsonl', {str(out)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn', 'pandas')"
        " and sys.modules[m] is not None]\n"
        "print('LOADED', loaded)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "LOADED []" in res.stdout
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert any(m.get("type") == "new" and m["host"] == "192.168.1.195" for m in lines)


def test_sigterm_flushes_and_publishes_offline(demo_bundle, mosquitto, mqtt_collector, tmp_path):
    """Follow a Zeek log that never ends; SIGTERM makes the agent publish 'offline' and exit 0."""
    log = tmp_path / "conn.log"
    import lzma

    log.write_bytes(lzma.decompress(HONEYPOT_4_1.read_bytes()))
    sub = mqtt_collector(mosquitto, [f"edgebot/{GW}/status"])
    env = dict(os.environ, EDGEBOT_MQTT_URL="")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(demo_bundle), "--zeek-log", str(log),
         "--mqtt", mosquitto.url, "--gateway-id", GW],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )
    try:
        online = sub.wait_for(f"edgebot/{GW}/status", predicate=lambda ms: any(m.text == "online" for m in ms),
                              timeout=30)
        assert any(m.text == "online" for m in online), proc.stderr.read1().decode() if proc.poll() else ""
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, proc.stderr.read().decode()[-2000:]
    status = sub.wait_for(f"edgebot/{GW}/status", predicate=lambda ms: ms and ms[-1].text == "offline")
    assert status[-1].text == "offline"


# ------------------------------------------------------------------------------ bad input, CLI

def _cli(*args, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "edgebot.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_unreadable_pcap_is_a_one_line_error(demo_bundle, tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a pcap at all" * 10)
    res = _cli("run", "--bundle", str(demo_bundle), "--pcap", str(bad), "--jsonl", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("Error:") and "Traceback" not in res.stderr
    assert "not a pcap" in res.stderr


def test_wrong_bundle_is_a_one_line_error(tmp_path):
    empty = tmp_path / "nobundle"
    empty.mkdir()
    res = _cli("run", "--bundle", str(empty), "--pcap", str(PCAP_HUE))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("Error:")


def test_unknown_config_key_and_check_config(tmp_path, demo_bundle):
    cfg = tmp_path / "edgebot.toml"
    cfg.write_text(f'bundle = "{demo_bundle}"\n[source]\npcap = "{PCAP_HUE}"\n[mqtt]\nhots = "x"\n')
    res = _cli("run", "--config", str(cfg), "--check-config")
    assert res.returncode == 1 and "mqtt.hots" in res.stderr and "Traceback" not in res.stderr
    cfg.write_text(f'bundle = "{demo_bundle}"\n[source]\npcap = "{PCAP_HUE}"\n')
    res = _cli("run", "--config", str(cfg), "--check-config")
    assert res.returncode == 0, res.stderr


def test_unreachable_broker_keeps_scoring_and_queues_to_disk(demo_bundle, tmp_path):
    from brokers import free_port

    from edgebot.edge.agent import run_agent

    port = free_port()
    queue = tmp_path / "queue.sqlite"
    summary = run_agent(_cfg(demo_bundle, source__pcap=str(PCAP_MIRAI), mqtt__url=f"mqtt://127.0.0.1:{port}",
                             mqtt__queue_path=str(queue)))
    assert summary.flows > 6000 and summary.incidents.get("new", 0) >= 1
    assert summary.sink["queued"] == sum(summary.incidents.values())  # all kept for later, none lost
    from edgebot.edge.sinks.queue import DiskQueue

    q = DiskQueue(queue)
    assert len(q) == summary.sink["queued"]
    q.close()


# ------------------------------------------------------------------- end of life (issue 12)

LIFE_GW = "life-gw"
CLI = [sys.executable, "-m", "edgebot.cli"]


def _env(tmp_path: Path) -> dict[str, str]:
    """The environment of a child agent: its default state directory in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    env["XDG_STATE_HOME"] = str(tmp_path)
    return env


def tiny_pcap(path: Path, n: int = 3) -> Path:
    """A classic pcap of ``n`` TCP SYNs (Ethernet/IPv4/TCP), built with struct."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(n):
        tcp = struct.pack("!HHIIBBHHH", 40000 + i, 23, i, 0, 5 << 4, 0x02, 64240, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i, 0, 64, 6, 0,
                         bytes([192, 168, 1, 50]), bytes([10, 0, 0, 1 + i]))
        frame = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb" + b"\x08\x00" + ip + tcp
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


class StderrLines:
    """Collect a child's stderr lines in a thread; wait for one that contains a text."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


def test_refused_credentials_exit_2_even_on_a_tiny_input(demo_bundle, mosquitto_auth, tmp_path):
    """Issue 12 item 9: the run ended before the CONNACK and exited 0."""
    pcap = tiny_pcap(tmp_path / "tiny.pcap")
    url = mosquitto_auth.url.replace("mqtt://", "mqtt://edgebot:wrong@")
    for attempt in range(3):  # deterministic: the same outcome every time
        res = subprocess.run(CLI + ["run", "--bundle", str(demo_bundle), "--pcap", str(pcap), "--mqtt", url,
                                    "--gateway-id", LIFE_GW],
                             capture_output=True, text=True, timeout=120,
                             env=_env(tmp_path))
        assert res.returncode == 2, (attempt, res.stderr[-2000:])
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: MQTT broker refused the connection") and "wrong" not in res.stderr
    ok = subprocess.run(CLI + ["run", "--bundle", str(demo_bundle), "--pcap", str(pcap), "--gateway-id", LIFE_GW,
                               "--mqtt", mosquitto_auth.url.replace("mqtt://", "mqtt://edgebot:s3cret@")],
                        capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_sigterm_ends_open_incidents_before_going_offline(demo_bundle, mosquitto, mqtt_collector, tmp_path):
    """Issue 12 item 15: a signal left incidents without an end, so Home Assistant kept showing ON."""
    log = tmp_path / "conn.log"
    log.write_bytes(lzma.decompress(MIRAI_34_1.read_bytes()))
    config = tmp_path / "edgebot.toml"
    config.write_text(f'gateway_id = "{LIFE_GW}"\nbundle = "{demo_bundle}"\n[source]\nzeek_log = "{log}"\n'
                      f'[mqtt]\nurl = "{mosquitto.url}"\nhomeassistant = true\nqueue_path = "{tmp_path / "q.sqlite"}"\n')
    sub = mqtt_collector(mosquitto, [f"edgebot/{LIFE_GW}/#"])
    proc = subprocess.Popen(CLI + ["-v", "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = StderrLines(proc)
    try:
        assert sub.wait_for(f"edgebot/{LIFE_GW}/incidents", predicate=lambda ms: any(m.json()["type"] == "new" for m in ms),
                            timeout=120), err.text()[-3000:]
        time.sleep(3.0)  # let the follower reach the end of the log; it then waits for more lines
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err.text()[-3000:]
    status = sub.wait_for(f"edgebot/{LIFE_GW}/status", predicate=lambda ms: ms and ms[-1].text == "offline")
    assert status[-1].text == "offline"
    incidents = [m.json() for m in sub.on(f"edgebot/{LIFE_GW}/incidents")]
    opened = {m["incident_id"] for m in incidents if m["type"] == "new"}
    ended = {m["incident_id"]: m.get("reason") for m in incidents if m["type"] == "end"}
    assert opened and opened <= set(ended), (opened, ended)
    assert "agent stopped" in ended.values(), ended
    host_states = {m.topic: m.text for m in sub.messages if m.topic.startswith(f"edgebot/{LIFE_GW}/hosts/")
                   and m.topic.endswith("/state")}
    assert host_states and set(host_states.values()) == {"OFF"}, host_states
    assert [m.text for m in sub.on(f"edgebot/{LIFE_GW}/state")][-1] == "OFF"


def test_sigterm_during_the_end_of_input_drain_stops_promptly(demo_bundle, mosquitto, tmp_path):
    """Issue 12 item 12: the drain ignored SIGTERM for up to 30 s (the unit's TimeoutStopSec is 20 s)."""
    proc = subprocess.Popen(CLI + ["-v", "run", "--bundle", str(demo_bundle), "--pcap", str(PCAP_MIRAI),
                                   "--mqtt", mosquitto.url, "--gateway-id", LIFE_GW, "--jsonl", str(tmp_path / "o.jsonl")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path))
    err = StderrLines(proc)
    frozen = False
    try:
        assert err.wait_for("connected to MQTT broker", timeout=120), err.text()[-3000:]
        os.kill(mosquitto.process.pid, signal.SIGSTOP)  # connected, then the broker never acknowledges again
        frozen = True
        assert err.wait_for("for the broker to take", timeout=180), err.text()[-3000:]
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=25)
        took = time.monotonic() - began
    finally:
        if frozen:
            os.kill(mosquitto.process.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err.text()[-3000:]
    assert took < 8.0, f"took {took:.1f} s to stop"
    assert "stay queued for the next start" in err.text()
    from edgebot.edge.sinks.queue import DiskQueue

    kept = DiskQueue(tmp_path / "edgebot" / f"mqtt-queue-{LIFE_GW}.sqlite")  # the default queue under XDG_STATE_HOME
    try:
        assert len(kept) >= 1  # undelivered incidents stay on disk for the next start
        assert all(json.loads(m.payload)["gateway_id"] == LIFE_GW for m in kept.peek(100) if m.topic.endswith("incidents"))
    finally:
        kept.close()
