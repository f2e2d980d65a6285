"""``edgebot train SHARDS/``: train from a prepared shard set, XGBoost on Dask, the networks from ``tf.data``.

The same models, thresholds, metrics and run dir as :func:`edgebot.train.fit.train_run`
(so ``edgebot convert`` takes the result), with the data read from shards:

* the flow-level XGBoost and the XGBoost fuser train through ``xgboost.dask`` on a
  ``DaskQuantileDMatrix`` (a ``LocalCluster`` of ``--dask-workers`` processes, or the cluster
  at ``--dask``); every worker must see the shard set at the same path;
* the CNN, LSTM, CNN-LSTM and the autoencoder read the training shards through ``tf.data``
  (one shard in memory at a time, shuffled in a buffer of ``SHUFFLE_BUFFER`` windows);
* validation and test parts, the Random Forest baseline and the int8 calibration sample are held
  in memory, at most ``max_eval_rows`` rows a part, drawn before their windows are built (the Random
  Forest's without windows). The stated subsampling: ``max_flows_per_capture`` (``--quick``: 6,000) keeps that many
  flows of each capture evenly spaced in time for every model, as in-memory training does; their
  windows come from the full flow stream, and their part is the one ``prepare`` assigned.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgebot.errors import DataError, EdgebotError
from edgebot.features import get_profile
from edgebot.fusion import (BASE_MARGIN_ATTR, HYBRID_LOGIT, base_margin, fused_probability, fuser_inputs,
                            raw_feature_index)
from edgebot.train.data import PartArrays
from edgebot.train.shard_set import ShardSet, train_dask_arrays
from edgebot.statefiles import staged_dir
from edgebot.train.baselines import _rf_classifier
from edgebot.train.fit import (
    TrainConfig,
    _calibration_sample,
    _check_out,
    _configure_tensorflow,
    _evaluate,
    _set_thresholds,
    _stratified_folds,
    _Trained,
    _write_report,
    _write_run_dir,
    resolve_config,
    fuser_monotone,
    write_json,
)

log = logging.getLogger(__name__)

#: Windows in the tf.data shuffle buffer.
SHUFFLE_BUFFER = 20_000
#: Rows a network scores in one batch (``models.predict``'s default), and rows handed to Keras at once.
PREDICT_BATCH = 2048
PREDICT_ROWS = 25 * PREDICT_BATCH
#: Rows of each part held in memory at most (validation, test, the Random Forest's). Each 100,000 rows of a
#: part hold about 175 MB (windows of 8 x 45 float32, last rows, hosts, families); at 500,000 the validation
#: and test parts held 1.7 GB on the 100x synthetic set (benchmarks/SCALE.md).
MAX_EVAL_ROWS = 200_000
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT = 5


class SchedulerUnreachable(EdgebotError):
    """No Dask scheduler answers at the given address (exit 2)."""


class ClusterFailed(EdgebotError):
    """The Dask cluster failed during training: a worker was lost or a task raised (exit 1)."""

    exit_code = 1


# ----------------------------------------------------------------------------------------------
# the cluster


def connect(scheduler: Optional[str], workers: int, threads: int):
    """A Dask client: to ``scheduler`` if given, else to a new ``LocalCluster`` of ``workers`` processes.

    Raises
    ------
    SchedulerUnreachable
        Nothing answers at ``scheduler`` within ``CONNECT_TIMEOUT`` seconds.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SchedulerUnreachable(f"cannot reach the Dask scheduler at {scheduler}: {reason}") from None
    if workers < 1:
        raise DataError(f"--dask-workers must be at least 1, got {workers}")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=max(1, threads // workers), processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _warm_worker() -> bool:
    """Import what the training tasks need once per worker (the first XGBoost task would pay it)."""
    import xgboost.dask  # noqa: F401

    import edgebot.train.shards  # noqa: F401

    return True


def warm(client) -> None:
    """Run :func:`_warm_worker` as a task on every worker (a task, not ``client.run``: the import must not
    block the worker's event loop and its heartbeats)."""
    addresses = list(client.nthreads())
    futures = [client.submit(_warm_worker, workers=[a], allow_other_workers=False, pure=False) for a in addresses]
    client.gather(futures)


def _watched(client, what: str, fn, *args, **kwargs):
    """Run ``fn`` (a blocking xgboost.dask call) and fail in one line if a worker leaves meanwhile.

    A lost worker leaves XGBoost's collective waiting for it forever; the watch turns that into an
    error instead of a hang.
    """
    start_workers = set(client.nthreads())  # asked of the scheduler (scheduler_info() is a cache)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=run, name=f"edgebot-{what}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
        if not thread.is_alive():
            break
        try:
            now = set(client.nthreads())
        except Exception:  # noqa: BLE001 - the scheduler itself went away
            raise ClusterFailed(f"lost the Dask scheduler during {what}") from None
        lost = start_workers - now
        if lost:
            raise ClusterFailed(f"Dask worker {sorted(lost)[0]} was lost during {what} "
                                f"({len(now)} of {len(start_workers)} workers left); training stopped") from None
    if "error" in result:
        exc = result["error"]
        lost = set()
        deadline = time.monotonic() + 5.0
        while not lost and time.monotonic() < deadline:
            # XGBoost's collective may notice a dead peer before the scheduler does: ask it a few times
            try:
                lost = start_workers - set(client.nthreads())
            except Exception:  # noqa: BLE001 - the scheduler itself went away
                break
            if not lost:
                time.sleep(0.5)
        if lost:
            raise ClusterFailed(f"Dask worker {sorted(lost)[0]} was lost during {what}; training stopped") from None
        text = str(exc).strip()
        first = " ".join(text.splitlines()[0].split()) if text else type(exc).__name__
        raise ClusterFailed(f"{what} failed on the Dask cluster: {first}") from None
    return result["value"]


def _xgb_params(trees: int, depth: int, seed: int, threads: int, monotone: Optional[tuple] = None) -> tuple[dict, int]:
    """The parameters of ``fit._xgb_classifier`` as a ``xgboost.train`` dict, and its rounds."""
    params = {"max_depth": depth, "learning_rate": 0.1, "subsample": 0.9, "colsample_bytree": 0.9,
              "tree_method": "hist", "objective": "binary:logistic", "eval_metric": "logloss", "seed": seed,
              "nthread": threads, "verbosity": 0}
    if monotone:
        params["monotone_constraints"] = "(" + ",".join(str(int(c)) for c in monotone) + ")"
    return params, trees


class BoosterModel:
    """A trained booster with the bits of ``XGBClassifier`` the run dir and report use."""

    def __init__(self, booster, n_features: int, margin: Optional[str] = None):
        self.booster = booster
        self.n_features = n_features
        self.margin = margin  # the fuser's base margin (edgebot.fusion), recorded in the booster
        if margin:
            booster.set_attr(**{BASE_MARGIN_ATTR: margin})

    def get_booster(self):
        return self.booster

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = fused_probability(self.booster, X, self.margin)
        return np.stack([1 - p, p], axis=1)

    @property
    def feature_importances_(self) -> np.ndarray:
        """Normalized total gain, as ``XGBClassifier.feature_importances_`` (importance_type gain)."""
        score = self.booster.get_score(importance_type="gain")
        out = np.zeros(self.n_features, dtype=np.float32)
        for k, v in score.items():
            out[int(k[1:]) if k.startswith("f") else int(k)] = v
        total = out.sum()
        return out / total if total > 0 else out


def _dask_fit(client, X, y, params: dict, rounds: int, what: str, base_margin=None) -> Any:
    """``xgboost.dask.train`` on a ``DaskQuantileDMatrix`` of dask arrays ``X``, ``y``; the booster.

    ``base_margin``: a dask array the trees add to (the fuser's, see edgebot.fusion), or None.
    """
    from xgboost import dask as dxgb

    def fit():
        dtrain = dxgb.DaskQuantileDMatrix(client, X, y, base_margin=base_margin)
        return dxgb.train(client, params, dtrain, num_boost_round=rounds)["booster"]

    started = time.monotonic()
    booster = _watched(client, what, fit)
    log.info("%s on Dask: %.2f s", what, time.monotonic() - started)
    return booster


def _local_dask_array(client, X: np.ndarray, workers: int):
    import dask.array as da

    rows = max(1, -(-len(X) // max(1, workers)))
    return da.from_array(X, chunks=(rows,) + X.shape[1:])


# ----------------------------------------------------------------------------------------------
# the networks from tf.data


def _dataset(shards: ShardSet, shape: tuple, target_shape: tuple, batch: int, seed: int, **kw):
    import tensorflow as tf

    sig = (tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None, *target_shape), tf.float32))
    ds = tf.data.Dataset.from_generator(lambda: shards.train_generator(**kw), output_signature=sig)
    return ds.unbatch().shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).batch(batch).prefetch(2)


