"""``edgebot convert``: run dir -> verified int8 bundle (manifest, two .tflite models, fuser JSON).

The order of a conversion reads as a list (:func:`convert_run`):
check the run dir -> convert in a subprocess worker (TensorFlow never runs in this process)
-> export the fuser -> write the manifest -> load the bundle with the gateway loader and score
the test split -> compare with the float models -> write verification.json -> rename the
temporary directory into place, only if the fused F1 did not drop more than allowed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import numpy as np

import edgebot
from edgebot.bundle import (
    AUTOENCODER_FILE,
    FUSER_FILE,
    HYBRID_FILE,
    MANIFEST,
    SCHEMA_VERSION,
    VERIFICATION_FILE,
    file_entries,
    load_bundle,
    write_manifest,
)
from edgebot.errors import BundleError, CheckFailed
from edgebot.evaluate import binary_rates
from edgebot.fusion import FUSER_INPUT_NAMES, reconstruction_error
from edgebot.rundir import CONVERT_INPUTS, NPZ_KEYS, RunDir, RunSpec  # noqa: F401 - NPZ_KEYS re-exported
from edgebot.statefiles import staged_dir
from edgebot.windows import last_rows

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Run-dir files the converter reads (edgebot.rundir.CONVERT_INPUTS; see docs/run-dir.md).
RUN_INPUTS: tuple[str, ...] = CONVERT_INPUTS
#: The three files that count toward the bundle's size budget.
MODEL_FILES: tuple[str, ...] = (HYBRID_FILE, AUTOENCODER_FILE, FUSER_FILE)
#: Seconds before the worker is considered hung.
WORKER_TIMEOUT = 1800


# ----------------------------------------------------------------------------------------------
# the run dir


def read_run_dir(run_dir: Path) -> RunDir:
    """Check a run dir before anything is converted (:meth:`edgebot.rundir.RunDir.open`).

    Returns
    -------
    RunDir
        The validated ``spec.json`` and ``metrics.json`` (``{}`` when the latter is absent).

    Raises
    ------
    BundleError
        A missing model or file, a spec that breaks the schema, a featurizer other than the
        installed one, arrays of the wrong shape.
    """
    return RunDir.open(run_dir, CONVERT_INPUTS)


# ----------------------------------------------------------------------------------------------
# the worker


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_worker(run_dir: Path, out: Path, *, threads: int = 2, calib_limit: int = 2000,
               timeout: float = WORKER_TIMEOUT, module: str = "edgebot.convert.worker") -> dict:
    """Run ``python -m edgebot.convert.worker`` and turn every way it can fail into one line.

    ``module`` replaces the worker (tests use a worker that crashes on purpose).

    Returns
    -------
    dict
        The worker's ``worker.json`` (versions, per-model quantization and ops, timings).

    Raises
    ------
    BundleError
        The worker reported a problem, crashed (e.g. SIGSEGV in the TFLite converter), or hung.
    """
    from edgebot.convert.worker import RESULT_FILE, STAGE_PREFIX

    cmd = [sys.executable, "-m", module, "--run-dir", str(run_dir), "--out", str(out),
           "--threads", str(threads), "--calib-limit", str(calib_limit)]
    log.info("converting in a subprocess: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                              timeout=timeout, env=_worker_env(threads))
    except subprocess.TimeoutExpired:
        raise BundleError(f"the TFLite converter did not finish within {timeout:.0f} s: "
                          "check the machine's load and retry") from None
    stages = [line[len(STAGE_PREFIX):] for line in proc.stderr.splitlines() if line.startswith(STAGE_PREFIX)]
    where = stages[-1] if stages else "starting"
    log.debug("worker stderr:\n%s", proc.stderr[-4000:])
    result_path = out / RESULT_FILE
    result = {}
    if result_path.is_file():
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            result = {}
        result_path.unlink()
    if proc.returncode == 0 and "models" in result:
        return result
    if "error" in result:
        raise BundleError(f"conversion failed: {result['error']}")
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise BundleError(
            f"the TFLite converter crashed ({name}) while {where}: build LSTMs with unroll=True and a dynamic "
            "batch (see docs/training.md, \"The hybrid's form\"); rerun with -vv for its output"
        )
    tail = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(STAGE_PREFIX)]
    last = tail[-1].strip()[:200] if tail else "no output"
    raise BundleError(f"the converter worker failed (exit {proc.returncode}) while {where}: {last}")


# ----------------------------------------------------------------------------------------------
# manifest and verification


def _xgboost_version() -> str:
    import xgboost

    return xgboost.__version__


def export_fuser(run_dir: Path, out: Path, n_inputs: int) -> None:
    """Re-save the run's XGBoost fuser as XGBoost JSON with the installed xgboost.

    Raises
    ------
    BundleError
        The fuser cannot be read or takes another number of inputs than the fusion layer gives.
    """
    from edgebot.bundle import load_booster

    booster = load_booster(run_dir / "fuser.json", n_inputs, remedy="retrain the run")
    booster.save_model(str(out / FUSER_FILE))


def _training_section(spec: RunSpec, metrics: dict) -> dict:
    models = metrics.get("models", {})
    extra = {"command": spec.command} if spec.command else {}
    return {**extra,
        "split": spec.data.get("split", metrics.get("split", {})),
        "fpr_budget": spec.data.get("fpr_budget", metrics.get("fpr_budget")),
        "seed": spec.seed,
        "data": list(spec.files),
        "metrics": {name: {k: m.get(k) for k in ("accuracy", "precision", "recall", "f1", "fpr", "roc_auc")}
                    for name, m in models.items() if isinstance(m, dict)},
    }


_TIMINGS = ("int8_scoring_seconds", "converter_seconds")


def _reproducible() -> bool:
    """``$SOURCE_DATE_EPOCH`` is set: build the same bytes from the same run (no clock in the bundle)."""
    return os.environ.get("SOURCE_DATE_EPOCH", "").strip().isdigit()


def _created() -> str:
    """Now in ISO 8601 UTC, or ``$SOURCE_DATE_EPOCH`` when set (reproducible builds: `make bundle`)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return when.replace(microsecond=0).isoformat()


