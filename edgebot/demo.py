"""`make demo`: train on the bundled data, quantize, replay a Mirai and two benign pcaps, summarize.

Run as ``python -m edgebot.demo [--out DIR] [--full]``. Needs the train extra (TensorFlow) for
the first two steps; the replay uses only the gateway path. If ``EDGEBOT_MQTT_URL`` names a
reachable broker, incidents are also published there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from edgebot import datasets
from edgebot.errors import EdgebotError

log = logging.getLogger(__name__)

MIRAI_PCAP = datasets.PCAPS["mirai_34_1"]
HUE_PCAP = datasets.PCAPS["hue_4_1"]
HUE_EARLIER_PCAP = datasets.PCAPS["hue_2018_09_14"]

REPLAYS = (
    ("Mirai 34-1 (infected 192.168.1.195)", MIRAI_PCAP, "malicious"),
    ("Philips Hue 4-1 (benign; its first 80% were training data)", HUE_PCAP, "benign"),
    ("Philips Hue 2018-09-14 (benign, never seen in training)", HUE_EARLIER_PCAP, "benign"),
)


def data_root() -> Path:
    """The bundled data folder (the repo's data/, or EDGEBOT_DATA); see :mod:`edgebot.datasets`."""
    return datasets.data_root()


def replay(bundle_dir: Path, pcap: Path, jsonl: Path, gateway_id: str, mqtt_url: str | None) -> dict:
    """Replay one pcap with ``edgebot run`` in its own process (as on the gateway: no TensorFlow).

    Returns the agent's summary as a dict (``edgebot run --summary-json``).
    """
    import subprocess

    summary_path = jsonl.with_suffix(".summary.json")
    cmd = [sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(bundle_dir), "--pcap", str(pcap),
           "--jsonl", str(jsonl), "--gateway-id", gateway_id, "--summary-json", str(summary_path)]
    if mqtt_url:
        cmd += ["--mqtt", mqtt_url]
    env = dict(os.environ)
    env["STATE_DIRECTORY"] = str(jsonl.parent.resolve())  # the MQTT disk queue, if a broker is used
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgebotError(f"edgebot run on {pcap.name} failed: {last}")
    return json.loads(summary_path.read_text())


def _format_agent_summary(s: dict) -> str:
    lines = [f"flows {s['flows']:,}, packets {s['packets']:,} in {s['seconds']:.2f} s "
             f"({s['packets_per_s']:,.0f} packets/s, {s['flows_per_s']:,.0f} flows/s); "
             f"flow end->verdict p95 {s['verdict_latency_ms'].get('p95', 0):.1f} ms; peak RSS {s['peak_rss_mb']:.0f} MB"]
    inc = s["incidents"]
    lines.append(f"incident messages: new {inc.get('new', 0)}, update {inc.get('update', 0)}, end {inc.get('end', 0)}")
    return "\n".join(lines)


def _broker_reachable(url: str) -> bool:
    import socket

    from edgebot.edge.sinks.mqtt_url import parse_mqtt_url

    try:
        u = parse_mqtt_url(url)
        with socket.create_connection((u.host, u.port), timeout=2):
            return True
    except (OSError, EdgebotError):
        return False


def run_demo(out: Path, quick: bool = True, stream=sys.stdout) -> dict:
    """Run the whole job; returns the summary dict that is also printed."""
    root = data_root()
    out.mkdir(parents=True, exist_ok=True)
    say = lambda *a: print(*a, file=stream, flush=True)  # noqa: E731
    t_all = time.perf_counter()

    training = datasets.default_training(root)
    n_devices = len(datasets.benign_devices(root))
    say(f"== 1/3 train ({'quick' if quick else 'full'} configuration) on the bundled default training set: IoT-23 "
        f"Mirai 34-1, Hakai 8-1, honeypots 4-1, 5-1 and {n_devices} benign devices ({len(training)} files)")
    from edgebot.train.fit import train_run

    t = time.perf_counter()
    run_dir = out / "run"
    train_result = train_run(list(training), run_dir, split="temporal", quick=quick, force=True, progress=True)
    train_s = time.perf_counter() - t
    if isinstance(train_result, dict) and train_result.get("summary"):
        say(train_result["summary"])

    say("\n== 2/3 convert to the int8 bundle and verify against the float models")
    from edgebot.convert.bundle_writer import convert_run, format_verification

    t = time.perf_counter()
    bundle_dir = out / "bundle"
    verification = convert_run(run_dir, bundle_dir, force=True)
    convert_s = time.perf_counter() - t
    say(format_verification(verification))

    say("\n== 3/3 replay pcaps through the gateway agent (edgebot run, JSON-lines sink)")
    mqtt_url = os.environ.get("EDGEBOT_MQTT_URL")
    if mqtt_url and not _broker_reachable(mqtt_url):
        say(f"(EDGEBOT_MQTT_URL set but no broker answers there; publishing to JSON lines only)")
        mqtt_url = None
    replays = []
    for name, rel, truth in REPLAYS:
        pcap = root / rel
        jsonl = out / (Path(rel).name.split(".pcap")[0] + ".incidents.jsonl")
        if jsonl.exists():
            jsonl.unlink()
        summary = replay(bundle_dir, pcap, jsonl, "demo-gateway", mqtt_url)
        messages = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
        new = [m for m in messages if m.get("type") == "new"]
        replays.append({"name": name, "pcap": rel, "truth": truth, "summary": summary,
                        "incidents": len(new), "jsonl": str(jsonl)})
        say(f"\n-- {name}\n{_format_agent_summary(summary)}")

    sizes = verification.get("sizes", {})
    bundle_bytes = sum(v for k, v in sizes.items() if k != "total") if "total" not in sizes else sizes["total"]
    result = {
        "train_seconds": train_s,
        "convert_seconds": convert_s,
        "total_seconds": time.perf_counter() - t_all,
        "bundle": str(bundle_dir),
        "bundle_bytes": bundle_bytes,
        "verification": {k: verification.get(k) for k in ("float", "int8", "f1_drop")},
        "replays": replays,
        "report": str(run_dir / "report.html"),
    }
    (out / "demo-summary.json").write_text(json.dumps(result, indent=2, default=str))
    say("\n" + format_demo(result))
    return result


def format_demo(result: dict) -> str:
    """The closing summary of the demo."""
    lines = ["================ edgebot demo: summary ================"]
    for r in result["replays"]:
        s = r["summary"]
        lines.append(f"{r['name']}: {r['incidents']} incident(s), {s['flows']:,} flows, "
                     f"{s['packets']:,} packets, {s['packets_per_s']:,.0f} packets/s, peak RSS {s['peak_rss_mb']:.0f} MB")
        for host, h in sorted(s["flagged_hosts"].items()):
            first = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h["first_seen"]))
            lines.append(f"    incident host {host:<15} score {h['score']:.3f}  first seen {first}Z  "
                         f"flows {h['flows']} ({h['malicious_flows']} malicious)")
    v = result["verification"]
    try:
        lines.append(f"int8 bundle: fused F1 {v['int8']['f1']:.4f} vs float {v['float']['f1']:.4f} "
                     f"(drop {v['f1_drop']:+.4f}); size {result['bundle_bytes'] / 1024:.0f} KB")
    except (KeyError, TypeError):
        lines.append(f"int8 bundle: {result['bundle_bytes'] / 1024:.0f} KB")
    lines.append(f"bundle: {result['bundle']}")
    lines.append(f"report: {result['report']}")
    lines.append(f"time: train {result['train_seconds']:.0f} s, convert {result['convert_seconds']:.0f} s, "
                 f"total {result['total_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgebot.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    ap.add_argument("--full", action="store_true", help="train the full configuration instead of --quick")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        try:
            from edgebot.train.quiet import quiet_tensorflow
        except ImportError:  # the gateway part needs no trainer
            quiet_tensorflow = None
        if quiet_tensorflow is not None:
            with quiet_tensorflow():
                run_demo(Path(args.out), quick=not args.full)
        else:
            run_demo(Path(args.out), quick=not args.full)
    except EdgebotError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