def _slices(x: np.ndarray, y: np.ndarray, batch: int = PREDICT_BATCH):
    """Validation arrays as a ``tf.data`` dataset of batches sliced from them.

    Given the arrays, Keras copies each whole into one tensor and keeps it with the model (measured at 100x:
    the networks added 2.3 GB to the trainer); the slices are copied one batch at a time.
    """
    import tensorflow as tf

    sig = (tf.TensorSpec((None, *x.shape[1:]), tf.float32), tf.TensorSpec((None, *y.shape[1:]), tf.float32))
    return tf.data.Dataset.from_generator(lambda: ((x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)),
                                          output_signature=sig)


def _predict(model, x: np.ndarray) -> np.ndarray:
    """``models.predict`` over ``PREDICT_ROWS`` rows at a time (the same batches; no whole-array tensor)."""
    from edgebot.train import models as nets

    if len(x) <= PREDICT_ROWS:
        return nets.predict(model, x, batch_size=PREDICT_BATCH)
    return np.concatenate([nets.predict(model, x[i:i + PREDICT_ROWS], batch_size=PREDICT_BATCH)
                           for i in range(0, len(x), PREDICT_ROWS)])


def _fit_stream(model, dataset, x_val, y_val, cfg: TrainConfig) -> dict:
    import keras

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    history = model.fit(dataset, validation_data=_slices(x_val, y_val), epochs=cfg.epochs, verbose=0,
                        callbacks=[stop])
    out = {k: [float(v) for v in values] for k, values in history.history.items()}
    val_loss = out.get("val_loss", [])
    out["best_epoch"] = [int(np.argmin(val_loss)) + 1] if val_loss else [0]
    return out


