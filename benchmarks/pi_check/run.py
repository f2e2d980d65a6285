"""``make pi-check``: the edgebot wheel with the edge extra on emulated aarch64, compared with x86-64.

Usage, from the repository root (``make pi-check`` builds the demo bundle first if it is missing)::

    .venv/bin/python benchmarks/pi_check/run.py [--bundle demo-out/bundle] [--cache build/pi-check]
                                                [--json build/pi-check/pi-check.json] [--no-probes]

Steps (details in ``env.py`` and ``worker.py``): set up ``qemu-aarch64-static`` and Debian
bookworm's arm64 ``python3.11``; build the wheel; ``pip install --target`` it with the edge extra
for x86-64 and, with pip's ``--platform`` flags, for aarch64; run ``worker.py`` (the agent
in-process over every bundled pcap, plus every window of every bundled Zeek flow log) once on x86-64
and once per aarch64 variant; compare.

Variants (each must pass: the same incident messages as x86-64, and the same decision on at
least 99.9% of all windows):

- ``pi4``: the edge extra as pip resolves it, QEMU CPU ``cortex-a72`` and a Raspberry Pi 4's
  ``/proc/cpuinfo`` and ``/sys/devices/system/cpu``;
- ``pi5``: the same with ``cortex-a76`` and a Raspberry Pi 5's CPU files;
- ``fallback``: ``ai-edge-litert<2.2`` with the x86 host's CPU files (what qemu-user shows),
  the install that works where the CPU probe of 2.2+ crashes.

Probes (recorded as evidence, not pass/fail): 2.2+ constructing an Interpreter with the host's CPU
files (it segfaults) and with the Pi 4 files; edgebot's guard for that case (a one-line error);
QEMU's default ``max`` CPU, which advertises SME, with and without ``sme=off``.

Prints a short report and writes a JSON; exit 0 when every variant passes, 1 when one fails,
2 when the tool chain cannot be set up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgebot import datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import env  # noqa: E402  (this folder's env.py)

REPO = env.REPO
WORKER = Path(__file__).resolve().parent / "worker.py"
MIN_AGREEMENT = 0.999
#: Fields of an incident message that must be equal on both sides (scores are compared numerically).
INCIDENT_KEYS = ("type", "incident_id", "host", "first_seen", "last_seen", "flows", "malicious_flows",
                 "severity", "peers", "community_id", "reason")
#: Variants: name -> (CPU view or None for the host's, QEMU CPU, pip target, extra requirements).
VARIANTS = {
    "pi4": ("pi4", "cortex-a72", "edge", ()),
    "pi5": ("pi5", "cortex-a76", "edge", ()),
    "fallback": (None, "cortex-a72", "edge-litert-lt-2.2", ("ai-edge-litert<2.2",)),
}
SME_PROBE_LOG = "data/" + datasets.STRATOSPHERE_LOGS["008"]
#: Constructs an Interpreter directly (no edgebot), to see whether the runtime itself survives.
CONSTRUCT = ("import sys; from ai_edge_litert.interpreter import Interpreter; "
             "Interpreter(model_content=open(sys.argv[1], 'rb').read(), num_threads=1); print('constructed')")


def inputs() -> tuple[list[Path], list[Path]]:
    """Every bundled pcap (IoT-23 and the Zeek traces) and every bundled Zeek-style flow log."""
    pcaps = sorted(datasets.path("pcaps").glob("*.pcap*")) + sorted(datasets.path(datasets.ZEEK_TRACES).glob("*.pcap*"))
    logs = sorted(datasets.path("iot23").glob("*conn.log.labeled*")) + sorted(
        datasets.path("stratosphere").glob("*conn.log.labeled*"))
    return pcaps, logs


def worker_args(bundle: Path, out: Path, site: Path, pcaps: list[Path], logs: list[Path]) -> list[str]:
    args = [str(WORKER), "--bundle", str(bundle), "--out", str(out), "--site", str(site)]
    for p in pcaps:
        args += ["--pcap", str(p)]
    for p in logs:
        args += ["--flow-log", str(p)]
    return args


def run_timed(cmd: list[str], site: Path, timeout: float = 3600) -> tuple[int, str, float]:
    """Run a worker; returns (exit code, last stderr line, seconds). Exit codes < 0 are signals."""
    environ = dict(os.environ, PYTHONPATH=str(site), PYTHONNOUSERSITE="1", PYTHONHASHSEED="0")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=timeout, cwd=REPO)
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return res.returncode, (lines[-1] if lines else ""), time.perf_counter() - t0


def emulated(qemu: Path, root: Path, cpu: str) -> list[str]:
    return [str(qemu), "-L", str(root), "-cpu", cpu, str(root / "usr/bin/python3.11"), "-S"]


def load_side(out: Path) -> tuple[dict, dict[str, np.ndarray]]:
    result = json.loads((out / "result.json").read_text())
    with np.load(out / "scores.npz") as z:
        return result, {k: z[k] for k in z.files}


def compare(ref: tuple[dict, dict], other: tuple[dict, dict]) -> dict:
    """Largest score differences, decision agreement over all windows, incident equality."""
    (r_res, r_arr), (o_res, o_arr) = ref, other
    threshold = float(r_res["bundle"]["threshold"])
    out: dict = {"inputs": {}, "problems": []}
    agree = windows = 0
    maxdiff = {"fused": 0.0, "hybrid": 0.0, "anomaly": 0.0}
    incidents_equal, incident_score_diff, n_messages = True, 0.0, 0
    for name, info in r_res["inputs"].items():
        o_info = o_res["inputs"].get(name)
        if o_info is None:
            out["problems"].append(f"{name}: missing on this side")
            incidents_equal = False
            continue
        row: dict = {"windows": info["windows"]}
        if info["windows"] != o_info["windows"]:
            out["problems"].append(f"{name}: {o_info['windows']} windows, x86-64 {info['windows']}")
            incidents_equal = False
            continue
        for comp in maxdiff:
            a, b = r_arr[f"{name}.{comp}"].astype(np.float64), o_arr[f"{name}.{comp}"].astype(np.float64)
            d = float(np.max(np.abs(a - b))) if len(a) else 0.0
            row[f"max_diff_{comp}"] = d
            maxdiff[comp] = max(maxdiff[comp], d)
        a, b = r_arr[f"{name}.fused"].astype(np.float64), o_arr[f"{name}.fused"].astype(np.float64)
        same = int(np.sum((a >= threshold) == (b >= threshold)))
        row["agreement"] = same / len(a) if len(a) else 1.0
        agree, windows = agree + same, windows + len(a)
        if info["kind"] == "pcap":
            mine, theirs = info["incidents"], o_info["incidents"]
            equal = len(mine) == len(theirs) and all(
                all(m.get(k) == t.get(k) for k in INCIDENT_KEYS) for m, t in zip(mine, theirs))
            row["incident_messages"] = [len(mine), len(theirs)]
            row["incidents_equal"] = equal
            incidents_equal &= equal
            for m, t in zip(mine, theirs):
                incident_score_diff = max(incident_score_diff, abs(m["score"] - t["score"]),
                                          abs(m["last_score"] - t["last_score"]))
            n_messages += len(mine)
            if not equal:
                out["problems"].append(f"{name}: incident messages differ ({len(theirs)} vs {len(mine)} on x86-64)")
        out["inputs"][name] = row
    out.update({"windows": windows, "agreement": agree / windows if windows else 0.0, "max_diff": maxdiff,
                "incidents_equal": incidents_equal, "incident_messages": n_messages,
                "incident_max_score_diff": incident_score_diff})
    out["passed"] = bool(incidents_equal and windows and out["agreement"] >= MIN_AGREEMENT)
    return out


def probes(qemu: Path, root: Path, pi4_root: Path, site: Path, bundle: Path, ref: tuple, out: Path) -> dict:
    """Evidence about the 2.2+ crash and the SME results (see the module docstring)."""
    model = str(bundle / "hybrid.tflite")
    found: dict = {}
    for label, r in (("host_cpu_files", root), ("pi4_cpu_files", pi4_root)):
        rc, last, s = run_timed(emulated(qemu, r, "max") + ["-c", CONSTRUCT, model], site, timeout=600)
        found[f"construct_{label}"] = {"exit": rc, "signal": -rc if rc < 0 else None, "last_line": last,
                                       "seconds": round(s, 1)}
    rc, last, s = run_timed(emulated(qemu, root, "cortex-a72") + [str(WORKER), "--bundle", str(bundle), "--out",
                                                                   str(out / "guard"), "--site", str(site)], site)
    found["edgebot_guard_host_cpu_files"] = {"exit": rc, "last_line": last, "seconds": round(s, 1)}
    log = REPO / SME_PROBE_LOG
    for cpu in ("max", "max,sme=off"):
        dest = out / f"sme-{cpu.replace(',', '_').replace('=', '-')}"
        rc, last, s = run_timed(emulated(qemu, pi4_root, cpu) + worker_args(bundle, dest, site, [], [log]), site)
        entry: dict = {"exit": rc, "seconds": round(s, 1), "input": SME_PROBE_LOG}
        if rc == 0:
            ref_res, ref_arr = ref
            sub = ({**ref_res, "inputs": {log.name: ref_res["inputs"][log.name]}}, ref_arr)
            c = compare(sub, load_side(dest))
            entry.update({"agreement": c["agreement"], "max_diff_fused": c["max_diff"]["fused"],
                          "windows": c["windows"]})
        else:
            entry["last_line"] = last
        found[f"qemu_cpu_{cpu}"] = entry
    return found


def report(result: dict) -> str:
    lines = [f"pi-check: edgebot wheel + edge extra, emulated aarch64 ({result['qemu']}) vs {result['x86']['machine']}"]
    x = result["x86"]
    lines.append(f"  x86-64     ai-edge-litert {x['ai-edge-litert']}, xgboost-cpu {x.get('xgboost-cpu')}, numpy "
                 f"{x['numpy']}, python {x['python']}: {result['x86_seconds']:.0f} s")
    for name, v in result["variants"].items():
        if "comparison" not in v:
            lines.append(f"  {name:<10} FAILED to run (exit {v['exit']}): {v['last_line']}")
            continue
        c, ver = v["comparison"], v["versions"]
        lines.append(
            f"  {name:<10} QEMU cpu {v['qemu_cpu']}, CPU files {v['cpu_view']}, ai-edge-litert {ver['ai-edge-litert']}: "
            f"{'PASS' if c['passed'] else 'FAIL'} in {v['seconds']:.0f} s")
        lines.append(
            f"             windows {c['windows']:,}, decisions agree {c['agreement']:.4%}, max |score diff| fused "
            f"{c['max_diff']['fused']:.3g}, hybrid {c['max_diff']['hybrid']:.3g}, anomaly {c['max_diff']['anomaly']:.3g}")
        lines.append(f"             incident messages {c['incident_messages']} "
                     f"{'identical' if c['incidents_equal'] else 'DIFFER'} (max score diff "
                     f"{c['incident_max_score_diff']:.3g})")
        for p in c["problems"][:5]:
            lines.append(f"             ! {p}")
    for name, p in result.get("probes", {}).items():
        detail = (f"agreement {p['agreement']:.2%}, max fused diff {p['max_diff_fused']:.3g}" if "agreement" in p
                  else f"exit {p['exit']}" + (f" (signal {p['signal']})" if p.get("signal") else "")
                  + (f": {p['last_line'][:110]}" if p.get("last_line") else ""))
        lines.append(f"  probe {name}: {detail}")
    t = result["timings"]
    lines.append(f"  time: setup {t['setup']:.0f} s, wheel + installs {t['install']:.0f} s, runs {t['runs']:.0f} s, "
                 f"probes {t['probes']:.0f} s, total {t['total']:.0f} s")
    lines.append(f"  {'PASSED' if result['passed'] else 'FAILED'}; JSON: {result['json']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "demo-out/bundle")
    ap.add_argument("--cache", type=Path, default=REPO / "build/pi-check")
    ap.add_argument("--json", type=Path, default=None, help="default: CACHE/pi-check.json")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--no-probes", action="store_true", help="skip the crash and SME probes")
    ap.add_argument("--debian-mirror", default="http://deb.debian.org/debian")
    args = ap.parse_args(argv)
    bundle, cache = args.bundle.resolve(), args.cache.resolve()
    json_path = (args.json or cache / "pi-check.json").resolve()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        print(f"Error: unknown variant(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    if not (bundle / "manifest.json").exists():
        print(f"Error: {bundle} is not a bundle (no manifest.json): run `make demo` first", file=sys.stderr)
        return 2
    if platform.machine() not in ("x86_64", "AMD64"):
        print(f"Error: pi-check compares emulated aarch64 with x86-64 and runs on x86-64, not {platform.machine()}",
              file=sys.stderr)
        return 2
    cache.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    try:
        qemu = env.ensure_qemu(cache)
        root = env.ensure_arm64_root(cache, args.debian_mirror)
        views = {name: env.ensure_view(cache, root, view) for name, view in env.VIEWS.items()}
        t_setup = time.perf_counter() - t_all
        t0 = time.perf_counter()
        wheel = env.build_wheel(cache)
        sites = {"x86": env.install_target(cache, "x86_64", wheel, (), aarch64=False)}
        for name in names:
            _, _, site_name, reqs = VARIANTS[name]
            if site_name not in sites:
                sites[site_name] = env.install_target(cache, f"aarch64-{site_name}", wheel, reqs, aarch64=True)
        if not args.no_probes and "edge" not in sites:
            sites["edge"] = env.install_target(cache, "aarch64-edge", wheel, (), aarch64=True)
        t_install = time.perf_counter() - t0
    except env.SetupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2

    pcaps, logs = inputs()
    out = cache / "out"
    t0 = time.perf_counter()
    rc, last, x86_s = run_timed([sys.executable, "-S"] + worker_args(bundle, out / "x86_64", sites["x86"], pcaps, logs),
                                sites["x86"])
    if rc != 0:
        print(f"Error: the x86-64 run failed (exit {rc}): {last}", file=sys.stderr)
        return 1
    ref = load_side(out / "x86_64")
    result: dict = {"qemu": env.qemu_version(qemu), "x86": ref[0]["versions"], "x86_seconds": x86_s,
                    "bundle": ref[0]["bundle"], "inputs": {"pcaps": [str(p.relative_to(REPO)) for p in pcaps],
                                                           "flow_logs": [str(p.relative_to(REPO)) for p in logs]},
                    "arm64_packages": json.loads((root / ".pi-check-packages.json").read_text()),
                    "min_agreement": MIN_AGREEMENT, "variants": {}}
    for name in names:
        view_name, cpu, site_name, _ = VARIANTS[name]
        view_root = views[view_name] if view_name else root
        dest = out / name
        rc, last, s = run_timed(emulated(qemu, view_root, cpu) + worker_args(bundle, dest, sites[site_name], pcaps,
                                                                             logs), sites[site_name])
        entry: dict = {"qemu_cpu": cpu, "cpu_view": view_name or "x86 host's", "seconds": s, "exit": rc,
                       "site_packages": env.site_versions(sites[site_name])}
        if rc == 0:
            other = load_side(dest)
            entry.update({"versions": other[0]["versions"], "comparison": compare(ref, other)})
        else:
            entry["last_line"] = last
        result["variants"][name] = entry
    t_runs = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not args.no_probes:
        result["probes"] = probes(qemu, root, views["pi4"], sites["edge"], bundle, ref, out)
    t_probes = time.perf_counter() - t0
    result["passed"] = all(v.get("comparison", {}).get("passed", False) for v in result["variants"].values())
    result["timings"] = {"setup": t_setup, "install": t_install, "runs": t_runs, "probes": t_probes,
                         "total": time.perf_counter() - t_all}
    result["json"] = str(json_path.relative_to(REPO)) if json_path.is_relative_to(REPO) else str(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    print(report(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
