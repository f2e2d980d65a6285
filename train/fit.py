"""Training orchestration: one split, every model on the same features, thresholds, the run dir.

:func:`train_run` is what ``edgebot train`` calls. The order of a run reads as a list:
load -> split -> scale and window -> baselines -> networks -> autoencoder -> fuser ->
thresholds -> metrics -> run dir (written to a temporary sibling, renamed when complete).
The baselines live in :mod:`edgebot.train.baselines`, the metrics in :mod:`edgebot.train.metrics`,
the run dir's schema in :mod:`edgebot.rundir`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

import edgebot
from edgebot.errors import DataError
from edgebot.features import FeatureProfile, MinMaxScaler, get_profile
from edgebot.fusion import FUSER_RAW_FEATURES, fuser_input_names, fuser_inputs, raw_feature_index, reconstruction_error
from edgebot.jsonsafe import write_json
from edgebot.rundir import METRICS_FILE, RUN_FILES, SPEC_FILE, write_spec  # noqa: F401 - RUN_FILES re-exported
from edgebot.statefiles import staged_dir
from edgebot.train.data import (
    FlowTable,
    PartArrays,
    Split,
    check_classes,
    check_window,
    load_flows,
    make_split,
    parse_split,
    part_arrays,
    subsample_per_capture,
)
from edgebot.train.baselines import FromHybrid, _fit_baselines, _fit_with_bar, _proba, _rf_classifier, _xgb_classifier
from edgebot.train.metrics import binary_metrics, per_group, threshold_for_fpr, threshold_in_gap

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Model names in metrics.json, in report order (pinned by a test).
MODEL_NAMES = ("random_forest", "xgboost", "cnn", "lstm", "cnn_lstm", "autoencoder", "fused", "fused_rf")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run that is not a command-line option.

    ``full()`` is the default configuration, ``quick()`` the small one for tests and demos.
    """

    epochs: int = 30
    patience: int = 4
    batch_size: int = 256
    learning_rate: float = 1e-3
    #: at most this many flows per capture (evenly spaced in time); None keeps all.
    max_flows_per_capture: Optional[int] = None
    rf_trees: int = 200
    rf_max_depth: Optional[int] = 24
    xgb_trees: int = 300
    xgb_max_depth: int = 6
    fuser_trees: int = 100
    fuser_max_depth: int = 4
    fuser_rf_trees: int = 200
    fuser_folds: int = 5
    #: the XGBoost fuser's score never decreases when the hybrid's probability or the anomaly
    #: score rises (monotone constraints on its first two inputs).
    fuser_monotone: bool = True
    #: the XGBoost fuser's trees add to the logit of the hybrid's probability (XGBoost's
    #: base_margin; see edgebot.fusion) instead of starting from a constant.
    fuser_from_hybrid: bool = True
    #: the autoencoder's threshold: this quantile of benign validation reconstruction errors.
    ae_quantile: float = 0.99
    #: in the FPR budget a benign capture's flows weigh together at most as much as
    #: ``GROUP_WEIGHT_CAP`` flows (a large, regular capture does not set everyone's threshold).
    fpr_per_capture: bool = True
    #: thresholds sit in the middle of the gap between the budget's threshold and the lowest
    #: malicious validation score it catches (train.metrics.threshold_in_gap), not on the benign
    #: edge. Off: measured mixed (benchmarks/FUSION.md, "Tried"): fused F1 +0.005 on the quick
    #: IoT-23 runs, -0.003 on the full ones.
    threshold_in_gap: bool = False
    #: training windows kept in data.npz for int8 calibration.
    calib_windows: int = 2000
    threads: int = 2

    @classmethod
    def full(cls) -> "TrainConfig":
        return cls()

    @classmethod
    def quick(cls) -> "TrainConfig":
        return cls(epochs=4, patience=2, max_flows_per_capture=6000, rf_trees=60, xgb_trees=120,
                   fuser_trees=60, fuser_rf_trees=60, fuser_folds=3)


#: Monotone constraints of the XGBoost fuser over FUSER_INPUT_NAMES: +1 on the hybrid's
#: probability and the anomaly score, free on the raw features.
FUSER_MONOTONE = (1, 1) + (0,) * len(FUSER_RAW_FEATURES)