def _fit_networks(state: _Trained, shards: ShardSet, va: PartArrays, te: PartArrays, cfg: TrainConfig,
                  seed: int, t: float) -> float:
    from edgebot.fusion import reconstruction_error
    from edgebot.train import models as nets

    feature_axis = shards.sequence == "feature-axis"
    steps, channels = va.windows.shape[1:]
    builders: dict[str, Any] = {"cnn": nets.build_cnn, "lstm": nets.build_lstm, "cnn_lstm": nets.build_cnn_lstm}
    for name, build in builders.items():
        extra = {"pool": nets.FEATURE_AXIS_POOL} if feature_axis and name == "cnn_lstm" else {}
        model = nets.compile_classifier(build(steps, channels, seed=seed, **extra), cfg.learning_rate)
        ds = _dataset(shards, (steps, channels), (), cfg.batch_size, seed)
        state.histories[name] = _fit_stream(model, ds, va.windows, va.y.astype(np.float32), cfg)
        state.models[name] = model
        state.val_scores[name], state.test_scores[name] = _predict(model, va.windows), _predict(model, te.windows)
        t = state.lap(name, t)
    F = va.last.shape[1]
    ae = nets.compile_autoencoder(nets.build_autoencoder(F), cfg.learning_rate)
    ds = _dataset(shards, (F,), (F,), cfg.batch_size, seed, benign_only=True, autoencoder=True)
    benign_va = va.last[va.y == 0]
    state.histories["autoencoder"] = _fit_stream(ae, ds, benign_va, benign_va, cfg)
    val_err = reconstruction_error(va.last, _predict(ae, va.last))
    test_err = reconstruction_error(te.last, _predict(ae, te.last))
    threshold = float(np.quantile(val_err[va.y == 0], cfg.ae_quantile))
    state.ae_threshold = threshold if threshold > 0 else float(np.finfo(np.float32).tiny)
    state.models["autoencoder"] = ae
    state.val_scores["autoencoder"], state.test_scores["autoencoder"] = val_err, test_err
    return state.lap("autoencoder", t)


