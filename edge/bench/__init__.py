"""``edgebot bench``: latency, throughput, memory and start-up of the gateway path, beside Keras under TensorFlow.

:func:`run_bench` measures, in one run (all figures in one dict, see :data:`RESULT_KEYS`):

1. **model**, per batch size: the int8 networks on the installed interpreter (hybrid +
   autoencoder, quantization included), the whole bundle (networks + fuser), the fuser
   alone, the featurizer alone, and, when the run dir and TensorFlow are there, the same
   networks as float TFLite (on the same interpreter) and as Keras models under TensorFlow.
   Latency per call (p50/p95/p99) and windows per second at the median.
2. **pipeline** (with a pcap): end-to-end replay through the agent (meter, featurizer,
   windows, scoring, incidents, sink) in a fresh process pinned to one core, with a null
   and a JSON-lines sink: packets/s, flows/s, flow-end-to-verdict latency.
3. **memory**: peak RSS and start-up-to-first-score of the agent in a fresh process where
   TensorFlow, Keras, scikit-learn and pandas cannot be imported (the edge extra only), and
   of a process that imports TensorFlow and loads the Keras models.
4. **ratios** and **machine** (CPU, cores, load, Python, package versions, interpreter and
   its delegate).

Where the time goes when nothing else runs in this process: the Keras, float-conversion
and TensorFlow-memory parts run in ``python -m edgebot.convert.bench_worker`` (it imports
TensorFlow); the agent parts in ``edgebot.edge.bench_worker`` with the training stack
blocked. This module never imports TensorFlow.

Finding the Keras models: the bundle manifest does not record the run dir it came from, so
``run_dir`` is taken from the caller (``--run-dir``), else from the first of these that
holds ``cnn_lstm.keras``, ``autoencoder.keras`` and a ``spec.json`` whose window, featurizer
hash and thresholds equal the bundle's: ``<bundle>/../run`` (the layout ``make demo``
writes), then the bundle path without a ``-bundle`` / ``_bundle`` suffix
(``runs/x-bundle`` -> ``runs/x``). Without one, the float and Keras parts are skipped with
a note.
"""

from __future__ import annotations

import gc
import json
import logging
import lzma
import gzip
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edgebot.errors import BundleError, EdgebotError
from edgebot.lean import TRAINING_STACK

log = logging.getLogger(__name__)

