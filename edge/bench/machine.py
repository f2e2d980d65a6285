"""What a bench ran on: CPU, load, package versions, the interpreter's delegate; and what it can
compare with: the run dir of the bundle's Keras models, and whether TensorFlow is installed."""

from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from edgebot.errors import BundleError, EdgebotError
from edgebot.rundir import BENCH_INPUTS, missing_files, read_spec

log = logging.getLogger(__name__)

#: Packages whose versions the machine section records.
PACKAGES: tuple[str, ...] = (
    "edgebot", "numpy", "ai-edge-litert", "tflite-runtime", "xgboost", "xgboost-cpu", "paho-mqtt",
    "msgspec", "tensorflow", "tensorflow-cpu", "keras", "nfstream",
)
_INSTALL_TRAIN = "pip install 'edgebot[train]'"


def _spec_matches(run: Path, manifest: dict) -> tuple[bool, str]:
    try:
        spec = read_spec(run)
    except BundleError as exc:
        return False, str(exc)
    th = manifest.get("thresholds", {})
    checks = (
        (spec.window, manifest.get("window"), "window"),
        (spec.featurizer_hash, manifest.get("featurizer", {}).get("hash"), "featurizer hash"),
        (spec.ae_threshold, th.get("autoencoder"), "autoencoder threshold"),
        (spec.fused_threshold, th.get("fused"), "fused threshold"),
    )
    for got, want, what in checks:
        if got != want:
            return False, f"{run} has another {what} than the bundle ({got!r} vs {want!r})"
    return True, ""


def _has_models(run: Path) -> bool:
    return not missing_files(run, BENCH_INPUTS)


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
    from edgebot.bundle import load_manifest
    from edgebot.runtime import find_interpreter

    try:
        manifest = load_manifest(Path(bundle_dir))
        cls, _ = find_interpreter()
    except EdgebotError as exc:
        return {"delegate": f"unknown ({exc})"}
    info: dict = {"threads": 1, "models": {}}
    banner = ""
    for name, entry in (("hybrid.tflite", manifest.hybrid), ("autoencoder.tflite", manifest.autoencoder)):
        path = Path(bundle_dir) / entry.file
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