def build_manifest(spec: RunSpec, metrics: dict, worker: dict, out: Path, files: list[str]) -> dict:
    """The manifest of a bundle in ``out`` (see docs/bundle.md for every key)."""
    versions = {"edgebot_convert": edgebot.__version__, **spec.versions}
    versions["converter_tensorflow"] = worker["versions"]["tensorflow"]
    versions["converter_keras"] = worker["versions"]["keras"]
    versions["fuser_xgboost"] = _xgboost_version()
    models = {}
    for key, m in worker["models"].items():
        models[key] = {"file": m["file"], "input": m["input"], "output": m["output"], "ops": m["ops"]}
    return {
        "schema_version": SCHEMA_VERSION,
        "edgebot_version": edgebot.__version__,
        "created": _created(),
        "label_mode": "binary",
        "featurizer": spec.installed_profile().info(),
        "scaler": spec.scaler,
        "window": spec.window,
        "models": models,
        "fuser": {"file": FUSER_FILE, "format": "xgboost-json", "objective": "binary:logistic",
                  "inputs": list(FUSER_INPUT_NAMES[:2]) + list(spec.fuser_raw_features),
                  "raw_features": list(spec.fuser_raw_features)},
        "thresholds": {"fused": spec.fused_threshold, "hybrid": spec.hybrid_threshold,
                       "autoencoder": spec.ae_threshold},
        "calibration": {"samples": worker["calibration_samples"], "source": "run data.npz calib_windows "
                        "(training windows, stratified over classes); the autoencoder on their last rows"},
        "versions": versions,
        "training": _training_section(spec, metrics),
        "files": file_entries(out, files),
    }


def _metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    out = binary_rates(y, np.asarray(scores, dtype=np.float64) >= threshold)  # float64: see Bundle.decide
    out["threshold"] = float(threshold)
    return out