# ----------------------------------------------------------------------------------------------
# the run


class _ShardTable:
    """What ``fit._evaluate`` and ``fit._write_run_dir`` read of a flow table, from the manifest."""

    def __init__(self, manifest: dict, n_used: int):
        self.files = [{k: s[k] for k in ("path", "sha256", "rows", "labeled", "skipped", "format", "scenario")}
                      for s in manifest["sources"]]
        self.dropped = manifest.get("dropped_unlabeled", {})
        self.profile = manifest["featurizer"]["profile"]
        self._n = n_used

    def __len__(self) -> int:
        return self._n


class _ShardSplit:
    """The ``split`` entry of metrics.json for the prepared temporal split."""

    name = "temporal"
    left_out = None
    leaky = False

    def __init__(self, manifest: dict, sizes: dict, test_captures: list[str]):
        self.manifest, self.sizes, self.test_captures = manifest, sizes, test_captures

    def describe(self, table) -> dict:
        return {"name": "temporal", "leaky": False, "protocol": self.manifest["split"]["protocol"],
                "sizes": self.sizes, "test_captures": self.test_captures}


def train_shards(shard_dir, out, *, scheduler: Optional[str] = None, workers: int = 2, epochs: Optional[int] = None,
                 seed: int = 0, quick: bool = False, fpr_budget: float = 0.01, force: bool = False,
                 config: Optional[TrainConfig] = None, progress: bool = True,
                 max_eval_rows: Optional[int] = MAX_EVAL_ROWS) -> dict:
    """Train every model from a shard set and write a run dir (the contract of :func:`fit.train_run`).

    Parameters
    ----------
    shard_dir
        A shard set written by ``edgebot prepare``.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); None starts a ``LocalCluster``.
    workers
        Worker processes of the ``LocalCluster``.
    max_eval_rows
        Rows of each in-memory part at most (validation, test and the Random Forest's, from which the
        calibration sample is drawn), drawn at random with ``seed`` before their windows are built;
        default ``MAX_EVAL_ROWS``; None keeps all.

    Other parameters as :func:`edgebot.train.fit.train_run`.

    Raises
    ------
    DataError
        A shard set that is incomplete, of another featurizer or window, with a missing shard.
    SchedulerUnreachable
        ``scheduler`` does not answer (exit 2).
    ClusterFailed
        A worker was lost or a task failed during training (exit 1).
    """
    started = time.monotonic()
    cfg = resolve_config(config, quick, epochs, fpr_budget)
    out = Path(out)
    _check_out(out, force)
    shards = ShardSet.open(shard_dir, cfg.max_flows_per_capture)
    profile = get_profile(shards.manifest["featurizer"]["profile"])
    window = int(shards.manifest["window"])

    client, cluster = connect(scheduler, workers, cfg.threads)
    try:
        warm(client)
    except Exception as exc:  # noqa: BLE001 - a worker without the train extra
        _close(client, cluster)
        raise ClusterFailed(f"the Dask workers cannot run edgebot's training tasks: {str(exc).splitlines()[0]}") from None
    try:
        with staged_dir(out) as tmp:  # published atomically; removed on any error
            metrics = _train_into(tmp, shards, client, profile, window=window, seed=seed, quick=quick,
                                  fpr_budget=fpr_budget, cfg=cfg, started=started, max_eval_rows=max_eval_rows,
                                  where=scheduler or f"LocalCluster({workers} workers)")
    finally:
        _close(client, cluster)
    from edgebot.train.report import format_summary

    return {**metrics, "summary": format_summary(metrics, out)}