def fuser_monotone(profile: FeatureProfile) -> tuple[int, ...]:
    """:data:`FUSER_MONOTONE` for a feature profile's fuser inputs."""
    return (1, 1) + (0,) * len(profile.fuser_raw_features)


# ----------------------------------------------------------------------------------------------
# helpers


def _configure_tensorflow(seed: int, threads: int) -> None:
    """Seed everything and make TensorFlow deterministic and frugal with threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized in this process: keep its settings
        log.debug("TensorFlow threads already configured")
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)


def _versions() -> dict[str, str]:
    import keras
    import sklearn
    import tensorflow as tf
    import xgboost

    return {"edgebot": edgebot.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "xgboost": xgboost.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__}


def resolve_config(config: Optional[TrainConfig], quick: bool, epochs: Optional[int],
                   fpr_budget: float) -> TrainConfig:
    """The run's TrainConfig (``config``, else quick or full) with ``epochs``; checks both options.

    Raises
    ------
    DataError
        ``epochs`` below 1, or ``fpr_budget`` outside [0, 1).
    """
    cfg = config or (TrainConfig.quick() if quick else TrainConfig.full())
    if epochs is not None:
        if epochs < 1:
            raise DataError(f"--epochs must be at least 1, got {epochs}")
        cfg = replace(cfg, epochs=epochs)
    if not 0.0 <= fpr_budget < 1.0:
        raise DataError(f"--fpr-budget must be at least 0 and below 1, got {fpr_budget}")
    return cfg


def _check_out(out: Path, force: bool) -> None:
    """Refuse an existing --out unless ``force`` and it is a previous run dir (or empty)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"--out {out} is a file; give a directory path for the run")
    if not any(out.iterdir()):
        return
    if not force:
        raise DataError(f"--out {out} already exists; pass --force to replace it or choose another path")
    contents = list(out.iterdir())
    if contents and not (out / SPEC_FILE).exists() and not (out / METRICS_FILE).exists():
        raise DataError(f"--out {out} exists and is not an edgebot run dir; --force only replaces run dirs")


