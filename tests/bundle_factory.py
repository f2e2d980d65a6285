"""Build a small real run dir and int8 bundle from the bundled IoT-23 data, for tests.

``make_test_bundle(tmpdir) -> Path`` trains tiny Keras models (CNN-LSTM, autoencoder) and an
XGBoost fuser on a subsample of the bundled IoT-23 captures (``edgebot.datasets``) for a couple of epochs, writes a run dir that
follows docs/run-dir.md (its spec.json through :func:`edgebot.rundir.write_spec`), and converts it with :func:`edgebot.convert.bundle_writer.convert_run`.
Training runs in a subprocess (``python tests/bundle_factory.py --run-dir DIR``), so the calling
test process never imports TensorFlow; the converter runs its own worker subprocess.

The first call in a process takes ~30-60 s (two TensorFlow start-ups); later calls copy the
cached bundle (milliseconds). Set ``EDGEBOT_TEST_BUNDLE_CACHE=DIR`` to also keep the bundle on
disk between test sessions (keyed by a hash of the factory, converter, loader and featurizer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: The IoT-23 captures the tiny models train on (edgebot.datasets names them).
IOT23_SCENARIOS = ("34-1", "8-1", "44-1", "4-1", "5-1")

DEFAULTS = {"window": 4, "seed": 0, "max_flows": 1500, "epochs": 3}
_cache: dict[tuple, Path] = {}
_cache_root: Optional[Path] = None


# ------------------------------------------------------------------------------------------------
# the tiny trainer (runs in a subprocess: it imports TensorFlow)


def _threshold_for_fpr(benign_scores: np.ndarray, budget: float) -> float:
    s = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    k = int(np.floor(budget * s.size + 1e-9))
    return float(s[-1]) if k >= s.size else float(np.nextafter(s[k], np.inf))


def _rates(y: np.ndarray, pred: np.ndarray) -> dict:
    from edgebot.evaluate import binary_rates

    return binary_rates(y, pred)


def _flag(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(scores, dtype=np.float64) >= threshold


def build_run_dir(out: Path, *, window: int = 4, seed: int = 0, max_flows: int = 1500, epochs: int = 3) -> Path:
    """Write a contract-following run dir into ``out`` (imports TensorFlow; call in a subprocess)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from edgebot.lean import import_xgboost_sklearn
    xgboost = import_xgboost_sklearn()

    import edgebot
    from edgebot import datasets
    from edgebot.features import FEATURE_NAMES, N_FEATURES, MinMaxScaler, featurize, featurizer_info
    from edgebot.fusion import FUSER_INPUT_NAMES, FUSER_RAW_FEATURES, fuser_inputs, raw_feature_index, reconstruction_error
    from edgebot.train.baselines import FromHybrid
    from edgebot.readers import read_flows
    from edgebot.rundir import write_spec
    from edgebot.windows import make_windows

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)

    parts = {"train": [], "val": [], "test": []}
    for scenario in IOT23_SCENARIOS:
        records, readers = read_flows([datasets.iot23(scenario)])
        records = sorted((r for r in records if r.is_labeled), key=lambda r: r.ts)
        if len(records) > max_flows:
            keep = np.unique(np.linspace(0, len(records) - 1, max_flows).round().astype(int))
            records = [records[i] for i in keep]
        n = len(records)
        a, b = int(0.6 * n), int(0.8 * n)
        parts["train"] += records[:a]
        parts["val"] += records[a:b]
        parts["test"] += records[b:]

    X = {k: featurize(v) for k, v in parts.items()}
    scaler = MinMaxScaler().fit(X["train"])
    arrays = {}
    for k, recs in parts.items():
        scaled = scaler.transform(X[k])
        hosts = np.array([f"{r.scenario}|{r.orig_h}" for r in recs], dtype=object)
        ts = np.array([r.ts for r in recs])
        arrays[k] = {
            "W": make_windows(scaled, hosts, ts, window),
            "last": scaled,
            "y": np.array([r.label == "malicious" for r in recs], dtype=np.int8),
            "families": np.array([(r.family or "") if r.label == "malicious" else "" for r in recs], dtype=str),
            "hosts": hosts.astype(str),
            "scenarios": np.array([r.scenario for r in recs], dtype=str),
        }
    tr, va, te = arrays["train"], arrays["val"], arrays["test"]

    inp = keras.Input((window, N_FEATURES), name="windows")
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="conv")(inp)
    x = keras.layers.LSTM(8, unroll=True, name="lstm")(x)
    hybrid = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="prob")(x), name="cnn_lstm")
    hybrid.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    hybrid.fit(tr["W"], tr["y"].astype("float32"), epochs=epochs, batch_size=64, verbose=0)

    ai = keras.Input((N_FEATURES,), name="flows")
    h = keras.layers.Dense(16, activation="relu")(ai)
    h = keras.layers.Dense(4, activation="relu")(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    ae = keras.Model(ai, keras.layers.Dense(N_FEATURES, activation="sigmoid")(h), name="autoencoder")
    ae.compile(keras.optimizers.Adam(3e-3), "mse")
    benign = tr["last"][tr["y"] == 0]
    ae.fit(benign, benign, epochs=epochs * 3, batch_size=64, verbose=0)

    def scores(p):
        prob = hybrid.predict(p["W"], verbose=0)[:, 0]
        err = reconstruction_error(p["last"], ae.predict(p["last"], verbose=0))
        return prob, err

    va_prob, va_err = scores(va)
    te_prob, te_err = scores(te)
    ae_threshold = float(np.quantile(va_err[va["y"] == 0], 0.99))
    raw_index = raw_feature_index(FEATURE_NAMES, FUSER_RAW_FEATURES)
    fuse_va = fuser_inputs(va_prob, va_err / ae_threshold, va["last"], raw_index)
    fuse_te = fuser_inputs(te_prob, te_err / ae_threshold, te["last"], raw_index)
    # the trainer's form: the trees add to the hybrid's logit (edgebot.fusion.HYBRID_LOGIT)
    fuser = FromHybrid(xgboost.XGBClassifier(n_estimators=30, max_depth=3, learning_rate=0.2, random_state=seed,
                                             n_jobs=1))
    fuser.fit(fuse_va, va["y"])
    fused_va = fuser.predict_proba(fuse_va)[:, 1]
    fused_te = fuser.predict_proba(fuse_te)[:, 1]
    fused_threshold = _threshold_for_fpr(fused_va[va["y"] == 0], 0.01)
    hybrid_threshold = _threshold_for_fpr(va_prob[va["y"] == 0], 0.01)

    out.mkdir(parents=True, exist_ok=True)
    hybrid.save(out / "cnn_lstm.keras")
    ae.save(out / "autoencoder.keras")
    fuser.get_booster().save_model(str(out / "fuser.json"))
    spec = {
        "featurizer": featurizer_info(),
        "scaler": scaler.to_dict(),
        "window": window,
        "fuser_raw_features": list(FUSER_RAW_FEATURES),
        "fuser_inputs": list(FUSER_INPUT_NAMES),
        "ae_threshold": ae_threshold,
        "fused_threshold": fused_threshold,
        "hybrid_threshold": hybrid_threshold,
        "fpr_budget": 0.01,
        "seed": seed,
        "split": {"name": "temporal", "note": "tests/bundle_factory.py: per capture 60/20/20 by time"},
        "versions": {"edgebot": edgebot.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "xgboost": xgboost.__version__, "numpy": np.__version__},
        "data": [{"path": datasets.iot23(scenario).name,
                  "sha256": hashlib.sha256(datasets.iot23(scenario).read_bytes()).hexdigest(), "rows": None}
                 for scenario in IOT23_SCENARIOS],
        "label_mode": "binary",
    }
    write_spec(out, spec)  # validated as the trainer's is (edgebot.rundir)
    calib_idx = np.concatenate([rng.choice(np.flatnonzero(tr["y"] == c), size=min(250, int(np.sum(tr["y"] == c))),
                                           replace=False) for c in (0, 1)])
    np.savez_compressed(
        out / "data.npz",
        calib_windows=tr["W"][np.sort(calib_idx)],
        test_windows=te["W"], test_labels=te["y"], test_families=te["families"],
        test_hosts=te["hosts"], test_scenarios=te["scenarios"],
    )
    metrics = {"models": {
        "fused": {**_rates(te["y"], _flag(fused_te, fused_threshold)), "threshold": fused_threshold},
        "cnn_lstm": {**_rates(te["y"], _flag(te_prob, hybrid_threshold)), "threshold": hybrid_threshold},
        "autoencoder": {**_rates(te["y"], _flag(te_err, ae_threshold)), "threshold": ae_threshold},
    }}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return out


# ------------------------------------------------------------------------------------------------
# the public helpers (no TensorFlow in the calling process)


def _source_key(params: dict) -> str:
    from edgebot.features import FEATURIZER_HASH

    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    digest.update(FEATURIZER_HASH.encode())
    for rel in ("tests/bundle_factory.py", "convert/worker.py", "convert/bundle_writer.py", "edgebot/bundle.py",
                "edgebot/runtime.py", "edgebot/fusion.py", "train/baselines.py", "edgebot/rundir.py", "edgebot/manifest.py"):
        path = ROOT / rel
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_run_dir(tmpdir: str | os.PathLike, **params) -> Path:
    """Train the tiny models in a subprocess and write a run dir at ``tmpdir/run``.

    Parameters
    ----------
    tmpdir
        Existing directory.
    params
        ``window`` (4), ``seed`` (0), ``max_flows`` per capture (1500), ``epochs`` (3).
    """
    p = {**DEFAULTS, **params}
    out = Path(tmpdir) / "run"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-dir", str(out)]
    for k, v in p.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT / "tests"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"bundle_factory training failed:\n{proc.stderr[-3000:]}")
    return out