def verify(bundle_dir: Path, run_dir: Path, metrics: dict) -> dict:
    """Score the run's test split with the int8 bundle (gateway loader) and the float models.

    Returns
    -------
    dict
        ``float`` and ``int8`` (fused metrics), ``f1_drop``, per-component metrics, decision
        agreement and score differences, ``test_windows``.
    """
    from edgebot.convert.worker import FLOAT_OUTPUTS

    bundle = load_bundle(bundle_dir)
    with np.load(run_dir / "data.npz", allow_pickle=False) as data:
        W = np.asarray(data["test_windows"], dtype=np.float32)
        y = np.asarray(data["test_labels"]).astype(np.int8)
    with np.load(bundle_dir / ".work" / FLOAT_OUTPUTS) as fl:
        f_hybrid, f_recon = fl["hybrid"], fl["recon"]
    t0 = time.perf_counter()
    q = bundle.score_components(W)
    int8_seconds = time.perf_counter() - t0
    last = last_rows(W, bundle.sequence)
    f_anomaly = reconstruction_error(last, f_recon) / np.float32(bundle.thresholds["autoencoder"])
    f_fused = bundle.fuse(f_hybrid, f_anomaly, last)
    th = bundle.thresholds
    float_m = _metrics(y, f_fused, th["fused"])
    int8_m = _metrics(y, q["fused"], th["fused"])
    result = {
        "float": float_m,
        "int8": int8_m,
        "f1_drop": float_m["f1"] - int8_m["f1"],
        "components": {
            "hybrid": {"float": _metrics(y, f_hybrid, th["hybrid"]), "int8": _metrics(y, q["hybrid"], th["hybrid"]),
                       "max_abs_diff": float(np.max(np.abs(f_hybrid - q["hybrid"]), initial=0.0))},
            "autoencoder": {"float": _metrics(y, f_anomaly, 1.0), "int8": _metrics(y, q["anomaly"], 1.0),
                            "median_rel_diff": float(np.median(np.abs(f_anomaly - q["anomaly"]) /
                                                               np.maximum(f_anomaly, 1e-6))) if len(y) else 0.0},
        },
        "decision_agreement": float(np.mean(bundle.decide(f_fused) == bundle.decide(q["fused"]))) if len(y) else 1.0,
        "fused_max_abs_diff": float(np.max(np.abs(f_fused - q["fused"]), initial=0.0)),
        "test_windows": int(len(y)),
        "int8_scoring_seconds": round(int8_seconds, 4),
        "runtime": f"{bundle.runtime} {bundle.runtime_version}",
    }
    trained = metrics.get("models", {}).get("fused", {}).get("f1")
    if trained is not None:
        result["training_f1"] = float(trained)
    return result


