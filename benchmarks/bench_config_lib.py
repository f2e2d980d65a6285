"""What the config library costs the edge path: import time, RSS and start-up of the agent.

Issue 15 item 4 (target: the agent's RSS within 5 MB of the hand-written config's, start-up < 1 s).
Every figure is the median over ``--runs`` fresh processes:

* ``import edgebot.edge.config`` and the first ``load_config(FILE)`` in one process: ``-X importtime``'s
  cumulative time of ``edgebot.edge.config`` and of the config library's own top module, the wall time
  of the import and of the first load (which builds the library's decoders), and the process RSS after;
* ``edgebot run --config FILE --check-config``: wall and CPU (user + sys) time, peak RSS (``wait4``);
* ``edgebot run --config FILE``: a short replay of the bundled benign 4-1 pcap, JSON lines to a
  temporary file: wall and CPU time, peak RSS;
* each candidate library alone (msgspec, cattrs: whichever is installed): import it and structure
  the document into ``AgentConfig``, time and RSS added;
* the agent's start-up to first score and peak RSS as ``edgebot bench`` measures them (its edge-only
  worker, :func:`edgebot.edge.bench.memory.measure_agent_process`).

The bundle: ``make demo`` builds ``demo-out/bundle`` (the default). Example::

    python benchmarks/bench_config_lib.py --bundle demo-out/bundle --runs 5 --json config_lib.json

benchmarks/CONFIG_LIB.md has the figures before and after the change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("msgspec", "cattrs", "attrs")

_PROBE = r"""
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import edgebot.edge.config as config
t1, c1 = time.perf_counter(), time.process_time()
config.load_config(sys.argv[1])
t2, c2 = time.perf_counter(), time.process_time()
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
mods = sorted(m for m in sys.modules if m.split(".")[0] in {LIBS})
print(json.dumps({"import_ms": (t1 - t0) * 1000, "load_ms": (t2 - t1) * 1000, "import_cpu_ms": (c1 - c0) * 1000,
                  "load_cpu_ms": (c2 - c1) * 1000, "rss_mb": rss / 1024, "modules": mods}))
""".replace("{LIBS}", repr(set(LIBRARIES)))


_LIBRARY_PROBE = r"""
import json, sys, time, tomllib
import edgebot.edge.config as config
rss = lambda: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
data = tomllib.load(open(sys.argv[2], "rb"))
data.pop("bundle"), data["source"].pop("pcap")  # the library alone: no path resolution
r0, t0, c0 = rss(), time.perf_counter(), time.process_time()
if sys.argv[1] == "cattrs":
    import cattrs
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.structure(data, config.AgentConfig)
else:
    import msgspec
    msgspec.convert(data, config.AgentConfig, strict=True)
print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "cpu_ms": (time.process_time() - c0) * 1000,
                  "rss_mb": rss() - r0}))
"""


def library_probe(config_file: Path, runs: int) -> dict[str, Any]:
    """Each candidate library alone, in a process that has imported the config: import it and structure
    the document into :data:`AgentConfig` (a cattrs converter with extra keys forbidden and detailed
    validation, or ``msgspec.convert`` strict); wall time and RSS added. A library not installed is left out."""
    import importlib.util

    out: dict[str, Any] = {}
    for lib in ("msgspec", "cattrs"):
        if importlib.util.find_spec(lib) is None:
            continue
        ms, cpu, rss = [], [], []
        for _ in range(runs):
            proc = subprocess.run([sys.executable, "-c", _LIBRARY_PROBE, lib, str(config_file)],
                                  capture_output=True, text=True, check=True)
            probe = json.loads(proc.stdout)
            ms.append(probe["ms"])
            cpu.append(probe["cpu_ms"])
            rss.append(probe["rss_mb"])
        out[lib] = {"import_and_structure_ms": _median(ms), "import_and_structure_cpu_ms": _median(cpu),
                    "rss_added_mb": _median(rss)}
    return out


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def import_figures(config_file: Path, runs: int) -> dict[str, Any]:
    """``-X importtime`` of the config package and the library; import and first-load wall time; RSS."""
    cumulative: dict[str, list[float]] = {}
    import_ms, load_ms, import_cpu, load_cpu, rss_mb = [], [], [], [], []
    loaded: list[str] = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", _PROBE, str(config_file)],
                              capture_output=True, text=True, check=True)
        for line in proc.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$", line)
            if match and (match.group(4) == "edgebot.edge.config" or match.group(4) in LIBRARIES):
                cumulative.setdefault(match.group(4), []).append(int(match.group(2)) / 1000)
        probe = json.loads(proc.stdout)
        import_ms.append(probe["import_ms"])
        load_ms.append(probe["load_ms"])
        import_cpu.append(probe["import_cpu_ms"])
        load_cpu.append(probe["load_cpu_ms"])
        rss_mb.append(probe["rss_mb"])
        loaded = probe["modules"]
    return {
        "importtime_cumulative_ms": {name: _median(v) for name, v in cumulative.items()},
        "import_config_ms": _median(import_ms),
        "first_load_config_ms": _median(load_ms),
        "import_config_cpu_ms": _median(import_cpu),
        "first_load_config_cpu_ms": _median(load_cpu),
        "rss_after_load_mb": _median(rss_mb),
        "library_modules_loaded": len(loaded),
        "library_top_modules": sorted({m.split(".")[0] for m in loaded}),
    }


def process_figures(cmd: list[str], runs: int) -> dict[str, Any]:
    """Wall time, CPU time (user + sys) and peak RSS (``ru_maxrss``) of ``cmd`` in fresh processes."""
    wall, cpu, rss = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall.append(time.perf_counter() - t0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()[-400:]}")
        cpu.append(usage.ru_utime + usage.ru_stime)
        rss.append(usage.ru_maxrss / 1024)
    return {"wall_s": _median(wall), "cpu_s": _median(cpu), "peak_rss_mb": _median(rss),
            "wall_runs_s": [round(w, 3) for w in wall]}


def main(argv: list[str] | None = None) -> int:
    from edgebot.datasets import PCAPS, resolve

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "demo-out" / "bundle")
    parser.add_argument("--pcap", type=Path, default=None, help="default: the bundled benign 4-1 pcap")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        print(f"error: no bundle at {args.bundle} (make demo builds demo-out/bundle)", file=sys.stderr)
        return 2
    pcap = args.pcap or resolve([PCAPS["hue_4_1"]])[0]
    edgebot = [sys.executable, "-m", "edgebot"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config_file = work / "edgebot.toml"
        config_file.write_text(f'gateway_id = "gw-bench"\nbundle = {json.dumps(str(args.bundle.resolve()))}\n'
                               f'[source]\npcap = {json.dumps(str(pcap))}\n'
                               f'[jsonl]\npath = {json.dumps(str(work / "incidents.jsonl"))}\n'
                               f'[site]\npersist = "no"\n')
        from edgebot.edge.bench.memory import measure_agent_process

        agent = measure_agent_process(args.bundle, pcap, work, args.runs)
        figures = {
            "python": sys.version.split()[0],
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "runs": args.runs,
            "import": import_figures(config_file, args.runs),
            "library_probe": library_probe(config_file, args.runs),
            "check_config": process_figures([*edgebot, "run", "--config", str(config_file), "--check-config"],
                                            args.runs),
            "replay": process_figures([*edgebot, "run", "--config", str(config_file)], args.runs),
            "agent_startup_s": round(agent["startup_s"], 3),
            "agent_startup_runs_s": [round(s, 3) for s in agent["startup_runs_s"]],
            "agent_peak_rss_mb": agent["peak_rss_mb"],
        }
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
