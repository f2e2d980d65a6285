"""Featurizer and windowing throughput on one core: flows per second on real IoT-23 flows.

Usage: python benchmarks/bench_featurizer.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    import numpy as np

    from edgebot import datasets
    from edgebot.features import MinMaxScaler, featurize
    from edgebot.readers import open_flows
    from edgebot.windows import HostWindows, make_windows

    flows = list(open_flows(datasets.iot23("34-1")))
    n = len(flows)

    def timed(fn):
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)

    t_feat = timed(lambda: featurize(flows))
    X = MinMaxScaler().fit(featurize(flows)).transform(featurize(flows))
    hosts = [f.orig_h for f in flows]
    ts = [f.ts for f in flows]
    t_win = timed(lambda: make_windows(X, hosts, ts, 8))

    def online():
        hw = HostWindows(8, X.shape[1])
        for i in range(0, n, 256):
            hw.push_many(hosts[i:i + 256], X[i:i + 256])

    t_online = timed(online)
    result = {
        "flows": n,
        "featurize_flows_per_s": n / t_feat,
        "offline_windows_flows_per_s": n / t_win,
        "online_windows_flows_per_s": n / t_online,
        "numpy": np.__version__,
    }
    print(f"{n:,} flows of IoT-23 34-1, one core, median of {args.repeat}")
    print(f"  featurize         {result['featurize_flows_per_s']:>12,.0f} flows/s")
    print(f"  windows (offline) {result['offline_windows_flows_per_s']:>12,.0f} flows/s")
    print(f"  windows (online)  {result['online_windows_flows_per_s']:>12,.0f} flows/s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