def _close(client, cluster) -> None:
    """Close the client and our LocalCluster without waiting on a hung collective."""
    for thing in (client, cluster):
        if thing is None:
            continue
        try:
            thing.close(timeout=5) if thing is client else thing.close(timeout=10)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            log.debug("closing %s failed", thing, exc_info=True)


def _train_into(run: Path, shards: ShardSet, client, profile, *, window: int, seed: int, quick: bool,
                fpr_budget: float, cfg: TrainConfig, started: float, max_eval_rows: Optional[int], where: str) -> dict:
    _configure_tensorflow(seed, cfg.threads)
    state = _Trained()
    t = time.monotonic()
    va = shards.load_part(1, max_eval_rows, seed)
    te = shards.load_part(2, max_eval_rows, seed)
    tr, calib = _train_rows(shards, max_eval_rows, cfg.calib_windows, seed)
    t = state.lap("windows", t)
    worker_threads = client.nthreads()
    n_workers = len(worker_threads)
    # XGBoost threads per worker = the worker's threads: more (OpenMP oversubscribed) made each training 20x slower
    xgb_threads = max(1, min(worker_threads.values()))

    # flow-level baselines: XGBoost on Dask over every kept training flow; the forest in memory
    dX, dy = train_dask_arrays(shards)
    n_train = int(dy.shape[0])
    n_train_malicious = int(_watched(client, "counting training labels", lambda: client.compute(dy.sum()).result()))
    params, rounds = _xgb_params(cfg.xgb_trees, cfg.xgb_max_depth, seed, xgb_threads)
    xgb_model = BoosterModel(_dask_fit(client, dX, dy, params, rounds, "XGBoost training"), va.last.shape[1])
    state.models["xgboost"] = xgb_model
    t = state.lap("xgboost", t)
    rf = _rf_classifier(cfg.rf_trees, cfg.rf_max_depth, seed, cfg.threads).fit(tr.last, tr.y)
    state.models["random_forest"] = rf
    for name in ("random_forest", "xgboost"):
        model = state.models[name]
        state.val_scores[name] = model.predict_proba(va.last)[:, 1].astype(np.float32)
        state.test_scores[name] = model.predict_proba(te.last)[:, 1].astype(np.float32)
    t = state.lap("random_forest", t)

    t = _fit_networks(state, shards, va, te, cfg, seed, t)
    t = _fit_fusers(state, client, va, te, cfg, seed, profile, n_workers, xgb_threads, t)
    _set_thresholds(state, va, fpr_budget, cfg.fpr_per_capture, cfg.threshold_in_gap)
    m = shards.manifest
    kept = {c: (len(k) if k is not None else None) for c, k in shards.keep.items()}
    sizes = {"train": {"flows": n_train, "benign": n_train - n_train_malicious, "malicious": n_train_malicious}}
    for part, arr in (("val", va), ("test", te)):
        sizes[part] = {"flows": int(len(arr.y)), "benign": int(np.sum(arr.y == 0)), "malicious": int(np.sum(arr.y == 1))}
    test_captures = sorted(set(te.captures.tolist()))
    n_used = sum(int(s["labeled"] if kept[s["capture"]] is None else kept[s["capture"]] or 0) for s in m["sources"])
    # duck-typed stand-ins: what _evaluate and _write_run_dir read of a FlowTable and a Split
    table: Any = _ShardTable(m, n_used)
    split: Any = _ShardSplit(m, sizes, test_captures)
    n_loaded = sum(s["labeled"] for s in m["sources"])
    metrics = _evaluate(state, table, split, te, va, n_loaded, window=window, seed=seed, quick=quick,
                        fpr_budget=fpr_budget, cfg=cfg)
    metrics["scale"] = {
        "shard_set": shards.root.name,
        "shards": len(m["shards"]),
        "dask": where,
        "dask_workers": n_workers,
        "xgboost": "xgboost.dask.train on a DaskQuantileDMatrix (flow model: every kept training flow; "
                   "fuser: the validation rows)",
        "networks": f"tf.data from the training shards, shuffle buffer {SHUFFLE_BUFFER}",
        "subsampling": (f"at most {cfg.max_flows_per_capture} flows per capture, evenly spaced in time"
                        if cfg.max_flows_per_capture else "none: every flow")
                       + (f"; validation, test and the Random Forest's rows at most {max_eval_rows} each "
                          "(random, seeded)" if max_eval_rows else ""),
    }
    _write_run_dir(run, state, table, shards.scaler, calib, te, metrics, window=window, seed=seed,
                   fpr_budget=fpr_budget, cfg=cfg)
    state.lap("save", t)
    state.timings["total"] = round(time.monotonic() - started, 2)
    write_json(run / "timings.json", state.timings)
    _write_report(run, state, te, metrics, profile)
    return metrics


