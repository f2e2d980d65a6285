"""Alert-sink throughput: the SQLite queue, JSON lines, and MQTT incidents acknowledged by a local Mosquitto.

Usage: python benchmarks/bench_sinks.py [--n 5000] [--json out.json]
Needs paho-mqtt and the mosquitto binary for the MQTT figures (skipped otherwise).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def incident(i: int) -> dict:
    return {"type": "new", "incident_id": f"inc-{i}", "gateway_id": "bench", "host": "10.0.0.7",
            "first_seen": 1.0, "last_seen": 2.0, "flows": 3, "malicious_flows": 1, "score": 0.9,
            "threshold": 0.5, "severity": "high", "model": "m", "peers": ["198.51.100.4:23"],
            "community_id": None}


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="messages per measurement")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    from edgebot.edge.sinks.base import encode_message
    from edgebot.edge.sinks.jsonl import JsonlSink
    from edgebot.edge.sinks.queue import DiskQueue

    n = args.n
    figures: dict = {"machine": platform.machine(), "python": platform.python_version(), "n": n}
    work = Path(tempfile.mkdtemp(prefix="edgebot-bench-sinks-"))
    payload = encode_message(incident(0)).encode()

    with DiskQueue(work / "q.sqlite", max_messages=n + 1) as queue:
        t = time.perf_counter()
        for _ in range(n):
            queue.put(payload, "t")
        figures["queue_put_per_s"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        while len(queue):
            queue.ack([m.id for m in queue.peek(20)])
        figures["queue_peek20_ack_per_s"] = n / (time.perf_counter() - t)

    with JsonlSink(work / "out.jsonl") as sink:
        t = time.perf_counter()
        for i in range(n):
            sink.publish_incident(incident(i))
        figures["jsonl_incidents_per_s"] = n / (time.perf_counter() - t)

    sys.path.insert(0, str(REPO / "tests"))
    try:
        from conftest import MosquittoBroker, MqttCollector, find_tool

        from edgebot.edge.sinks.mqtt import MqttSink
    except ImportError as exc:
        figures["mqtt"] = f"skipped: {exc}"
    else:
        binary = find_tool("mosquitto")
        if binary is None:
            figures["mqtt"] = "skipped: mosquitto is not installed"
        else:
            (work / "broker").mkdir()
            broker = MosquittoBroker(binary, work / "broker").start()
            try:
                collector = MqttCollector(broker, ["edgebot/bench/incidents"]).start()
                sink = MqttSink(broker.url, gateway_id="bench", queue_path=work / "mqtt.sqlite")
                sink.start()
                sink.wait_connected(10)
                t = time.perf_counter()
                for i in range(n):
                    sink.publish_incident(incident(i))
                caller_s = time.perf_counter() - t
                delivered = sink.flush(120)
                total_s = time.perf_counter() - t
                got = collector.wait_for("edgebot/bench/incidents", n, timeout=30)
                sink.close()
                collector.stop()
                figures["mqtt_publish_incident_us"] = caller_s / n * 1e6
                figures["mqtt_acked_per_s"] = n / total_s
                figures["mqtt_all_acked"] = delivered
                figures["mqtt_received"] = len(got)
            finally:
                broker.stop()

    for key, value in figures.items():
        print(f"{key:28s} {value:.0f}" if isinstance(value, float) else f"{key:28s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    main()
