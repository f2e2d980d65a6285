"""The baseline a user might write without edgebot: NFStream to meter a pcap, then the Keras models (or XGBoost).

Kitsune's reference implementation (Kitsune-py) is not on PyPI, so it cannot be installed
here with an ordinary client; what a user would reach for instead is NFStream (a C metering
engine on PyPI, with wheels for the Pi) feeding the trained models. Two variants, each in a
fresh process pinned to one core (NFStream's metering process inherits the pin):

``keras``
    NFStream flows (with its post-mortem statistics, for the TCP flag counts) -> our featurizer (NFStream fields mapped to Zeek-like records, see
    :func:`flow_record`) -> per-host windows -> ``cnn_lstm.keras`` and ``autoencoder.keras``
    under TensorFlow (``model.predict``, batch 256) -> the XGBoost fuser.
``xgboost``
    NFStream flows -> featurizer -> the run's single-flow XGBoost model (``xgboost_flow.json``,
    the strong baseline of the trainer), no TensorFlow.

Usage (from the repository root)::

    .venv/bin/python benchmarks/baseline/nfstream_baseline.py RUN_DIR BUNDLE_DIR PCAP [PCAP ...] [--json out.json]

Reported per pcap and variant: packets/s and flows/s from the first packet read to the last
score (imports and model loading excluded, reported separately as start-up), peak RSS of
the process (VmHWM; NFStream's metering process is a child: its peak is added), and the
number of NFStream flows. The NFStream -> Zeek field mapping is approximate (conn_state and
history are guessed from TCP flag counts), so this baseline is about speed and memory, not
detection quality.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T_MAIN = time.time()

PROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def flow_record(f: Any):
    """An NFStream flow as a Zeek-like :class:`edgebot.flow.FlowRecord` (approximate: see the module doc)."""
    from edgebot.flow import FlowRecord

    proto = PROTO.get(f.protocol, str(f.protocol))
    hdr = 40 if proto == "tcp" else 28 if proto == "udp" else 28
    o_pk, r_pk = f.src2dst_packets, f.dst2src_packets
    o_ip, r_ip = f.src2dst_bytes, f.dst2src_bytes  # accounting_mode=1: IP bytes
    history = ""
    state = "OTH"
    if proto == "tcp":
        if f.src2dst_syn_packets:
            history += "S"
        if f.dst2src_syn_packets:
            history += "h"
        if f.src2dst_ack_packets:
            history += "A"
        if o_ip > hdr * o_pk:
            history += "D"
        if r_ip > hdr * r_pk:
            history += "d"
        if f.src2dst_fin_packets:
            history += "F"
        if f.dst2src_fin_packets:
            history += "f"
        if f.src2dst_rst_packets:
            history += "R"
        if f.dst2src_rst_packets:
            history += "r"
        if f.src2dst_syn_packets and not r_pk:
            state = "S0"
        elif f.dst2src_rst_packets and not f.dst2src_syn_packets:
            state = "REJ"
        elif f.src2dst_fin_packets and f.dst2src_fin_packets:
            state = "SF"
        elif f.src2dst_rst_packets:
            state = "RSTO"
        elif f.dst2src_rst_packets:
            state = "RSTR"
        elif f.dst2src_syn_packets:
            state = "S1"
    elif proto == "udp":
        state = "SF" if r_pk else "S0"
    return FlowRecord(
        ts=f.bidirectional_first_seen_ms / 1000.0, orig_h=f.src_ip, orig_p=f.src_port, resp_h=f.dst_ip,
        resp_p=f.dst_port, proto=proto, duration=f.bidirectional_duration_ms / 1000.0,
        orig_bytes=max(0, o_ip - hdr * o_pk), resp_bytes=max(0, r_ip - hdr * r_pk), conn_state=state,
        history=history, orig_pkts=o_pk, orig_ip_bytes=o_ip, resp_pkts=r_pk, resp_ip_bytes=r_ip,
    )


def worker(variant: str, run_dir: Path, bundle_dir: Path, pcap: Path) -> dict:
    """One measurement in this process (see the module doc)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    import numpy as np
    import xgboost
    from nfstream import NFStreamer

    from edgebot.bundle import load_manifest
    from edgebot.features import MinMaxScaler, featurize
    from edgebot.fusion import fused_probability, fuser_inputs, margin_kind, raw_feature_index, reconstruction_error
    from edgebot.windows import make_windows

    manifest = load_manifest(bundle_dir)  # the typed, validated manifest (edgebot.manifest.Manifest)
    scaler = MinMaxScaler(manifest.scaler_min, manifest.scaler_max)
    if variant == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        hybrid = keras.models.load_model(run_dir / "cnn_lstm.keras", compile=False)
        ae = keras.models.load_model(run_dir / "autoencoder.keras", compile=False)
        fuser = xgboost.Booster(model_file=str(run_dir / "fuser.json"))
        raw_index = raw_feature_index(raw_features=manifest.fuser_raw_features)
        ae_threshold = manifest.thresholds["autoencoder"]
    else:
        flow_model = xgboost.Booster(model_file=str(run_dir / "xgboost_flow.json"))
    t_ready = time.time()

    t0 = time.perf_counter()
    c0 = time.process_time()
    streamer = NFStreamer(source=str(pcap), statistical_analysis=True, n_dissections=0, accounting_mode=1,
                          n_meters=1)
    records = [flow_record(f) for f in streamer]
    X = scaler.transform(featurize(records))
    if variant == "keras":
        W = make_windows(X, [r.orig_h for r in records], np.array([r.ts for r in records]), manifest.window)
        prob = np.asarray(hybrid.predict(W, batch_size=256, verbose=0), dtype=np.float32)[:, 0]
        recon = np.asarray(ae.predict(X, batch_size=256, verbose=0), dtype=np.float32)
        anomaly = reconstruction_error(X, recon) / np.float32(ae_threshold)
        scores = fused_probability(fuser, fuser_inputs(prob, anomaly, X, raw_index), margin_kind(fuser))
    else:
        scores = flow_model.inplace_predict(X)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"variant": variant, "pcap": pcap.name, "flows": len(records), "scored": int(len(scores)),
            "seconds": seconds, "cpu_seconds_main_process": cpu, "startup_s": t_ready - T_MAIN,
            "peak_rss_mb": _peak_rss_mb(), "children_peak_rss_mb": _children_peak_rss_mb()}


