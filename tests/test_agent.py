"""The gateway agent end to end: real pcaps, the real int8 bundle, a real Mosquitto broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_core import HONEYPOT_4_1, PCAP_HUE, PCAP_MIRAI, REPO, demo_bundle, demo_run  # noqa: F401

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.broker]

GW = "test-gw"


def _cfg(bundle, **overrides):
    from edgebot.config import load_config

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
    assert [m["host"] for m in new] == ["192.168.1.195"]
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
    from conftest import free_port

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