def _check_out(out: Path, force: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise BundleError(f"--out {out} is a file; give a directory path for the bundle")
        if not force:
            raise BundleError(f"--out {out} already exists: pass --force to replace it, or choose another path")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise BundleError(f"--out {out} exists and is not a bundle; choose another path or empty it")


def convert_run(run_dir: PathLike, out: PathLike, *, max_f1_drop: float = 0.005, force: bool = False,
                threads: int = 2, calib_limit: int = 2000, timeout: float = WORKER_TIMEOUT,
                sign_key: PathLike | None = None) -> dict[str, Any]:
    """Convert a run dir into a verified int8 bundle.

    Parameters
    ----------
    run_dir
        Written by ``edgebot train`` (docs/run-dir.md).
    out
        Bundle directory to create; written to a temporary sibling and renamed only when verified.
    max_f1_drop
        Largest allowed ``float F1 - int8 F1`` of the fused decision on the test split (0.005 =
        half a point).
    force
        Replace an existing bundle at ``out``.
    threads
        TensorFlow threads in the worker.
    calib_limit
        At most this many calibration windows (evenly spaced over ``calib_windows``).
    timeout
        Seconds before the converter worker is considered hung.
    sign_key
        An ed25519 private key file (``edgebot keygen``): sign the bundle id into
        ``signature.json`` (checked before the conversion starts).

    Returns
    -------
    dict
        The content of ``verification.json`` plus ``bundle`` (path), ``bundle_id`` (12 hex digits),
        ``digest`` (all 64) and ``signed_by`` (key id or None).

    Raises
    ------
    BundleError
        (exit 2) the run dir lacks a model or file, has another featurizer, or the converter
        failed or crashed; ``out`` exists without ``force``.
    CheckFailed
        (exit 1) the int8 fused F1 dropped more than ``max_f1_drop``; nothing is written.
    ConfigError
        ``sign_key`` is not an ed25519 private key.
    """
    started = time.monotonic()
    run_dir, out = Path(run_dir), Path(out)
    if not 0.0 <= max_f1_drop <= 1.0:
        raise BundleError(f"--max-f1-drop must be between 0 and 1, got {max_f1_drop}")
    signing_key = None
    if sign_key is not None:
        from edgebot.signing import load_private_key

        signing_key = load_private_key(sign_key)  # before the conversion: a bad key fails in a second, not minutes
    run = read_run_dir(run_dir)
    spec, metrics = run.spec, run.metrics
    _check_out(out, force)
    with staged_dir(out) as tmp:
        (tmp / ".work").mkdir()
        worker = run_worker(run_dir, tmp / ".work", threads=threads, calib_limit=calib_limit, timeout=timeout)
        for key in ("hybrid", "autoencoder"):
            name = worker["models"][key]["file"]
            (tmp / ".work" / name).rename(tmp / name)
        export_fuser(run_dir, tmp, 2 + len(spec.fuser_raw_features))
        files = [HYBRID_FILE, AUTOENCODER_FILE, FUSER_FILE]
        manifest = build_manifest(spec, metrics, worker, tmp, files)
        write_manifest(tmp, manifest)

        verification = verify(tmp, run_dir, metrics)
        sizes = {name: (tmp / name).stat().st_size for name in files}
        verification["sizes"] = {**sizes, "total": sum(sizes.values())}
        verification["max_f1_drop"] = max_f1_drop
        verification["passed"] = verification["f1_drop"] <= max_f1_drop + 1e-12
        verification["converter_seconds"] = worker.get("seconds", {})
        # timings differ between two conversions of the same run: a reproducible build (SOURCE_DATE_EPOCH,
        # `make bundle`) leaves them out of the file, so the same run gives the same bundle id
        written_v = {k: v for k, v in verification.items() if not (_reproducible() and k in _TIMINGS)}
        (tmp / VERIFICATION_FILE).write_text(json.dumps(written_v, indent=2) + "\n", encoding="utf-8")
        if not verification["passed"]:
            f, q = verification["float"]["f1"], verification["int8"]["f1"]
            raise CheckFailed(
                f"int8 fused F1 {q:.4f} is {f - q:.4f} below float {f:.4f} (allowed {max_f1_drop}); "
                "no bundle written: retrain (more calibration data, smaller ranges) or raise --max-f1-drop"
            )
        manifest["verification"] = {k: verification[k] for k in ("f1_drop", "max_f1_drop", "passed")}
        manifest["verification"].update(float_f1=verification["float"]["f1"], int8_f1=verification["int8"]["f1"])
        manifest["files"] = file_entries(tmp, files + [VERIFICATION_FILE])
        written = write_manifest(tmp, manifest)
        signed_by = None
        if signing_key is not None:
            from edgebot.signing import sign_bundle

            signed_by = sign_bundle(tmp, signing_key)["key_id"]
        shutil.rmtree(tmp / ".work")
    verification["bundle"] = str(out)
    verification["digest"] = written.bundle_id
    verification["bundle_id"] = written.bundle_id[:12]
    verification["signed_by"] = signed_by
    verification["seconds"] = round(time.monotonic() - started, 1)
    log.info("bundle %s written to %s in %.0f s", verification["bundle_id"], out, verification["seconds"])
    return verification


def format_verification(result: dict[str, Any]) -> str:
    """The human-readable summary of :func:`convert_run` (``edgebot convert``)."""
    f, q = result["float"], result["int8"]
    s = result["sizes"]
    lines = [
        f"bundle {result['bundle_id']} written to {result['bundle']} ({result['seconds']:.0f} s)"
        + (f", signed with key {result['signed_by']}" if result.get("signed_by") else ""),
        f"verified on {result['test_windows']} test windows with {result['runtime']}:",
        f"  {'':8} {'F1':>8} {'precision':>10} {'recall':>8} {'FPR':>8}",
        f"  {'float':8} {f['f1']:8.4f} {f['precision']:10.4f} {f['recall']:8.4f} {f['fpr']:8.4f}",
        f"  {'int8':8} {q['f1']:8.4f} {q['precision']:10.4f} {q['recall']:8.4f} {q['fpr']:8.4f}",
        f"  F1 drop {result['f1_drop']:+.4f} (allowed {result['max_f1_drop']}), "
        f"decisions agree on {100 * result['decision_agreement']:.2f} % of windows",
        f"sizes: {HYBRID_FILE} {s[HYBRID_FILE] / 1024:.1f} KB, {AUTOENCODER_FILE} {s[AUTOENCODER_FILE] / 1024:.1f} KB, "
        f"{FUSER_FILE} {s[FUSER_FILE] / 1024:.1f} KB; total {s['total'] / 1024:.1f} KB",
    ]
    return "\n".join(lines)
