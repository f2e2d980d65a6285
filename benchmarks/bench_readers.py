"""Reader throughput micro-benchmark: rows/s of open_flows over a real log (no featurizer)."""

from __future__ import annotations

import argparse
import json
import lzma
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgebot import datasets
from edgebot.readers import open_flows

DEFAULT_LOG = datasets.iot23("34-1")


def rows_per_second(path: Path, repeats: int) -> tuple[float, int]:
    """Median rows/s over ``repeats`` full passes of ``open_flows(path)``."""
    rates = []
    rows = 0
    for _ in range(repeats):
        start = time.perf_counter()
        reader = open_flows(path)
        rows = sum(1 for _ in reader)
        rates.append(rows / (time.perf_counter() - start))
    return statistics.median(rates), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_LOG, help="flow file (default: IoT-23 34-1)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    results = {"machine": platform.machine(), "python": platform.python_version(), "processor": platform.processor()}
    rate, rows = rows_per_second(args.path, args.repeats)
    results[f"{args.path.name} (as stored)"] = {"rows": rows, "rows_per_s": round(rate)}
    if args.path.suffix == ".xz":  # the same log uncompressed: the cost of parsing alone
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / args.path.stem
            plain.write_bytes(lzma.decompress(args.path.read_bytes()))
            rate, rows = rows_per_second(plain, args.repeats)
            results[f"{plain.name} (uncompressed)"] = {"rows": rows, "rows_per_s": round(rate)}
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