def _train_rows(shards: ShardSet, max_rows: Optional[int], calib_windows: int,
                seed: int) -> tuple[PartArrays, PartArrays]:
    """The Random Forest's training rows (last rows only, no windows) and the int8 calibration sample.

    The sample is the one ``fit._calibration_sample`` draws from those rows with ``seed``; only its windows
    are built. ``fit._write_run_dir`` draws from it again and, as it holds at most ``calib_windows`` rows,
    keeps all of them in order.
    """
    rows = shards.pick_rows(0, max_rows, seed)
    tr = shards.load_rows(0, rows, windows=False)
    chosen = _calibration_sample(np.arange(len(tr.y)), tr.y, calib_windows, np.random.default_rng(seed))
    return tr, shards.load_rows(0, chosen if rows is None else rows[chosen])


def _fit_fusers(state: _Trained, client, va: PartArrays, te: PartArrays, cfg: TrainConfig, seed: int, profile,
                n_workers: int, xgb_threads: int, t: float) -> float:
    """The XGBoost fuser on Dask (out-of-fold validation scores, as in-memory) and the RF fuser in memory."""
    raw_index = raw_feature_index(profile.feature_names, profile.fuser_raw_features)
    inputs = {part: fuser_inputs(scores["cnn_lstm"], scores["autoencoder"] / state.ae_threshold, arrays.last, raw_index)
              for part, scores, arrays in (("val", state.val_scores, va), ("test", state.test_scores, te))}
    X, y = inputs["val"], va.y
    params, rounds = _xgb_params(cfg.fuser_trees, cfg.fuser_max_depth, seed, xgb_threads,
                                 fuser_monotone(profile) if cfg.fuser_monotone else None)

    margin = HYBRID_LOGIT if cfg.fuser_from_hybrid else None

    def dask_model(Xf: np.ndarray, yf: np.ndarray, what: str) -> BoosterModel:
        dXf = _local_dask_array(client, Xf, n_workers)
        dyf = _local_dask_array(client, yf.astype(np.float32), n_workers)
        start = base_margin(margin, Xf)
        dmf = None if start is None else _local_dask_array(client, start, n_workers)
        return BoosterModel(_dask_fit(client, dXf, dyf, params, rounds, what, dmf), Xf.shape[1], margin)

    makers = {
        "fused": lambda Xf, yf: dask_model(Xf, yf, "fuser training"),
        "fused_rf": lambda Xf, yf: _rf_classifier(cfg.fuser_rf_trees, 8, seed, cfg.threads, min_leaf=2).fit(Xf, yf),
    }
    for name, fit in makers.items():
        fold = _stratified_folds(y, cfg.fuser_folds, np.random.default_rng(seed))
        oof = np.zeros(len(y), dtype=np.float32)
        for k in range(cfg.fuser_folds):
            held = fold == k
            if held.any():
                oof[held] = fit(X[~held], y[~held]).predict_proba(X[held])[:, 1]
        state.val_scores[name] = oof
        state.models[name] = fit(X, y)
        state.test_scores[name] = state.models[name].predict_proba(inputs["test"])[:, 1].astype(np.float32)
    return state.lap("fusers", t)