def _calibration_sample(windows: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` training windows, half per class where possible, for int8 calibration."""
    picks = []
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        take = min(len(idx), n // 2)
        picks.append(rng.choice(idx, size=take, replace=False) if take else idx[:0])
    chosen = np.concatenate(picks)
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    extra = min(len(rest), n - len(chosen))
    if extra > 0:
        chosen = np.concatenate([chosen, rng.choice(rest, size=extra, replace=False)])
    return windows[np.sort(chosen)]


def _stratified_folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number ``(n,) int`` per row, each class spread evenly over ``k`` folds."""
    folds = np.zeros(len(y), dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        folds[idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % k
    return folds


# ----------------------------------------------------------------------------------------------
# the models


def _stacked_scores(make_model, X: np.ndarray, y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Out-of-fold scores of a stacker on its own training rows (for an honest threshold)."""
    fold = _stratified_folds(y, folds, rng)
    oof = np.zeros(len(y), dtype=np.float32)
    for k in range(folds):
        held = fold == k
        if not held.any():
            continue
        model = make_model()
        model.fit(X[~held], y[~held])
        oof[held] = _proba(model, X[held])
    return oof


# ----------------------------------------------------------------------------------------------
# the run


def train_run(
    paths: Sequence[PathLike],
    out: PathLike,
    split: str = "temporal",
    window: int = 8,
    epochs: Optional[int] = None,
    seed: int = 0,
    quick: bool = False,
    fpr_budget: float = 0.01,
    families: Optional[Mapping[str, str]] = None,
    progress: bool = True,
    force: bool = False,
    config: Optional[TrainConfig] = None,
    command: Optional[str] = None,
) -> dict:
    """Train every model on one split and write a complete run dir.

    Parameters
    ----------
    paths
        Labeled Zeek-style flow logs (IoT-23, Stratosphere), or labeled CICFlowMeter CSVs
        (CICIDS2017; the ``cicflowmeter`` profile); compressed files are fine. The profile is
        detected from the files. CICFlowMeter rows have no host or time columns: the networks
        see each flow's features as the sequence (``feature-axis``, ``window`` is 1), file order
        stands for time and each file is a capture.
    out
        Run dir to create. It is written to a temporary sibling and renamed when complete; a
        previous run dir at that path is replaced, any other existing directory is refused.
    split
        ``"temporal"`` (default), ``"stratified"`` (the paper's leaky protocol) or
        ``"leave-out:NAME"`` (a scenario such as ``8-1`` or a family such as ``Hakai``).
    window
        ``T``, flows per host window.
    epochs
        Upper bound on epochs of each network (early stopping on validation loss); None takes
        the configuration's (30 full, 4 quick).
    seed
        Seeds numpy, Python, TensorFlow, XGBoost and the forests: same data, same seed, same
        metrics.json.
    quick
        Small, fast configuration (at most 6,000 flows per capture, few epochs, small forests).
    fpr_budget
        False-positive budget of every decision threshold, chosen on validation data.
    families
        File -> family of its malicious rows (``--family FILE=NAME``).
    progress
        Progress bars on stderr.
    force
        Replace a previous run dir at ``out`` (never any other directory).
    config
        Override every other knob (see :class:`TrainConfig`); wins over ``quick``.
    command
        The command line that asked for this run (``edgebot train ...``), kept in ``spec.json``
        as ``command`` (the converter copies it into the manifest's ``training`` section).

    Returns
    -------
    dict
        The content of ``metrics.json``, plus ``"summary"``: the one-screen text the CLI prints
        (:func:`edgebot.train.report.format_summary`; not written to metrics.json).

    Raises
    ------
    DataError
        Bad input: no benign rows, a single class, too few flows for one window, an unknown split,
        a leave-out name that matches nothing, an --out path that is not a run dir. Nothing is left
        at ``out`` then.
    DataFormatError, SourceError
        From the readers.
    """
    started = time.monotonic()
    cfg = resolve_config(config, quick, epochs, fpr_budget)
    if window < 1:
        raise DataError(f"--window must be at least 1, got {window}")
    parse_split(split)
    out = Path(out)
    _check_out(out, force)

    table = load_flows(paths, families=families, progress=progress)
    n_loaded = len(table)
    check_classes(table)
    profile = get_profile(table.profile)
    if profile.sequence == "feature-axis":
        if window != 1:
            log.info("%s profile: no hosts or timestamps, so no per-host windows; the networks read each flow's "
                     "%d features as a sequence (--window %d is not used)", profile.name, profile.n_features, window)
        window = 1
    if cfg.max_flows_per_capture:
        table = table.take(subsample_per_capture(table, cfg.max_flows_per_capture))
    the_split = make_split(table, split, seed=seed)
    check_window(table, the_split, window)

    with staged_dir(out) as tmp:
        metrics = _train_into(tmp, table, the_split, n_loaded, window=window, seed=seed, quick=quick,
                              fpr_budget=fpr_budget, cfg=cfg, progress=progress, started=started)
        if command:
            from edgebot.rundir import read_spec, write_spec

            write_spec(tmp, {**read_spec(tmp).data, "command": command})
    log.info("run dir written to %s in %.0f s", out, time.monotonic() - started)
    from edgebot.train.report import format_summary

    return {**metrics, "summary": format_summary(metrics, out)}


@dataclass
class _Trained:
    """What a run accumulates: fitted models, scores per part, histories, thresholds."""

    models: dict = field(default_factory=dict)
    val_scores: dict = field(default_factory=dict)
    test_scores: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    ae_threshold: float = 0.0

    def lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.timings[name] = round(now - since, 2)
        return now


def _train_into(run: Path, table: FlowTable, split: Split, n_loaded: int, *, window: int, seed: int,
                quick: bool, fpr_budget: float, cfg: TrainConfig, progress: bool, started: float) -> dict:
    """Everything after the data checks, in order; writes every run-dir file into ``run``."""
    _configure_tensorflow(seed, cfg.threads)
    state = _Trained()
    t = time.monotonic()
    scaler = MinMaxScaler().fit(table.X[split.train])
    tr, va, te = (part_arrays(table, getattr(split, name), scaler, window) for name in ("train", "val", "test"))
    t = state.lap("windows", t)
    t = _fit_baselines(state, tr, va, te, cfg, seed, progress, t)
    profile = get_profile(table.profile)
    t = _fit_networks(state, tr, va, te, window, cfg, seed, progress, t, profile.sequence == "feature-axis")
    t = _fit_autoencoder(state, tr, va, te, cfg, progress, t)
    t = _fit_fusers(state, va, te, cfg, seed, progress, t, profile)
    _set_thresholds(state, va, fpr_budget, cfg.fpr_per_capture, cfg.threshold_in_gap)
    metrics = _evaluate(state, table, split, te, va, n_loaded, window=window, seed=seed, quick=quick,
                        fpr_budget=fpr_budget, cfg=cfg)
    _write_run_dir(run, state, table, scaler, tr, te, metrics, window=window, seed=seed, fpr_budget=fpr_budget,
                   cfg=cfg)
    state.lap("save", t)
    state.timings["total"] = round(time.monotonic() - started, 2)
    write_json(run / "timings.json", state.timings)
    _write_report(run, state, te, metrics, profile)
    return metrics


def _fit_networks(state: _Trained, tr: PartArrays, va: PartArrays, te: PartArrays, window: int, cfg: TrainConfig,
                  seed: int, progress: bool, t: float, feature_axis: bool = False) -> float:
    """CNN-only, LSTM-only and the CNN-LSTM hybrid over windows, early-stopped on validation loss."""
    from edgebot.train import models as nets

    builders: dict[str, Callable[..., Any]] = {"cnn": nets.build_cnn, "lstm": nets.build_lstm,
                                               "cnn_lstm": nets.build_cnn_lstm}
    steps, channels = tr.windows.shape[1:]  # (T, F) host windows, or (F, 1) along the feature axis
    for name, build in builders.items():
        extra = {"pool": nets.FEATURE_AXIS_POOL} if feature_axis and name == "cnn_lstm" else {}
        model = nets.compile_classifier(build(steps, channels, seed=seed, **extra), cfg.learning_rate)
        state.histories[name] = nets.fit_network(
            model, tr.windows, tr.y.astype(np.float32), va.windows, va.y.astype(np.float32), epochs=cfg.epochs,
            patience=cfg.patience, batch_size=cfg.batch_size, progress=progress)
        state.models[name] = model
        state.val_scores[name], state.test_scores[name] = nets.predict(model, va.windows), nets.predict(model, te.windows)
        t = state.lap(name, t)
    return t


def _fit_autoencoder(state: _Trained, tr: PartArrays, va: PartArrays, te: PartArrays, cfg: TrainConfig,
                     progress: bool, t: float) -> float:
    """The autoencoder on benign flows only; its threshold from benign validation errors only."""
    from edgebot.train import models as nets

    ae = nets.compile_autoencoder(nets.build_autoencoder(tr.last.shape[1]), cfg.learning_rate)
    benign_tr, benign_va = tr.last[tr.y == 0], va.last[va.y == 0]
    state.histories["autoencoder"] = nets.fit_network(
        ae, benign_tr, benign_tr, benign_va, benign_va, epochs=cfg.epochs, patience=cfg.patience,
        batch_size=cfg.batch_size, progress=progress)
    val_err = reconstruction_error(va.last, nets.predict(ae, va.last))
    test_err = reconstruction_error(te.last, nets.predict(ae, te.last))
    threshold = float(np.quantile(val_err[va.y == 0], cfg.ae_quantile))
    state.ae_threshold = threshold if threshold > 0 else float(np.finfo(np.float32).tiny)
    state.models["autoencoder"] = ae
    state.val_scores["autoencoder"], state.test_scores["autoencoder"] = val_err, test_err
    return state.lap("autoencoder", t)


def _fit_fusers(state: _Trained, va: PartArrays, te: PartArrays, cfg: TrainConfig, seed: int, progress: bool,
                t: float, profile: FeatureProfile) -> float:
    """XGBoost and Random Forest fusers, trained on validation rows (never seen by the base models).

    Their validation scores are out-of-fold, so the thresholds set on them are honest.
    """
    raw_index = raw_feature_index(profile.feature_names, profile.fuser_raw_features)
    if len(raw_index) != len(profile.fuser_raw_features):
        missing = sorted(set(profile.fuser_raw_features) - set(profile.feature_names))
        raise DataError(f"the featurizer lacks the fuser's raw features {missing}; update edgebot.fusion")
    inputs = {
        part: fuser_inputs(scores["cnn_lstm"], scores["autoencoder"] / state.ae_threshold, arrays.last, raw_index)
        for part, scores, arrays in (("val", state.val_scores, va), ("test", state.test_scores, te))
    }
    def xgb_fuser() -> Any:
        model = _xgb_classifier(cfg.fuser_trees, cfg.fuser_max_depth, seed, cfg.threads,
                                monotone=fuser_monotone(profile) if cfg.fuser_monotone else None)
        return FromHybrid(model) if cfg.fuser_from_hybrid else model

    makers = {
        "fused": xgb_fuser,
        "fused_rf": lambda: _rf_classifier(cfg.fuser_rf_trees, 8, seed, cfg.threads, min_leaf=2),
    }
    for name, make in makers.items():
        state.val_scores[name] = _stacked_scores(make, inputs["val"], va.y, cfg.fuser_folds,
                                                 np.random.default_rng(seed))
        state.models[name] = _fit_with_bar(make(), inputs["val"], va.y, name, progress)
        state.test_scores[name] = _proba(state.models[name], inputs["test"])
    return state.lap("fusers", t)


def _set_thresholds(state: _Trained, va: PartArrays, fpr_budget: float, per_capture: bool = True,
                    in_gap: bool = False) -> None:
    """Every decision threshold from validation data only (the autoencoder's is already set).

    With ``per_capture`` a benign capture's flows weigh at most as much as ``GROUP_WEIGHT_CAP`` flows
    in the budget (see :func:`edgebot.train.metrics.threshold_for_fpr`); with ``in_gap`` the
    threshold moves up to the middle of the gap to the malicious scores it catches
    (:func:`edgebot.train.metrics.threshold_in_gap`).
    """
    benign = va.y == 0
    groups = va.captures[benign] if per_capture else None
    for name in MODEL_NAMES:
        if name == "autoencoder":
            state.thresholds[name] = state.ae_threshold
        elif in_gap:
            scores = state.val_scores[name]
            state.thresholds[name] = threshold_in_gap(scores[benign], scores[~benign], fpr_budget, groups)
        else:
            state.thresholds[name] = threshold_for_fpr(state.val_scores[name][benign], fpr_budget, groups)


def _evaluate(state: _Trained, table: FlowTable, split: Split, te: PartArrays, va: PartArrays, n_loaded: int, *,
              window: int, seed: int, quick: bool, fpr_budget: float, cfg: TrainConfig) -> dict:
    """The content of metrics.json (key order is part of the contract)."""
    thresholds = state.thresholds
    models_metrics = {name: binary_metrics(te.y, state.test_scores[name], thresholds[name]) for name in MODEL_NAMES}
    val_metrics = {name: binary_metrics(va.y, state.val_scores[name], thresholds[name]) for name in MODEL_NAMES}
    metrics: dict[str, Any] = {"split": split.describe(table), "models": models_metrics}
    if split.left_out:
        fused = models_metrics["fused"]
        metrics["leave_out"] = {
            **split.left_out,
            "fpr_budget": fpr_budget,
            "recall": fused["recall"],
            "fpr": fused["fpr"],
            "recall_by_model": {name: m["recall"] for name, m in models_metrics.items()},
        }
    metrics["fpr_budget"] = fpr_budget
    metrics["threshold_policy"] = (
        f"every threshold is chosen on validation data only: the lowest score whose validation false-positive "
        f"rate is at most {fpr_budget:g}"
        + (" (a capture's benign flows weighing at most as much as 100 flows)" if cfg.fpr_per_capture else "")
        + (", moved up to the middle (in logits) of the gap to the lowest malicious validation score it catches"
           if cfg.threshold_in_gap else "")
        + f"; the fusers' on out-of-fold validation scores; the autoencoder's is the "
        f"{cfg.ae_quantile:g} quantile of benign validation reconstruction errors"
    )
    metrics["validation"] = {name: {k: m[k] for k in ("recall", "fpr", "f1")} for name, m in val_metrics.items()}
    metrics["per_family"] = per_group(te.y, te.families, state.test_scores, thresholds, positives_only=True)
    metrics["per_capture"] = per_group(te.y, te.captures, state.test_scores, thresholds, positives_only=False)
    metrics["data"] = {
        "files": table.files,
        "flows_labeled": n_loaded,
        "flows_used": len(table),
        "dropped_unlabeled": table.dropped,
    }
    profile = get_profile(table.profile)
    metrics["config"] = {"window": window, "profile": profile.name, "sequence": profile.sequence,
                         "seed": seed, "quick": quick, "fpr_budget": fpr_budget,
                         "label_mode": "binary", **asdict(cfg)}
    return metrics


def _write_run_dir(run: Path, state: _Trained, table: FlowTable, scaler: MinMaxScaler, tr: PartArrays,
                   te: PartArrays, metrics: dict, *, window: int, seed: int, fpr_budget: float,
                   cfg: TrainConfig) -> None:
    """Models, spec.json, data.npz, history.json and metrics.json (see docs/run-dir.md, edgebot.rundir)."""
    import joblib

    for name in ("cnn_lstm", "cnn", "lstm", "autoencoder"):
        state.models[name].save(run / f"{name}.keras")
    state.models["fused"].get_booster().save_model(str(run / "fuser.json"))
    state.models["xgboost"].get_booster().save_model(str(run / "xgboost_flow.json"))
    joblib.dump(state.models["fused_rf"], run / "fuser_rf.joblib")
    joblib.dump(state.models["random_forest"], run / "random_forest.joblib")
    profile = get_profile(table.profile)
    spec = {
        "featurizer": profile.info(),
        "scaler": scaler.to_dict(),
        "window": window,
        "sequence": profile.sequence,
        "fuser_raw_features": list(profile.fuser_raw_features),
        "fuser_inputs": list(fuser_input_names(profile)),
        "ae_threshold": state.ae_threshold,
        "fused_threshold": state.thresholds["fused"],
        "hybrid_threshold": state.thresholds["cnn_lstm"],
        "thresholds": state.thresholds,
        "fpr_budget": fpr_budget,
        "seed": seed,
        "split": metrics["split"],
        "versions": _versions(),
        "data": [{"path": f["path"], "sha256": f["sha256"], "rows": f["rows"]} for f in table.files],
        "label_mode": "binary",
    }
    write_spec(run, spec)
    np.savez_compressed(
        run / "data.npz",
        calib_windows=_calibration_sample(tr.windows, tr.y, cfg.calib_windows, np.random.default_rng(seed)),
        test_windows=te.windows,
        test_labels=te.y.astype(np.int8),
        test_families=te.families.astype(str),
        test_hosts=te.hosts.astype(str),
        test_scenarios=te.captures.astype(str),
    )
    np.savez_compressed(run / "test_scores.npz", labels=te.y.astype(np.int8),
                        **{name: s.astype(np.float32) for name, s in state.test_scores.items()})
    write_json(run / "history.json", state.histories)
    write_json(run / "metrics.json", metrics)


def _write_report(run: Path, state: _Trained, te: PartArrays, metrics: dict, profile: FeatureProfile) -> None:
    from edgebot.train.report import write_report

    names = profile.feature_names
    importance = {
        "XGBoost on single flows (gain)":
            dict(zip(names, state.models["xgboost"].feature_importances_.tolist())),
        "Random Forest on single flows (impurity)":
            dict(zip(names, state.models["random_forest"].feature_importances_.tolist())),
        "XGBoost fuser inputs (gain)":
            dict(zip(fuser_input_names(profile), state.models["fused"].feature_importances_.tolist())),
    }
    write_report(run, metrics, labels=te.y, scores=state.test_scores, history=state.histories,
                 importance=importance, timings=state.timings)
