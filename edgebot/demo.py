"""`make demo`: the gateway with the shipped bundle, then train, quantize and replay with a fresh one.

Run as ``python -m edgebot.demo [--out DIR] [--full] [--gateway-only]``. The first step replays a
Mirai and two benign pcaps with the default bundle shipped in the package (``edgebot run`` with no
``--bundle``: what a gateway does out of the box, no TensorFlow); the next steps need the train
extra: train on the bundled data, quantize to a fresh bundle, replay the same pcaps with it. If
``EDGEBOT_MQTT_URL`` names a reachable broker, incidents are also published there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

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


def replay(bundle_dir: Path | None, pcap: Path, jsonl: Path, gateway_id: str, mqtt_url: str | None) -> dict:
    """Replay one pcap with ``edgebot run`` in its own process (as on the gateway: no TensorFlow).

    ``bundle_dir`` None: no ``--bundle``, the shipped default bundle. Returns the agent's summary
    as a dict (``edgebot run --summary-json``).
    """
    import subprocess

    summary_path = jsonl.with_suffix(".summary.json")
    cmd = [sys.executable, "-m", "edgebot.cli", "run", "--pcap", str(pcap)]
    cmd += ["--bundle", str(bundle_dir)] if bundle_dir is not None else []
    cmd += ["--jsonl", str(jsonl), "--gateway-id", gateway_id, "--summary-json", str(summary_path)]
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


def replay_all(bundle_dir: Path | None, out: Path, mqtt_url: str | None, say) -> list[dict]:
    """The three demo pcaps through ``edgebot run`` with ``bundle_dir`` (None: the shipped bundle)."""
    root = data_root()
    out.mkdir(parents=True, exist_ok=True)
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
        hosts = ", ".join(sorted(summary["flagged_hosts"])) or "none"
        say(f"\n-- {name}: incident hosts {hosts}\n{_format_agent_summary(summary)}")
    return replays


def _mqtt_url(say) -> str | None:
    mqtt_url = os.environ.get("EDGEBOT_MQTT_URL")
    if mqtt_url and not _broker_reachable(mqtt_url):
        say("(EDGEBOT_MQTT_URL set but no broker answers there; publishing to JSON lines only)")
        mqtt_url = None
    return mqtt_url


def run_demo(out: Path, quick: bool = True, stream=sys.stdout, shipped: bool = True,
             gateway_only: bool = False) -> dict:
    """Run the whole job; returns the summary dict that is also printed.

    ``shipped``: first replay with the default bundle shipped in the package (step 1/4);
    ``gateway_only``: stop after that (no TensorFlow needed).
    """
    root = data_root()
    out.mkdir(parents=True, exist_ok=True)
    say = lambda *a: print(*a, file=stream, flush=True)  # noqa: E731
    t_all = time.perf_counter()
    mqtt_url = _mqtt_url(say)
    shipped_replays: list[dict] = []
    if shipped or gateway_only:
        from edgebot.bundle import load_manifest
        from edgebot.shipped import default_bundle

        bundle_id = load_manifest(default_bundle()).bundle_id[:12]
        say(f"== 1/4 the gateway out of the box: edgebot run --pcap FILE with the default bundle shipped in the "
            f"package ({bundle_id}; edgebot bundle info, docs/model-card.md)")
        t = time.perf_counter()
        shipped_replays = replay_all(None, out / "shipped", mqtt_url, say)
        say(f"(replayed in {time.perf_counter() - t:.0f} s)")
        if gateway_only:
            return {"shipped_replays": shipped_replays, "total_seconds": time.perf_counter() - t_all}

    try:
        from edgebot.train.fit import train_run
    except ImportError as exc:  # a gateway install: the shipped bundle was the demo
        say(f"\n(the trainer needs the train extra, pip install 'edgebot[train]' ({exc}): stopping after step 1)")
        return {"shipped_replays": shipped_replays, "total_seconds": time.perf_counter() - t_all}
    training = datasets.default_training(root)
    n_devices = len(datasets.benign_devices(root))
    say(f"\n== 2/4 train ({'quick' if quick else 'full'} configuration) on the bundled default training set: IoT-23 "
        f"Mirai 34-1, Hakai 8-1, honeypots 4-1, 5-1 and {n_devices} benign devices ({len(training)} files)")

    t = time.perf_counter()
    run_dir = out / "run"
    train_result = train_run(list(training), run_dir, split="temporal", quick=quick, force=True, progress=True)
    train_s = time.perf_counter() - t
    if isinstance(train_result, dict) and train_result.get("summary"):
        say(train_result["summary"])

    say("\n== 3/4 convert to the int8 bundle and verify against the float models")
    from edgebot.convert.bundle_writer import convert_run, format_verification

    t = time.perf_counter()
    bundle_dir = out / "bundle"
    verification = convert_run(run_dir, bundle_dir, force=True)
    convert_s = time.perf_counter() - t
    say(format_verification(verification))

    say("\n== 4/4 replay the same pcaps with the fresh bundle (edgebot run --bundle, JSON-lines sink)")
    replays = replay_all(bundle_dir, out, mqtt_url, say)

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
        "shipped_replays": shipped_replays,
        "report": str(run_dir / "report.html"),
    }
    (out / "demo-summary.json").write_text(json.dumps(result, indent=2, default=str))
    say("\n" + format_demo(result))
    return result


def format_demo(result: dict) -> str:
    """The closing summary of the demo."""
    lines = ["================ edgebot demo: summary ================"]
    for r in result.get("shipped_replays", []):
        hosts = ", ".join(sorted(r["summary"]["flagged_hosts"])) or "none"
        lines.append(f"shipped bundle, {r['name']}: {r['incidents']} incident(s) (hosts: {hosts})")
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
    ap.add_argument("--gateway-only", action="store_true",
                    help="only step 1: replay with the shipped bundle (no TensorFlow needed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        quiet: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext
        try:
            from edgebot.train.quiet import quiet_tensorflow

            quiet = quiet_tensorflow
        except ImportError:  # the gateway part needs no trainer
            pass
        with quiet():
            run_demo(Path(args.out), quick=not args.full, gateway_only=args.gateway_only)
    except EdgebotError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