#: Version of the result layout; bump when a pinned key changes.
BENCH_SCHEMA = 1
#: Top-level keys of every result (pinned by tests/test_bench.py).
RESULT_KEYS: tuple[str, ...] = ("schema", "settings", "model", "pipeline", "memory", "ratios", "machine")
#: Model-level measurements, in the order they are printed.
MODEL_KINDS: tuple[str, ...] = (
    "int8", "float_tflite", "keras", "keras_eager", "keras_graph", "keras_predict", "bundle", "fuser", "featurizer",
)
#: The Keras paths timed by the TensorFlow worker: result key -> (worker key, how it is called).
KERAS_PATHS: dict[str, tuple[str, str]] = {
    "keras_eager": ("call", "model(x, training=False), eager"),
    "keras_graph": ("graph", "the same call compiled with tf.function (dynamic batch signature)"),
    "keras_predict": ("predict", "model.predict(x, verbose=0)"),
}
#: Keys of one latency measurement.
STAT_KEYS: tuple[str, ...] = ("batch", "calls", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "per_s", "us_per_item")
#: Packages whose versions the machine section records.
PACKAGES: tuple[str, ...] = (
    "edgebot", "numpy", "ai-edge-litert", "tflite-runtime", "xgboost", "xgboost-cpu", "paho-mqtt",
    "tensorflow", "tensorflow-cpu", "keras", "nfstream",
)
#: Python snippet that starts an edge worker with the training stack blocked, so that an
#: import of any of it fails as on a gateway that never installed it.
EDGE_BOOT = (
    "import sys\n"
    f"for _m in {TRAINING_STACK!r}:\n"
    "    sys.modules[_m] = None\n"
    "from edgebot.edge.bench_worker import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
WORKER_TIMEOUT_S = 1800.0
_INSTALL_TRAIN = "pip install 'edgebot[train]'"


# ----------------------------------------------------------------------------------------------
# statistics and timing


def call_stats(seconds: Sequence[float], batch: int) -> dict:
    """Summarize per-call times.

    Parameters
    ----------
    seconds
        Wall time of each call, in seconds.
    batch
        Items (windows or flows) per call.

    Returns
    -------
    dict
        :data:`STAT_KEYS`: ``p50_ms``/``p95_ms``/``p99_ms``/``mean_ms`` per call,
        ``per_s`` items per second at the median call, ``us_per_item`` at the median.
    """
    arr = np.asarray(seconds, dtype=np.float64) * 1000.0
    if arr.size == 0:
        raise ValueError("no timings to summarize")
    p50, p95, p99 = (float(v) for v in np.percentile(arr, [50, 95, 99]))
    return {
        "batch": int(batch), "calls": int(arr.size),
        "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "mean_ms": float(arr.mean()),
        "per_s": batch / (p50 / 1000.0) if p50 > 0 else 0.0,
        "us_per_item": p50 * 1000.0 / batch,
    }


def time_calls(fn: Callable[[], Any], repeat: int, warmup: Optional[int] = None) -> list[float]:
    """Wall time in seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones.

    The garbage collector is paused while timing (a collection would land on one call).
    """
    warmup = max(2, min(20, repeat // 10)) if warmup is None else warmup
    for _ in range(warmup):
        fn()
    clock = time.perf_counter
    out = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t = clock()
            fn()
            out.append(clock() - t)
    finally:
        if enabled:
            gc.enable()
    return out


def percentiles_ms(values_ms: Sequence[float]) -> dict:
    """``{"p50": .., "p95": .., "p99": ..}`` of values already in milliseconds (None when empty)."""
    if len(values_ms) == 0:
        return {"p50": None, "p95": None, "p99": None}
    p = np.percentile(np.asarray(values_ms, dtype=np.float64), [50, 95, 99])
    return {"p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2])}


def _skipped(note: str) -> dict:
    return {"available": False, "note": note, "batch": {}}


# ----------------------------------------------------------------------------------------------
# inputs


def synthetic_flows(n: int, seed: int = 0) -> list:
    """``n`` seeded, plausible flow records (a few hosts, TCP/UDP, Zeek states and histories)."""
    from edgebot.flow import FlowRecord

    rng = np.random.default_rng(seed)
    states = ("S0", "SF", "REJ", "S1", "OTH", "RSTO")
    histories = ("S", "ShAdDaFf", "Sr", "ShAdDa", "D", "ShR")
    flows = []
    ts = 1_545_000_000.0
    for i in range(n):
        ts += float(rng.exponential(0.05))
        tcp = rng.random() < 0.8
        k = int(rng.integers(len(states)))
        pk_o, pk_r = int(rng.integers(1, 20)), int(rng.integers(0, 20))
        flows.append(FlowRecord(
            ts=ts, orig_h=f"192.168.1.{int(rng.integers(2, 12))}", orig_p=int(rng.integers(1024, 65535)),
            resp_h=f"10.0.{int(rng.integers(0, 255))}.{int(rng.integers(1, 255))}",
            resp_p=int(rng.choice([23, 80, 443, 2323, 6667, 53, 123])), proto="tcp" if tcp else "udp",
            duration=float(rng.exponential(2.0)), orig_bytes=int(rng.integers(0, 5000)),
            resp_bytes=int(rng.integers(0, 50000)), conn_state=states[k], history=histories[k] if tcp else "Dd",
            orig_pkts=pk_o, orig_ip_bytes=pk_o * 60 + int(rng.integers(0, 5000)),
            resp_pkts=pk_r, resp_ip_bytes=pk_r * 60 + int(rng.integers(0, 50000)),
        ))
    return flows


def pcap_flows(pcap: str | os.PathLike) -> list:
    """Every flow the gateway meter makes of a pcap (start-time order)."""
    from edgebot.edge.sources.pcap import PcapSource

    source = PcapSource(pcap)
    try:
        flows = [f for f in source if f is not None]
    finally:
        source.close()
    flows.sort(key=lambda f: f.ts)
    return flows


def bench_windows(bundle: Any, flows: list, n: int) -> np.ndarray:
    """``(n, T, F) float32`` scaled windows of ``flows`` (cycled when there are fewer)."""
    from edgebot.features import featurize
    from edgebot.windows import make_windows

    X = bundle.scale(featurize(flows))
    W = make_windows(X, [f.orig_h for f in flows], np.array([f.ts for f in flows]), bundle.window)
    if len(W) == 0:
        raise EdgebotError("no flows to build benchmark windows from")
    reps = -(-n // len(W))
    return np.ascontiguousarray(np.concatenate([W] * reps)[:n]) if reps > 1 else np.ascontiguousarray(W[:n])


# ----------------------------------------------------------------------------------------------
# the run dir


def _spec_matches(run: Path, manifest: dict) -> tuple[bool, str]:
    try:
        spec = json.loads((run / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, f"{run / 'spec.json'} unreadable ({exc.__class__.__name__})"
    th = manifest.get("thresholds", {})
    checks = (
        (spec.get("window"), manifest.get("window"), "window"),
        (spec.get("featurizer", {}).get("hash"), manifest.get("featurizer", {}).get("hash"), "featurizer hash"),
        (spec.get("ae_threshold"), th.get("autoencoder"), "autoencoder threshold"),
        (spec.get("fused_threshold"), th.get("fused"), "fused threshold"),
    )
    for got, want, what in checks:
        if got != want:
            return False, f"{run} has another {what} than the bundle ({got!r} vs {want!r})"
    return True, ""


def _has_models(run: Path) -> bool:
    return all((run / name).is_file() for name in ("cnn_lstm.keras", "autoencoder.keras", "spec.json"))


def find_run_dir(bundle_dir: str | os.PathLike, manifest: dict,
                 run_dir: str | os.PathLike | None = None) -> tuple[Optional[Path], str]:
    """The run dir holding the bundle's Keras models (see the module doc for the rule).

    Returns
    -------
    (path or None, note)
        ``note`` says how it was found, or why there is none.
    """
    if run_dir is not None:
        run = Path(run_dir)
        if not _has_models(run):
            raise BundleError(f"run dir {run} lacks cnn_lstm.keras, autoencoder.keras or spec.json: "
                              "give the --out of `edgebot train` that the bundle was converted from")
        ok, why = _spec_matches(run, manifest)
        if not ok:
            log.warning("%s; comparing anyway", why)
            return run, f"given; {why}"
        return run, "given"
    bundle_dir = Path(bundle_dir).resolve()
    candidates = [bundle_dir.parent / "run"]
    for suffix in ("-bundle", "_bundle"):
        if bundle_dir.name.endswith(suffix) and len(bundle_dir.name) > len(suffix):
            candidates.append(bundle_dir.with_name(bundle_dir.name[: -len(suffix)]))
    for run in candidates:
        if _has_models(run):
            ok, why = _spec_matches(run, manifest)
            if ok:
                return run, f"found beside the bundle ({run})"
            log.info("not using %s: %s", run, why)
    return None, ("no run dir with the bundle's Keras models (pass --run-dir; looked at "
                  + ", ".join(str(c) for c in candidates) + ")")


def tensorflow_available() -> tuple[bool, str]:
    """Whether a TensorFlow worker could import TensorFlow (without importing it here)."""
    import importlib.util

    if "tensorflow" in sys.modules and sys.modules["tensorflow"] is None:
        return False, f"TensorFlow is not importable here (train extra missing: {_INSTALL_TRAIN})"
    try:
        spec = importlib.util.find_spec("tensorflow")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return False, f"TensorFlow is not installed ({_INSTALL_TRAIN} to compare with Keras)"
    return True, ""


# ----------------------------------------------------------------------------------------------
# machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _load() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def delegate_info(bundle_dir: str | os.PathLike) -> dict:
    """The delegate the interpreter applies to the bundle's models, from its banner and nodes.

    Call it before the process creates any other interpreter: LiteRT prints its
    ``Created TensorFlow Lite XNNPACK delegate`` banner once per process.
    """
    from edgebot.bundle import read_manifest
    from edgebot.runtime import find_interpreter

    try:
        manifest = read_manifest(bundle_dir)
        cls, _ = find_interpreter()
    except EdgebotError as exc:
        return {"delegate": f"unknown ({exc})"}
    info: dict = {"threads": 1, "models": {}}
    banner = ""
    for key, name in (("hybrid", "hybrid.tflite"), ("autoencoder", "autoencoder.tflite")):
        path = Path(bundle_dir) / manifest["models"][key]["file"]
        with tempfile.TemporaryFile() as err:
            saved = os.dup(2)
            os.dup2(err.fileno(), 2)
            try:
                it = cls(model_content=path.read_bytes(), num_threads=1)
                it.allocate_tensors()
                ops = [d["op_name"] for d in it._get_ops_details()]
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            err.seek(0)
            banner += err.read().decode("utf-8", "replace")
        info["models"][name] = {"nodes": len(ops), "delegated_partitions": ops.count("DELEGATE")}
    delegates = sorted({line.split("Created TensorFlow Lite ", 1)[1].split(" delegate")[0]
                        for line in banner.splitlines() if "Created TensorFlow Lite " in line})
    partitions = sum(m["delegated_partitions"] for m in info["models"].values())
    if delegates:
        info["delegate"] = ", ".join(delegates)
    else:
        info["delegate"] = "a default delegate (unnamed)" if partitions else "none (built-in kernels)"
    return info


def machine_info(bundle: Any = None) -> dict:
    """CPU, cores, load, Python, OS, package versions and the interpreter with its delegate."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info: dict = {
        "cpu": _cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(), "affinity": affinity,
        "load_avg": _load(), "python": platform.python_version(), "implementation": platform.python_implementation(),
        "system": platform.platform(), "packages": {p: _version(p) for p in PACKAGES},
    }
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        info["memory_gb"] = round(int(mem[1]) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        info["memory_gb"] = None
    if bundle is not None:
        info["interpreter"] = {"runtime": bundle.runtime, "version": bundle.runtime_version}
    return info


# ----------------------------------------------------------------------------------------------
# model level


class FloatTFLite:
    """A float TFLite model with a dynamic batch, one interpreter per batch size (as :class:`Int8Model` does)."""

    def __init__(self, path: Path, interpreter_cls: type, num_threads: int = 1):
        from edgebot.runtime import quiet_native_stderr

        self._content = path.read_bytes()
        self._cls = interpreter_cls
        self._threads = num_threads
        self._quiet = quiet_native_stderr
        self._its: dict[int, tuple] = {}
        with quiet_native_stderr():
            probe = interpreter_cls(model_content=self._content, num_threads=num_threads)
        self.input_shape = tuple(int(d) for d in probe.get_input_details()[0]["shape_signature"][1:])

    def run(self, x: np.ndarray) -> np.ndarray:
        entry = self._its.get(len(x))
        if entry is None:
            with self._quiet():
                it = self._cls(model_content=self._content, num_threads=self._threads)
                i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
                it.resize_tensor_input(i, [len(x), *self.input_shape])
                it.allocate_tensors()
            entry = self._its[len(x)] = (it, i, o)
        it, i, o = entry
        it.set_tensor(i, np.ascontiguousarray(x, dtype=np.float32))
        it.invoke()
        return it.get_tensor(o)


def _networks_fn(hybrid_run: Callable, ae_run: Callable, W: np.ndarray) -> Callable[[], Any]:
    last = np.ascontiguousarray(W[:, -1, :])

    def call() -> None:
        hybrid_run(W)
        ae_run(last)

    return call


def measure_int8(bundle: Any, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int) -> dict:
    """The int8 networks (hybrid + autoencoder, with (de)quantization) per batch size."""
    out = {"available": True, "note": f"{bundle.runtime} {bundle.runtime_version}, 1 thread; hybrid + autoencoder",
           "batch": {}}
    for b in batch_sizes:
        fn = _networks_fn(bundle._hybrid.run, bundle._autoencoder.run, windows[:b])
        out["batch"][str(b)] = call_stats(time_calls(fn, repeat), b)
    return out


def measure_bundle(bundle: Any, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int) -> dict:
    """``Bundle.score_components``: networks, reconstruction error and the XGBoost fuser."""
    out = {"available": True, "note": "Bundle.score_components: int8 networks + fuser", "batch": {}}
    for b in batch_sizes:
        W = windows[:b]
        out["batch"][str(b)] = call_stats(time_calls(lambda: bundle.score_components(W), repeat), b)
    return out


def measure_fuser(bundle: Any, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int) -> dict:
    """The XGBoost fuser alone (``inplace_predict`` on its input matrix)."""
    from edgebot.fusion import fuser_inputs

    out = {"available": True, "note": f"xgboost {_version('xgboost') or _version('xgboost-cpu')} inplace_predict, "
                                      "1 thread", "batch": {}}
    comps = bundle.score_components(windows[: max(batch_sizes)])
    last = np.ascontiguousarray(windows[:, -1, :])
    for b in batch_sizes:
        Z = fuser_inputs(comps["hybrid"][:b], comps["anomaly"][:b], last[:b], bundle._raw_index)
        out["batch"][str(b)] = call_stats(time_calls(lambda: bundle._booster.inplace_predict(Z), repeat), b)
    return out


def measure_featurizer(bundle: Any, flows: list, batch_sizes: Sequence[int], repeat: int) -> dict:
    """``featurize`` + the bundle's scaler, per batch of flow records."""
    from edgebot.features import featurize

    out = {"available": True, "note": "featurize + min-max scaling of flow records (unit: flows)", "batch": {}}
    need = max(batch_sizes)
    pool = (flows * (-(-need // len(flows))))[:need] if flows else synthetic_flows(need)
    for b in batch_sizes:
        part = pool[:b]
        out["batch"][str(b)] = call_stats(time_calls(lambda: bundle.scale(featurize(part)), repeat), b)
    return out


def measure_float_tflite(paths: dict, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int,
                         runtime: Optional[str]) -> dict:
    """The float32 TFLite conversions of the run's Keras models on the gateway interpreter."""
    from edgebot.runtime import find_interpreter, runtime_version

    cls, name = find_interpreter(runtime)
    hybrid = FloatTFLite(Path(paths["hybrid"]), cls)
    ae = FloatTFLite(Path(paths["autoencoder"]), cls)
    out = {"available": True, "note": f"float32 TFLite (converted from the run's Keras models) on {name} "
                                      f"{runtime_version(name)}, 1 thread", "batch": {}}
    for b in batch_sizes:
        fn = _networks_fn(hybrid.run, ae.run, windows[:b])
        out["batch"][str(b)] = call_stats(time_calls(fn, repeat), b)
    return out


# ----------------------------------------------------------------------------------------------
# workers


def _run_worker(cmd: list[str], what: str, timeout: float = WORKER_TIMEOUT_S,
                env: Optional[dict] = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    if env:
        full_env.update(env)
    log.info("bench: %s", what)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def _worker_json(proc: subprocess.CompletedProcess, out: Path, what: str) -> dict:
    if proc.returncode == 0 and out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
    reason = tail[-1][:300] if tail else f"exit code {proc.returncode}"
    if out.is_file():
        try:
            reason = json.loads(out.read_text(encoding="utf-8")).get("error", reason)
        except ValueError:
            pass
    raise EdgebotError(f"benchmark worker for {what} failed: {reason}")


def edge_worker_cmd(mode: str, *args: str) -> list[str]:
    """Command of an edge worker (training stack blocked before edgebot is imported)."""
    return [sys.executable, "-c", EDGE_BOOT, mode, *args]


def run_keras_worker(run_dir: Path, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int,
                     workdir: Path, threads: int = 1) -> dict:
    """Time the Keras models under TensorFlow and convert them to float TFLite (subprocess)."""
    np.save(workdir / "windows.npy", windows)
    out = workdir / "keras.json"
    cmd = [sys.executable, "-m", "edgebot.convert.bench_worker", "latency", "--run-dir", str(run_dir),
           "--windows", str(workdir / "windows.npy"), "--batch", ",".join(map(str, batch_sizes)),
           "--repeat", str(repeat), "--threads", str(threads), "--float-out", str(workdir), "--out", str(out)]
    return _worker_json(_run_worker(cmd, "Keras latency and float conversion"), out, "Keras latency")


def measure_agent_process(bundle_dir: Path, pcap: Optional[Path], workdir: Path, runs: int) -> dict:
    """Start-up to first score and peak RSS of the agent in fresh edge-only processes (median of ``runs``)."""
    results = []
    for i in range(runs):
        out = workdir / f"agent-{i}.json"
        args = ["--bundle", str(bundle_dir), "--out", str(out)]
        if pcap is not None:
            args += ["--pcap", str(pcap)]
        t0 = time.time()
        proc = _run_worker(edge_worker_cmd("agent", *args, "--t0", repr(t0)), "agent start-up and memory")
        r = _worker_json(proc, out, "agent start-up")
        r["startup_s"] = r["t_first_score"] - t0
        r["phases_s"] = {
            "interpreter_start": r["t_main"] - t0, "imports": r["t_imported"] - r["t_main"],
            "bundle_load": r["t_bundle_loaded"] - r["t_imported"],
            "first_score": r["t_first_score"] - r["t_bundle_loaded"],
        }
        results.append(r)
    results.sort(key=lambda r: r["startup_s"])
    med = results[len(results) // 2]
    return {
        "startup_s": med["startup_s"],
        "startup_runs_s": [r["startup_s"] for r in results],
        "phases_s": med["phases_s"],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "rss_at_first_score_mb": med["rss_at_first_score_mb"],
        "workload": med["workload"],
        "blocked_modules": med["blocked_modules"],
        "training_stack_loaded": med["training_stack_loaded"],
    }


def measure_tf_process(run_dir: Path, workdir: Path, runs: int) -> dict:
    """Start-up to first score and peak RSS of a process that imports TensorFlow and loads the Keras models."""
    results = []
    for i in range(runs):
        out = workdir / f"tf-{i}.json"
        t0 = time.time()
        cmd = [sys.executable, "-m", "edgebot.convert.bench_worker", "startup", "--run-dir", str(run_dir),
               "--out", str(out), "--t0", repr(t0)]
        r = _worker_json(_run_worker(cmd, "TensorFlow start-up and memory"), out, "TensorFlow start-up")
        r["startup_s"] = r["t_first_score"] - t0
        results.append(r)
    results.sort(key=lambda r: r["startup_s"])
    med = results[len(results) // 2]
    return {
        "startup_s": med["startup_s"], "startup_runs_s": [r["startup_s"] for r in results],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "phases_s": {"import_tensorflow": med["t_imported"] - med["t_main"],
                     "load_models": med["t_loaded"] - med["t_imported"],
                     "first_score": med["t_first_score"] - med["t_loaded"]},
        "versions": med.get("versions", {}),
    }


def decompressed_copy(pcap: Path, workdir: Path) -> Path:
    """``pcap`` itself when uncompressed, else a decompressed copy in ``workdir``."""
    with open(pcap, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\xfd7zXZ"):
        opener: Any = lzma.open
    elif magic.startswith(b"\x1f\x8b"):
        opener = gzip.open
    else:
        return pcap
    name = pcap.name
    for ext in (".xz", ".gz"):
        name = name[: -len(ext)] if name.endswith(ext) else name
    dest = workdir / name
    with opener(pcap, "rb") as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return dest


def measure_pipeline(bundle_dir: Path, pcap: Path, workdir: Path, runs: int) -> dict:
    """End-to-end replay in a fresh edge-only process pinned to one core, null and JSON-lines sinks."""
    plain = decompressed_copy(pcap, workdir)
    sinks = {}
    for sink in ("null", "jsonl"):
        out = workdir / f"pipeline-{sink}.json"
        args = ["--bundle", str(bundle_dir), "--pcap", str(plain), "--sink", sink, "--repeat", str(runs),
                "--jsonl-path", str(workdir / "incidents.jsonl"), "--out", str(out)]
        proc = _run_worker(edge_worker_cmd("pipeline", *args), f"pipeline replay ({sink} sink)")
        sinks[sink] = _summarize_replays(_worker_json(proc, out, f"pipeline ({sink} sink)"))
    compressed = None
    if plain != pcap:
        out = workdir / "pipeline-compressed.json"
        args = ["--bundle", str(bundle_dir), "--pcap", str(pcap), "--sink", "null", "--repeat", str(runs),
                "--out", str(out)]
        proc = _run_worker(edge_worker_cmd("pipeline", *args), "pipeline replay (compressed input)")
        compressed = _summarize_replays(_worker_json(proc, out, "pipeline (compressed input)"))
    head = sinks["jsonl"]
    return {
        "available": True,
        "note": ("agent replay (meter, featurizer, windows, int8 scoring, incidents, sink) in a fresh edge-only "
                 "process pinned to one core; headline figures: JSON-lines sink, median run by wall time"),
        "pcap": str(pcap),
        "input": "decompressed copy (xz/gzip decoding not included)" if plain != pcap else "as given",
        "packets": head["packets"], "flows": head["flows"],
        "packets_per_s": head["packets_per_s"], "flows_per_s": head["flows_per_s"],
        "packets_per_cpu_s": head["packets_per_cpu_s"],
        "verdict_latency_ms": head["verdict_latency_ms"],
        "core": head["core"], "runs": runs,
        "sinks": sinks,
        "compressed_input": compressed,
    }


def _summarize_replays(result: dict) -> dict:
    runs = sorted(result["runs"], key=lambda r: r["seconds"])
    med = runs[len(runs) // 2]
    return {
        "packets": med["packets"], "flows": med["flows"], "seconds": med["seconds"], "cpu_seconds": med["cpu_seconds"],
        "packets_per_s": med["packets"] / med["seconds"], "flows_per_s": med["flows"] / med["seconds"],
        "packets_per_cpu_s": med["packets"] / med["cpu_seconds"] if med["cpu_seconds"] > 0 else None,
        "packets_per_s_runs": [r["packets"] / r["seconds"] for r in runs],
        "verdict_latency_ms": med["verdict_latency_ms"], "incidents": med["incidents"],
        "peak_rss_mb": result.get("peak_rss_mb"), "core": result.get("core"),
    }


def _empty_pipeline(note: str) -> dict:
    return {"available": False, "note": note, "packets": None, "flows": None, "packets_per_s": None,
            "flows_per_s": None, "packets_per_cpu_s": None,
            "verdict_latency_ms": {"p50": None, "p95": None, "p99": None}, "sinks": {}, "compressed_input": None}


# ----------------------------------------------------------------------------------------------
# ratios


def fastest_keras(model: dict, batch_sizes: Sequence[int], note: str) -> dict:
    """Per batch size, the Keras path with the lowest median latency (its name in ``path``).

    The Keras figure that the ratios use: the best a user gets from the Keras model under
    TensorFlow, so that no ratio is flattered by a slow calling convention.
    """
    out: dict = {"available": True, "batch": {},
                 "note": f"{note}; per batch size the fastest of eager call, tf.function and predict"}
    for b in batch_sizes:
        best_kind = min(KERAS_PATHS, key=lambda kind: model[kind]["batch"][str(b)]["p50_ms"])
        out["batch"][str(b)] = {**model[best_kind]["batch"][str(b)], "path": best_kind}
    return out


def compute_ratios(model: dict, memory: dict, batch_sizes: Sequence[int]) -> dict:
    """Keras / int8 and float / int8 median latency per batch, TF / agent RSS and start-up.

    ``keras_over_int8_batchN`` uses the fastest Keras path at that batch size (see
    :func:`fastest_keras`); ``keras_eager_...``, ``keras_graph_...`` and ``keras_predict_...``
    give each path. A ratio is None when one side was not measured. Pinned keys: ``keras_over_int8_batch1``,
    ``keras_over_int8_batch256``, ``tf_rss_over_agent_rss`` (present even when None).
    """
    def over(kind: str, b: int) -> Optional[float]:
        num = model.get(kind, {}).get("batch", {}).get(str(b))
        den = model.get("int8", {}).get("batch", {}).get(str(b))
        if not num or not den or den["p50_ms"] <= 0:
            return None
        return num["p50_ms"] / den["p50_ms"]

    ratios: dict = {}
    for b in sorted(set(batch_sizes) | {1, 256}):
        ratios[f"keras_over_int8_batch{b}"] = over("keras", b)
        for kind in KERAS_PATHS:
            ratios[f"{kind}_over_int8_batch{b}"] = over(kind, b)
        ratios[f"float_tflite_over_int8_batch{b}"] = over("float_tflite", b)
    agent_rss, tf_rss = memory.get("agent_peak_rss_mb"), memory.get("tf_peak_rss_mb")
    ratios["tf_rss_over_agent_rss"] = tf_rss / agent_rss if agent_rss and tf_rss else None
    agent_st, tf_st = memory.get("agent_startup_s"), memory.get("tf_startup_s")
    ratios["tf_startup_over_agent_startup"] = tf_st / agent_st if agent_st and tf_st else None
    return ratios


# ----------------------------------------------------------------------------------------------
# the whole run


def run_bench(bundle_dir: str | os.PathLike, pcap: str | os.PathLike | None = None,
              batch_sizes: Sequence[int] = (1, 32, 256), repeat: int = 200, *,
              run_dir: str | os.PathLike | None = None, keras: bool = True, pipeline_runs: int = 3,
              startup_runs: int = 3, seed: int = 0) -> dict:
    """Measure the gateway path of a bundle (and Keras under TensorFlow when it can).

    Parameters
    ----------
    bundle_dir
        An int8 bundle (``edgebot convert --out``).
    pcap
        A capture to replay end to end (and to draw realistic windows from); without it the
        pipeline section is marked unavailable and the windows are synthetic (seeded).
    batch_sizes
        Windows per call at model level.
    repeat
        Timed calls per model-level measurement (Keras ``predict`` gets at most 50).
    run_dir
        The run dir of the bundle's Keras models (default: found by the rule in the module doc).
    keras
        False skips the TensorFlow parts (float TFLite, Keras, TensorFlow process).
    pipeline_runs, startup_runs
        Replays per sink and fresh processes per start-up measurement (medians are reported).
    seed
        Seed of the synthetic inputs.

    Returns
    -------
    dict
        JSON-ready (strict: no NaN), with the keys of :data:`RESULT_KEYS`: ``model`` (per kind,
        ``available``, ``note`` and ``batch`` -> :func:`call_stats` per batch size), ``pipeline``
        (``packets_per_s``, ``flows_per_s``, ``verdict_latency_ms`` p50/p95/p99, per sink),
        ``memory`` (``agent_peak_rss_mb``, ``agent_startup_s``, ``tf_peak_rss_mb``,
        ``tf_startup_s`` and details), ``ratios`` (:func:`compute_ratios`) and ``machine``.
        What was not measured is None (or ``available: False`` with a ``note``), never absent.

    Raises
    ------
    BundleError
        The bundle does not load; a given run dir lacks the Keras models.
    EdgebotError
        A worker failed.
    """
    from edgebot.bundle import load_bundle

    batch_sizes = sorted({int(b) for b in batch_sizes})
    if not batch_sizes or batch_sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {batch_sizes}")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    bundle_dir = Path(bundle_dir)
    pcap_path = Path(pcap) if pcap is not None else None
    started = time.time()
    load_before = _load()
    try:  # first: the runtime prints its delegate banner once per process
        delegate = delegate_info(bundle_dir)
    except Exception as exc:  # a diagnostic only: load_bundle below reports a broken bundle properly
        delegate = {"delegate": f"unknown ({exc.__class__.__name__})"}
    bundle = load_bundle(bundle_dir)
    machine = machine_info(bundle)
    machine["interpreter"].update(delegate)
    need = max(batch_sizes)
    if pcap_path is not None:
        flows = pcap_flows(pcap_path)
        inputs = f"windows of the flows of {pcap_path.name} ({len(flows)} flows, cycled to {need})"
    else:
        flows = synthetic_flows(max(need, 64), seed)
        inputs = f"windows of {len(flows)} seeded synthetic flows (seed {seed})"
    windows = bench_windows(bundle, flows, need)

    model: dict = {"inputs": inputs, "batch_sizes": batch_sizes, "repeat": repeat}
    model["int8"] = measure_int8(bundle, windows, batch_sizes, repeat)
    model["bundle"] = measure_bundle(bundle, windows, batch_sizes, repeat)
    model["fuser"] = measure_fuser(bundle, windows, batch_sizes, repeat)
    model["featurizer"] = measure_featurizer(bundle, flows, batch_sizes, repeat)

    memory: dict = {}
    tf_ok, tf_note = tensorflow_available()
    run, run_note = find_run_dir(bundle_dir, bundle.manifest, run_dir)
    if not keras:
        skip_note = "skipped (keras=False)"
    elif not tf_ok:
        skip_note = f"skipped: {tf_note}"
    elif run is None:
        skip_note = f"skipped: {run_note}"
    else:
        skip_note = ""
    with tempfile.TemporaryDirectory(prefix="edgebot-bench-") as tmp:
        work = Path(tmp)
        if skip_note:
            for kind in ("float_tflite", "keras", *KERAS_PATHS):
                model[kind] = _skipped(skip_note)
        else:
            k = run_keras_worker(run, windows, batch_sizes, repeat, work)
            note = (f"TensorFlow {k['versions'].get('tensorflow')} / Keras {k['versions'].get('keras')}, "
                    f"{k['threads']} intra-op thread(s); run dir {run_note}")
            for kind, (key, how) in KERAS_PATHS.items():
                model[kind] = {"available": True, "note": f"{note}; {how}",
                               "batch": {str(b): call_stats(k[key][str(b)], b) for b in batch_sizes}}
            model["keras"] = fastest_keras(model, batch_sizes, note)
            if k.get("float_models"):
                model["float_tflite"] = measure_float_tflite(k["float_models"], windows, batch_sizes, repeat,
                                                             bundle.runtime)
            else:
                model["float_tflite"] = _skipped(f"float conversion failed: {k.get('float_error', '?')}")
        model["run_dir"] = str(run) if run else None
        model["run_dir_note"] = run_note

        agent = measure_agent_process(bundle_dir, pcap_path, work, startup_runs)
        memory.update(agent_peak_rss_mb=agent["peak_rss_mb"], agent_startup_s=agent["startup_s"], agent=agent)
        if skip_note:
            memory.update(tf_peak_rss_mb=None, tf_startup_s=None, tf={"available": False, "note": skip_note})
        else:
            tf_proc = measure_tf_process(run, work, startup_runs)
            memory.update(tf_peak_rss_mb=tf_proc["peak_rss_mb"], tf_startup_s=tf_proc["startup_s"],
                          tf={"available": True, "note": "imports TensorFlow, loads cnn_lstm.keras and "
                                                         "autoencoder.keras, scores one window", **tf_proc})
        if pcap_path is not None:
            pipeline = measure_pipeline(bundle_dir, pcap_path, work, pipeline_runs)
        else:
            pipeline = _empty_pipeline("no pcap given (--pcap FILE measures end-to-end replay)")

    machine["load_avg_before"] = load_before
    machine["load_avg_after"] = _load()
    machine["bench_seconds"] = round(time.time() - started, 1)
    return {
        "schema": BENCH_SCHEMA,
        "settings": {"bundle": str(bundle_dir), "bundle_id": bundle.bundle_id, "window": bundle.window,
                     "pcap": str(pcap_path) if pcap_path else None,
                     "batch_sizes": batch_sizes, "repeat": repeat, "pipeline_runs": pipeline_runs,
                     "startup_runs": startup_runs, "seed": seed,
                     "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))},
        "model": model,
        "pipeline": pipeline,
        "memory": memory,
        "ratios": compute_ratios(model, memory, batch_sizes),
        "machine": machine,
    }


# ----------------------------------------------------------------------------------------------
# the table


def _fmt(value: Any, spec: str = ",.0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_bench(result: dict) -> str:
    """The result as tables for the terminal (the JSON has every figure)."""
    lines: list[str] = []
    m, st = result["machine"], result["settings"]
    interp = m.get("interpreter", {})
    lines.append(f"machine   {m['cpu']} ({m['arch']}), {m['cores']} cores, Python {m['python']}, "
                 f"load {m.get('load_avg_before')} -> {m.get('load_avg_after')}")
    lines.append(f"runtime   {interp.get('runtime')} {interp.get('version')}, delegate {interp.get('delegate')}, "
                 f"1 thread; xgboost {m['packages'].get('xgboost') or m['packages'].get('xgboost-cpu')}")
    lines.append(f"bundle    {st['bundle']} ({st['bundle_id']}); {result['model']['inputs']}")
    lines.append("")
    model = result["model"]
    batches = model["batch_sizes"]
    head = f"{'model level (median per call)':<34}" + "".join(f"{'batch ' + str(b):>26}" for b in batches)
    lines.append(head)
    lines.append("-" * len(head))
    labels = {"int8": "int8 TFLite (hybrid+AE)", "float_tflite": "float TFLite (hybrid+AE)",
              "keras": "Keras/TF fastest (hybrid+AE)", "keras_eager": "  Keras eager model(x)",
              "keras_graph": "  Keras tf.function", "keras_predict": "  Keras predict()",
              "bundle": "int8 bundle score (+fuser)", "fuser": "XGBoost fuser alone", "featurizer": "featurizer (flows)"}
    notes = []
    for kind in MODEL_KINDS:
        entry = model.get(kind, {})
        if not entry.get("available"):
            notes.append(f"  {labels[kind]}: {entry.get('note', 'not measured')}")
            continue
        cells = []
        for b in batches:
            s = entry["batch"].get(str(b))
            cells.append(f"{s['p50_ms']:8.3f} ms {s['per_s']:>10,.0f}/s" if s else "-")
        lines.append(f"{labels[kind]:<34}" + "".join(f"{c:>26}" for c in cells))
    for kind in ("int8", "keras"):
        entry = model.get(kind, {})
        if entry.get("available"):
            lines.append(f"{labels[kind].split(' (')[0] + ' p95 / p99':<34}" + "".join(
                f"{entry['batch'][str(b)]['p95_ms']:.3f} / {entry['batch'][str(b)]['p99_ms']:.3f} ms".rjust(26)
                for b in batches))
    lines.extend(notes)
    r = result["ratios"]
    lines.append("")
    lines.append("ratios    " + ", ".join(
        f"Keras/int8 batch {b} {_fmt(r.get(f'keras_over_int8_batch{b}'), '.1f')}x" for b in batches))
    lines.append("          " + ", ".join(
        f"float/int8 batch {b} {_fmt(r.get(f'float_tflite_over_int8_batch{b}'), '.2f')}x" for b in batches))
    lines.append(f"          TF RSS / agent RSS {_fmt(r.get('tf_rss_over_agent_rss'), '.1f')}x, "
                 f"TF start-up / agent start-up {_fmt(r.get('tf_startup_over_agent_startup'), '.1f')}x")
    mem = result["memory"]
    lines.append("")
    agent = mem.get("agent", {})
    lines.append(f"agent     peak RSS {_fmt(mem.get('agent_peak_rss_mb'), '.1f')} MB, start-up to first score "
                 f"{_fmt(mem.get('agent_startup_s'), '.3f')} s ({agent.get('workload', '')}; training stack "
                 f"{'blocked' if agent.get('blocked_modules') else 'NOT blocked'}, loaded: "
                 f"{agent.get('training_stack_loaded') or 'none'})")
    tf = mem.get("tf", {})
    if tf.get("available"):
        lines.append(f"TF+Keras  peak RSS {_fmt(mem.get('tf_peak_rss_mb'), '.1f')} MB, start-up to first score "
                     f"{_fmt(mem.get('tf_startup_s'), '.3f')} s")
    else:
        lines.append(f"TF+Keras  {tf.get('note', 'not measured')}")
    p = result["pipeline"]
    lines.append("")
    if p.get("available"):
        lat = p["verdict_latency_ms"]
        lines.append(f"pipeline  {Path(p['pcap']).name}: {p['packets']:,} packets, {p['flows']:,} flows, one core "
                     f"({p['input']})")
        for sink, s in p["sinks"].items():
            sl = s["verdict_latency_ms"]
            lines.append(f"  {sink:<6} sink  {s['packets_per_s']:>10,.0f} packets/s  {s['flows_per_s']:>8,.0f} flows/s  "
                         f"flow end->verdict p50/p95/p99 {sl['p50']:.1f}/{sl['p95']:.1f}/{sl['p99']:.1f} ms  "
                         f"({_fmt(s['packets_per_cpu_s'])} packets per CPU-s)")
        if p.get("compressed_input"):
            c = p["compressed_input"]
            lines.append(f"  from the compressed file (null sink): {c['packets_per_s']:,.0f} packets/s")
        lines.append(f"  headline (JSON-lines sink): {p['packets_per_s']:,.0f} packets/s, {p['flows_per_s']:,.0f} "
                     f"flows/s, verdict p95 {lat['p95']:.1f} ms")
    else:
        lines.append(f"pipeline  {p.get('note')}")
    return "\n".join(lines)
