"""The run dir (``edgebot train --out``): one typed, versioned schema with one ``validate``.

The trainer (``edgebot.train.fit``) and the test factory (``tests/bundle_factory.py``) write
``spec.json`` through :func:`write_spec`, which validates what is about to be written; the
converter (``edgebot.convert.bundle_writer``) and the bench (``edgebot.edge.bench``) read it
through :class:`RunDir` / :func:`read_spec`, with the same checks and the same one-line
:class:`~edgebot.errors.BundleError` naming the file and the field (``RUN/spec.json field window
must be an integer in [1, 4096], got 0: retrain the run with this edgebot``). docs/run-dir.md lists every
file and key.

This module imports neither numpy nor TensorFlow at import time: the bench and the converter's
parent process read run dirs without the training stack (the arrays of ``data.npz`` are checked
with numpy, imported when :meth:`RunDir.open` is asked to check them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NoReturn, Optional

from edgebot.manifest import _MAX_COMMAND  # the recorded training command: as long as the manifest allows
from edgebot.fields import FieldChecks
from edgebot.fields import show as _show
from edgebot.errors import BundleError

if TYPE_CHECKING:  # pragma: no cover
    from edgebot.features import FeatureProfile

#: Version of the spec.json layout this edgebot writes; a spec without ``schema_version`` is 1.
RUN_SCHEMA_VERSION = 1

SPEC_FILE = "spec.json"
DATA_FILE = "data.npz"
METRICS_FILE = "metrics.json"
#: Files that make a run dir complete (what ``edgebot train`` writes, besides figures and reports).
RUN_FILES: tuple[str, ...] = (
    "cnn_lstm.keras", "cnn.keras", "lstm.keras", "autoencoder.keras", "fuser.json", "fuser_rf.joblib",
    "random_forest.joblib", "xgboost_flow.json", SPEC_FILE, DATA_FILE, METRICS_FILE, "history.json",
    "report.md", "report.html",
)
#: Run-dir files the converter reads.
CONVERT_INPUTS: tuple[str, ...] = ("cnn_lstm.keras", "autoencoder.keras", "fuser.json", SPEC_FILE, DATA_FILE)
#: Run-dir files the bench reads (to time the float Keras models beside the int8 bundle).
BENCH_INPUTS: tuple[str, ...] = ("cnn_lstm.keras", "autoencoder.keras", SPEC_FILE)
#: Arrays of data.npz the converter reads.
NPZ_KEYS: tuple[str, ...] = ("calib_windows", "test_windows", "test_labels")
#: Every array the trainer writes into data.npz.
NPZ_ALL_KEYS: tuple[str, ...] = NPZ_KEYS + ("test_families", "test_hosts", "test_scenarios")
#: Keys every spec.json has (the rest are optional: see docs/run-dir.md).
REQUIRED_KEYS: tuple[str, ...] = (
    "featurizer", "scaler", "window", "fuser_raw_features", "ae_threshold", "fused_threshold", "hybrid_threshold",
    "versions",
)
SEQUENCES = ("host-windows", "feature-axis")
LABEL_MODES = ("binary",)
RETRAIN = "retrain the run with this edgebot"

_MAX_WINDOW = 4096
_MAX_FEATURES = 4096


# ---------------------------------------------------------------------------------------------
# field checks: each raises one BundleError naming the field


class _SpecError(BundleError):
    """A field of spec.json breaks the schema (re-raised by :meth:`RunSpec.validate` naming the file)."""


def _fail(path: str, what: str, value: Any) -> NoReturn:
    raise _SpecError(f"field {path} must be {what}, got {_show(value)}: {RETRAIN}")


_checks = FieldChecks(_fail)
_obj, _str, _int, _num = _checks.obj, _checks.text, _checks.integer, _checks.number
_str_list, _num_list = _checks.str_list, _checks.num_list


# ---------------------------------------------------------------------------------------------
# the typed schema


@dataclass(frozen=True)
class RunSpec:
    """A validated ``spec.json``: typed fields plus ``data``, the JSON content it was built from.

    Build it with :meth:`validate`, never by hand; ``data`` is what :func:`write_spec` writes
    (key order is part of the contract).
    """

    data: dict[str, Any]
    schema_version: int
    profile: Optional[str]
    featurizer_version: str
    featurizer_hash: str
    feature_names: tuple[str, ...]
    sequence: str
    scaler_min: tuple[float, ...]
    scaler_max: tuple[float, ...]
    window: int
    fuser_raw_features: tuple[str, ...]
    ae_threshold: float
    fused_threshold: float
    hybrid_threshold: float
    versions: dict[str, Optional[str]]
    label_mode: str = "binary"
    fpr_budget: Optional[float] = None
    seed: Optional[int] = None
    split: dict[str, Any] = field(default_factory=dict)
    files: tuple[dict[str, Any], ...] = ()
    command: Optional[str] = None
    """The command line that trained the run (``edgebot train ...``), when recorded."""

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def featurizer(self) -> dict[str, Any]:
        """The ``featurizer`` object as recorded (``FeatureProfile.info()`` of the trainer)."""
        return dict(self.data["featurizer"])

    @property
    def scaler(self) -> dict[str, Any]:
        return dict(self.data["scaler"])

    def input_shape(self) -> tuple[int, int]:
        """``(steps, channels)`` of the networks' input: ``(T, F)`` host windows or ``(F, 1)``."""
        return (self.n_features, 1) if self.sequence == "feature-axis" else (self.window, self.n_features)

    @classmethod
    def validate(cls, data: Any, where: str = SPEC_FILE) -> RunSpec:
        """Check every field of a spec.json by type and range, and their consistency.

        ``where`` names the file in the messages (:func:`read_spec` gives its path).

        Raises
        ------
        BundleError
            ``spec.json lacks ...`` or ``spec.json field <path> must be <what>, got <value>: ...``
            for the first field that is missing, of the wrong type, or out of range; a schema
            newer than this edgebot reads.
        """
        try:
            return cls._validate(data, where)
        except _SpecError as exc:
            raise BundleError(f"{where} {exc}") from None

    @classmethod
    def _validate(cls, data: Any, where: str) -> RunSpec:
        d = _obj(data, "(top level)")
        lacking = [k for k in REQUIRED_KEYS if k not in d]
        if lacking:
            raise BundleError(f"{where} lacks {', '.join(lacking)}: {RETRAIN}")
        schema = d.get("schema_version", 1)
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > RUN_SCHEMA_VERSION:
            raise BundleError(f"{where} has schema {schema}, newer than this edgebot reads "
                              f"({RUN_SCHEMA_VERSION}): upgrade edgebot")
        schema = _int(schema, "schema_version", 1, RUN_SCHEMA_VERSION)

        feat = _obj(d["featurizer"], "featurizer")
        profile = feat.get("profile")
        if profile is not None:
            _str(profile, "featurizer.profile")
        if "n_features" not in feat or "feature_names" not in feat:
            _fail("featurizer", "an object with n_features and feature_names", feat)
        n_features = _int(feat["n_features"], "featurizer.n_features", 1, _MAX_FEATURES)
        names = _str_list(feat["feature_names"], "featurizer.feature_names")
        if len(names) != n_features:
            _fail("featurizer.feature_names", f"{n_features} names (featurizer.n_features)", len(names))
        feat_hash = _str(feat.get("hash"), "featurizer.hash")
        feat_version = str(feat.get("version", ""))
        sequence = _str(d.get("sequence", feat.get("sequence", "host-windows")), "sequence", SEQUENCES)

        scaler = _obj(d["scaler"], "scaler")
        smin = _num_list(scaler.get("min"), "scaler.min", n_features)
        smax = _num_list(scaler.get("max"), "scaler.max", n_features)
        window = _int(d["window"], "window", 1, _MAX_WINDOW)

        raw = _str_list(d["fuser_raw_features"], "fuser_raw_features")
        unknown = [n for n in raw if n not in names]
        if unknown:
            _fail("fuser_raw_features", "names from featurizer.feature_names", unknown)
        if "fuser_inputs" in d:
            inputs = _str_list(d["fuser_inputs"], "fuser_inputs")
            if inputs != ("hybrid_prob", "anomaly_score") + raw:
                _fail("fuser_inputs", "hybrid_prob, anomaly_score, then fuser_raw_features", list(inputs))

        versions = _obj(d["versions"], "versions")
        for key, value in versions.items():
            if value is not None and not isinstance(value, str):
                _fail(f"versions.{key}", "a string or null", value)
        label_mode = d.get("label_mode", "binary")
        if label_mode not in LABEL_MODES:
            raise BundleError(f"run has label_mode {label_mode!r}; the bundle supports binary runs only")
        fpr_budget = d.get("fpr_budget")
        seed = d.get("seed")
        command = d.get("command")
        if command is not None and (not isinstance(command, str) or not command or len(command) > _MAX_COMMAND):
            _fail("command", f"a non-empty string of at most {_MAX_COMMAND} characters", command)
        files = d.get("data", [])
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            _fail("data", "a list of objects (path, sha256, rows)", files)
        return cls(
            data=dict(d), schema_version=schema, profile=profile, featurizer_version=feat_version,
            featurizer_hash=feat_hash, feature_names=names, sequence=sequence, scaler_min=smin, scaler_max=smax,
            window=window, fuser_raw_features=raw,
            ae_threshold=_num(d["ae_threshold"], "ae_threshold", positive=True),
            fused_threshold=_num(d["fused_threshold"], "fused_threshold"),
            hybrid_threshold=_num(d["hybrid_threshold"], "hybrid_threshold"),
            versions=dict(versions), label_mode=label_mode,
            fpr_budget=None if fpr_budget is None else _num(fpr_budget, "fpr_budget", low=0.0, high=1.0),
            seed=None if seed is None else _int(seed, "seed", -(1 << 63), (1 << 64) - 1),
            split=_obj(d.get("split", {}), "split"), files=tuple(files), command=command,
        )

    def installed_profile(self) -> FeatureProfile:
        """The installed feature profile this run was trained with, checked by count and hash.

        Raises
        ------
        BundleError
            A profile this edgebot lacks, another number of features or another featurizer hash.
        """
        from edgebot.errors import DataError
        from edgebot.features import get_profile

        try:
            profile = get_profile(self.profile)
        except DataError as exc:
            raise BundleError(f"run was trained on a feature profile this edgebot lacks ({exc}): upgrade edgebot") from None
        if self.n_features != profile.n_features:
            raise BundleError(
                f"run was trained on {self.n_features} features per flow, the {profile.name} featurizer gives "
                f"{profile.n_features}: retrain with this edgebot"
            )
        if self.featurizer_hash != profile.hash:
            raise BundleError(
                f"run was trained with {profile.name} featurizer hash {self.featurizer_hash}, the installed one is "
                f"{profile.hash}: retrain with this edgebot"
            )
        return profile


