"""The agent's end of life with a real broker: refused credentials exit 2, signals end incidents and stop the drain."""

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

from fixtures_core import MIRAI_34_1, PCAP_MIRAI, demo_bundle, demo_run  # noqa: F401

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.broker, pytest.mark.timeout(300)]

GW = "life-gw"
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
                                    "--gateway-id", GW],
                             capture_output=True, text=True, timeout=120,
                             env=_env(tmp_path))
        assert res.returncode == 2, (attempt, res.stderr[-2000:])
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: MQTT broker refused the connection") and "wrong" not in res.stderr
    ok = subprocess.run(CLI + ["run", "--bundle", str(demo_bundle), "--pcap", str(pcap), "--gateway-id", GW,
                               "--mqtt", mosquitto_auth.url.replace("mqtt://", "mqtt://edgebot:s3cret@")],
                        capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_sigterm_ends_open_incidents_before_going_offline(demo_bundle, mosquitto, mqtt_collector, tmp_path):
    """Issue 12 item 15: a signal left incidents without an end, so Home Assistant kept showing ON."""
    log = tmp_path / "conn.log"
    log.write_bytes(lzma.decompress(MIRAI_34_1.read_bytes()))
    config = tmp_path / "edgebot.toml"
    config.write_text(f'gateway_id = "{GW}"\nbundle = "{demo_bundle}"\n[source]\nzeek_log = "{log}"\n'
                      f'[mqtt]\nurl = "{mosquitto.url}"\nhomeassistant = true\nqueue_path = "{tmp_path / "q.sqlite"}"\n')
    sub = mqtt_collector(mosquitto, [f"edgebot/{GW}/#"])
    proc = subprocess.Popen(CLI + ["-v", "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = StderrLines(proc)
    try:
        assert sub.wait_for(f"edgebot/{GW}/incidents", predicate=lambda ms: any(m.json()["type"] == "new" for m in ms),
                            timeout=120), err.text()[-3000:]
        time.sleep(3.0)  # let the follower reach the end of the log; it then waits for more lines
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err.text()[-3000:]
    status = sub.wait_for(f"edgebot/{GW}/status", predicate=lambda ms: ms and ms[-1].text == "offline")
    assert status[-1].text == "offline"
    incidents = [m.json() for m in sub.on(f"edgebot/{GW}/incidents")]
    opened = {m["incident_id"] for m in incidents if m["type"] == "new"}
    ended = {m["incident_id"]: m.get("reason") for m in incidents if m["type"] == "end"}
    assert opened and opened <= set(ended), (opened, ended)
    assert "agent stopped" in ended.values(), ended
    host_states = {m.topic: m.text for m in sub.messages if m.topic.startswith(f"edgebot/{GW}/hosts/")
                   and m.topic.endswith("/state")}
    assert host_states and set(host_states.values()) == {"OFF"}, host_states
    assert [m.text for m in sub.on(f"edgebot/{GW}/state")][-1] == "OFF"


def test_sigterm_during_the_end_of_input_drain_stops_promptly(demo_bundle, mosquitto, tmp_path):
    """Issue 12 item 12: the drain ignored SIGTERM for up to 30 s (the unit's TimeoutStopSec is 20 s)."""
    proc = subprocess.Popen(CLI + ["-v", "run", "--bundle", str(demo_bundle), "--pcap", str(PCAP_MIRAI),
                                   "--mqtt", mosquitto.url, "--gateway-id", GW, "--jsonl", str(tmp_path / "o.jsonl")],
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

    kept = DiskQueue(tmp_path / "edgebot" / f"mqtt-queue-{GW}.sqlite")  # the default queue under XDG_STATE_HOME
    try:
        assert len(kept) >= 1  # undelivered incidents stay on disk for the next start
        assert all(json.loads(m.payload)["gateway_id"] == GW for m in kept.peek(100) if m.topic.endswith("incidents"))
    finally:
        kept.close()