def _cache_dir() -> Path:
    global _cache_root
    if _cache_root is None:
        _cache_root = Path(tempfile.mkdtemp(prefix="edgebot-test-bundles-"))
        import atexit

        atexit.register(shutil.rmtree, _cache_root, True)
    return _cache_root


def make_test_bundle(tmpdir: str | os.PathLike, **params) -> Path:
    """A small real int8 bundle at ``tmpdir/bundle`` (a fresh copy on every call).

    Parameters
    ----------
    tmpdir
        Existing directory (e.g. pytest's ``tmp_path``).
    params
        As :func:`make_run_dir`.

    Returns
    -------
    Path
        The bundle directory (manifest.json, hybrid.tflite, autoencoder.tflite, fuser.json,
        verification.json). The run dir it came from is at ``<cache>/run`` (see :func:`cached_run_dir`).
    """
    p = {**DEFAULTS, **params}
    key = tuple(sorted(p.items()))
    src = _cache.get(key)
    if src is None:
        disk = os.environ.get("EDGEBOT_TEST_BUNDLE_CACHE")
        if disk:
            base = Path(disk) / _source_key(p)
            if not (base / "bundle" / "manifest.json").is_file():
                base.mkdir(parents=True, exist_ok=True)
                _build(base, p)
        else:
            base = Path(tempfile.mkdtemp(dir=_cache_dir()))
            _build(base, p)
        src = base / "bundle"
        _cache[key] = src
    dest = Path(tmpdir) / "bundle"
    shutil.copytree(src, dest)
    return dest


def cached_run_dir(**params) -> Path:
    """The run dir behind :func:`make_test_bundle` with these parameters (builds it if needed)."""
    p = {**DEFAULTS, **params}
    key = tuple(sorted(p.items()))
    if key not in _cache:
        make_test_bundle(Path(tempfile.mkdtemp(dir=_cache_dir())), **params)
    return _cache[key].parent / "run"


def _build(base: Path, p: dict) -> None:
    from edgebot.convert.bundle_writer import convert_run

    run = make_run_dir(base, **p)
    # a tiny model on 1,500 flows per capture: allow a larger F1 drop than the real gate
    convert_run(run, base / "bundle", max_f1_drop=0.05, force=True)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Write a tiny contract-following run dir (tests only).")
    ap.add_argument("--run-dir", required=True, type=Path)
    for k, v in DEFAULTS.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    a = ap.parse_args(argv)
    build_run_dir(a.run_dir, window=a.window, seed=a.seed, max_flows=a.max_flows, epochs=a.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