def count_packets(pcap: Path) -> int:
    from edgebot.edge.pcapfile import PcapReader

    with PcapReader(pcap) as reader:
        return sum(len(packets) for _buf, packets in reader.batches())


def measure(variant: str, run_dir: Path, bundle_dir: Path, pcap: Path, runs: int) -> dict:
    """Median of ``runs`` fresh worker processes."""
    results = []
    for _ in range(runs):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, __file__, "--worker", variant, str(run_dir), str(bundle_dir), str(pcap),
                   "--json", out.name]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            if proc.returncode != 0:
                raise SystemExit(f"baseline worker {variant} failed: {proc.stderr.strip().splitlines()[-1:]}")
            results.append(json.loads(Path(out.name).read_text()))
    results.sort(key=lambda r: r["seconds"])
    return results[len(results) // 2] | {"runs_s": [r["seconds"] for r in results]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("bundle_dir", type=Path)
    ap.add_argument("pcaps", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", default="keras,xgboost")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.run_dir, args.bundle_dir, args.pcaps[0])
        args.json.write_text(json.dumps(result))
        return 0
    out = {"load_avg_before": [round(x, 2) for x in os.getloadavg()], "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        for pcap in args.pcaps:
            plain = pcap
            if pcap.suffix == ".xz":  # NFStream reads plain pcaps; decode once, outside the timing
                plain = Path(tmp) / pcap.stem
                with lzma.open(pcap) as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            packets = count_packets(plain)
            for variant in args.variants.split(","):
                r = measure(variant, args.run_dir, args.bundle_dir, plain, args.runs)
                r.update(packets=packets, packets_per_s=packets / r["seconds"], flows_per_s=r["flows"] / r["seconds"])
                out["results"].append(r)
                print(f"{pcap.name[:60]:<60} {variant:<8} {r['packets_per_s']:>10,.0f} packets/s "
                      f"{r['flows']:>6} flows  peak RSS {r['peak_rss_mb']:.0f} MB (forked meter process "
                      f"{r['children_peak_rss_mb']:.0f} MB, mostly shared pages)  start-up {r['startup_s']:.2f} s", flush=True)
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