def write_spec(run_dir: str | Path, data: Mapping[str, Any]) -> RunSpec:
    """Validate ``data`` (stamped with :data:`RUN_SCHEMA_VERSION`) and write ``spec.json``.

    ``data`` may hold numpy scalars and arrays: it goes through :func:`edgebot.jsonsafe.jsonable`
    first, so what is validated is exactly what is written.

    Raises
    ------
    BundleError
        ``data`` breaks the schema (the trainer never writes a run dir the converter refuses).
    """
    from edgebot.jsonsafe import jsonable, write_json

    content = jsonable({"schema_version": RUN_SCHEMA_VERSION, **{k: v for k, v in data.items()
                                                                  if k != "schema_version"}})
    spec = RunSpec.validate(content)
    write_json(Path(run_dir) / SPEC_FILE, spec.data)
    return spec


def read_spec(run_dir: str | Path) -> RunSpec:
    """Parse and validate ``run_dir/spec.json``.

    Raises
    ------
    BundleError
        Unreadable, not JSON, or breaking the schema.
    """
    path = Path(run_dir) / SPEC_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleError(f"{path} cannot be read ({exc.__class__.__name__}): {RETRAIN}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc.__class__.__name__}): retrain the run") from None
    return RunSpec.validate(data, str(path))


def missing_files(run_dir: str | Path, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are not files in ``run_dir``."""
    return [name for name in names if not (Path(run_dir) / name).is_file()]


@dataclass(frozen=True)
class RunDir:
    """A checked run dir: its path, its validated spec and its metrics (``{}`` when absent)."""

    path: Path
    spec: RunSpec
    metrics: dict[str, Any]

    @classmethod
    def open(cls, run_dir: str | Path, need: tuple[str, ...] = CONVERT_INPUTS, *,
             check_data: bool = True) -> RunDir:
        """Check a run dir: the files in ``need``, spec.json, the installed featurizer, data.npz.

        Raises
        ------
        BundleError
            Not a directory, a missing model or file, a spec that breaks the schema, a
            featurizer other than the installed one, arrays of the wrong shape.
        """
        path = Path(run_dir)
        if not path.is_dir():
            raise BundleError(f"run dir {path} is not a directory: give the --out of `edgebot train`")
        missing = missing_files(path, need)
        if missing:
            models = [m for m in missing if m.endswith(".keras") or m == "fuser.json"]
            what = "model" if models else "file"
            raise BundleError(
                f"run dir {path} has no {', '.join(missing)} ({what} missing): train it completely with `edgebot train`"
            )
        spec = read_spec(path)
        profile = spec.installed_profile()
        if check_data:
            _check_data(path, profile.input_shape(spec.window))
        return cls(path=path, spec=spec, metrics=_read_metrics(path))


def _check_data(run_dir: Path, input_shape: tuple[int, int]) -> None:
    import numpy as np

    where = run_dir / DATA_FILE
    try:
        with np.load(where, allow_pickle=False) as data:
            absent = [k for k in NPZ_KEYS if k not in data.files]
            shapes = {k: data[k].shape for k in NPZ_KEYS if k in data.files}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{where} cannot be read ({exc.__class__.__name__}): retrain the run") from None
    if absent:
        raise BundleError(f"{where} lacks {', '.join(absent)}: {RETRAIN}")
    steps, channels = input_shape
    for key in ("calib_windows", "test_windows"):
        if len(shapes[key]) != 3 or tuple(shapes[key][1:]) != (steps, channels):
            raise BundleError(f"data.npz {key} has shape {shapes[key]}, expected (n, {steps}, {channels}): retrain the run")
    if shapes["calib_windows"][0] == 0:
        raise BundleError("data.npz has no calibration windows: retrain the run")
    if shapes["test_labels"] != (shapes["test_windows"][0],):
        raise BundleError("data.npz test_labels and test_windows differ in length: retrain the run")


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    import logging

    path = run_dir / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        logging.getLogger(__name__).warning("%s is not valid JSON; the manifest will carry no training metrics", path)
        return {}
    return metrics if isinstance(metrics, dict) else {}
