"""The model bundle: manifest schema, the checking loader, and int8 scoring (numpy + TFLite + XGBoost only).

A bundle is a directory written by ``edgebot convert``::

    manifest.json        what the bundle is and how to feed it (schema below, docs/bundle.md)
    hybrid.tflite        CNN-LSTM, full int8, input (-1, T, F) host windows or (-1, F, 1) along
                         the feature axis (cicflowmeter profile), output (-1, 1) probability
    autoencoder.tflite   dense autoencoder, full int8, input (-1, F), output (-1, F)
    fuser.json           XGBoost binary:logistic Booster (JSON) over edgebot.fusion.fuser_inputs
    verification.json    int8 versus float metrics on the run's test split

:func:`load_bundle` checks everything before anything is scored and refuses a bundle with a
one-line :class:`~edgebot.errors.BundleError` (exit code 2): a newer schema, a missing or
tampered file (sha256), a featurizer other than the installed profile of its name (``zeek`` or
``cicflowmeter``; manifests without a profile are ``zeek``), tensors whose shapes do
not match the feature count or window length, quantization that disagrees with the manifest.
It never falls back to defaults. This module never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebot.errors import BundleError, DataError, RuntimeMissingError
from edgebot.features import FeatureProfile, MinMaxScaler, get_profile
from edgebot.fusion import fuser_inputs, raw_feature_index, reconstruction_error
from edgebot.runtime import Int8Model, QuantParams, find_interpreter, runtime_version
from edgebot.windows import last_rows, model_sequences

log = logging.getLogger(__name__)

#: Version of the manifest layout this edgebot writes and reads.
SCHEMA_VERSION = 1
#: Oldest schema this edgebot still reads.
MIN_SCHEMA_VERSION = 1

MANIFEST = "manifest.json"
HYBRID_FILE = "hybrid.tflite"
AUTOENCODER_FILE = "autoencoder.tflite"
FUSER_FILE = "fuser.json"
VERIFICATION_FILE = "verification.json"

#: Top-level manifest keys every bundle must have.
REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version", "edgebot_version", "featurizer", "scaler", "window", "models", "fuser",
    "thresholds", "versions", "files",
)

_RECONVERT = "reconvert the run with `edgebot convert`"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(bundle_dir: str | Path, names: list[str]) -> dict[str, dict]:
    """The manifest's ``files`` section: ``{name: {"sha256": hex, "bytes": int}}``."""
    bundle_dir = Path(bundle_dir)
    return {name: {"sha256": sha256_file(bundle_dir / name), "bytes": (bundle_dir / name).stat().st_size}
            for name in sorted(names)}


def write_manifest(bundle_dir: str | Path, manifest: dict) -> Path:
    """Write ``manifest.json`` (indented, keys in the given order, strict JSON)."""
    path = Path(bundle_dir) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_manifest(bundle_dir: str | Path) -> dict:
    """Read and check the shape of ``manifest.json`` (not the files it lists).

    Raises
    ------
    BundleError
        No directory, no manifest, not JSON, a newer or older schema, a missing key.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle {bundle_dir} is not a directory: give the directory `edgebot convert --out` wrote")
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir} has no {MANIFEST}: it is not a bundle; create one with `edgebot convert`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc.__class__.__name__}): re-copy the bundle or {_RECONVERT}")
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} is not a JSON object: re-copy the bundle or {_RECONVERT}")
    schema = manifest.get("schema_version")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise BundleError(f"{path} has no integer schema_version: it is not an edgebot bundle manifest")
    if schema > SCHEMA_VERSION:
        raise BundleError(
            f"bundle schema {schema} is newer than this edgebot reads ({SCHEMA_VERSION}): "
            f"upgrade edgebot on this machine (the bundle was made by edgebot {manifest.get('edgebot_version', '?')})"
        )
    if schema < MIN_SCHEMA_VERSION:
        raise BundleError(f"bundle schema {schema} is too old for this edgebot (reads {MIN_SCHEMA_VERSION}..{SCHEMA_VERSION}): {_RECONVERT}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{path} lacks {', '.join(missing)}: the bundle is incomplete; {_RECONVERT}")
    return manifest


def verify_files(bundle_dir: str | Path, manifest: dict) -> None:
    """Check that every file the manifest lists exists and has its recorded sha256.

    Raises
    ------
    BundleError
        ``"bundle file X is missing"`` or ``"bundle file X does not match its sha256"``.
    """
    bundle_dir = Path(bundle_dir)
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"the manifest of {bundle_dir} lists no files: {_RECONVERT}")
    for name, entry in files.items():
        if Path(name).name != name or name == MANIFEST:
            raise BundleError(f"the manifest of {bundle_dir} lists a bad file name {name!r}: {_RECONVERT}")
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle file {name} is missing from {bundle_dir}: copy the whole bundle directory again")
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not expected:
            raise BundleError(f"the manifest of {bundle_dir} has no sha256 for {name}: {_RECONVERT}")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle file {name} does not match its sha256 in the manifest (tampered or corrupted): "
                "copy the bundle again from where it was converted"
            )
    for name in (HYBRID_FILE, AUTOENCODER_FILE, FUSER_FILE):
        if name not in files:
            raise BundleError(f"the manifest of {bundle_dir} does not list {name}: {_RECONVERT}")


def check_featurizer(manifest: dict) -> FeatureProfile:
    """Refuse a bundle built for another featurizer than the installed profile of its name.

    Returns
    -------
    FeatureProfile
        The bundle's profile (``featurizer.profile``; ``zeek`` when the manifest names none).

    Raises
    ------
    BundleError
        Unknown profile, or feature count, names, featurizer hash or sequence layout differ.
    """
    feat = manifest["featurizer"]
    built = manifest.get("edgebot_version", "?")
    if not isinstance(feat, dict):
        raise BundleError(f"manifest featurizer must be an object: {_RECONVERT}")
    try:
        profile = get_profile(feat.get("profile"))
    except DataError:
        raise BundleError(
            f"bundle was built for feature profile {feat.get('profile')!r}, which this edgebot lacks: "
            f"install edgebot=={built}"
        )
    n = feat.get("n_features")
    if n != profile.n_features:
        raise BundleError(
            f"bundle expects {n} features per flow, featurizer gives {profile.n_features} ({profile.name} profile): "
            f"use a bundle converted with this edgebot, or install edgebot=={built}"
        )
    if feat.get("hash") != profile.hash or list(feat.get("feature_names", [])) != list(profile.feature_names):
        raise BundleError(
            f"bundle was built for featurizer {feat.get('version')} (hash {feat.get('hash')}), "
            f"the installed one has hash {profile.hash} ({profile.name} profile): retrain and reconvert, "
            f"or install edgebot=={built}"
        )
    if feat.get("sequence", profile.sequence) != profile.sequence:
        raise BundleError(
            f"bundle feeds its networks {feat.get('sequence')!r} sequences, the {profile.name} profile uses "
            f"{profile.sequence}: {_RECONVERT}"
        )
    return profile


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BundleError(f"manifest {what} must be a finite number, got {value!r}: {_RECONVERT}")
    return float(value)


@dataclass(frozen=True)
class _ModelSpec:
    file: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_qp: QuantParams
    output_qp: QuantParams


def _model_spec(manifest: dict, key: str) -> _ModelSpec:
    try:
        m = manifest["models"][key]
        return _ModelSpec(
            file=str(m["file"]),
            input_shape=tuple(int(d) for d in m["input"]["shape"]),
            output_shape=tuple(int(d) for d in m["output"]["shape"]),
            input_qp=QuantParams.from_dict(m["input"]),
            output_qp=QuantParams.from_dict(m["output"]),
        )
    except (KeyError, TypeError, ValueError):
        raise BundleError(f"manifest entry models.{key} is incomplete (file, input, output): {_RECONVERT}")


def _check_model(model: Int8Model, spec: _ModelSpec, expected_in: tuple[int, ...],
                 expected_out: tuple[int, ...]) -> None:
    """Model tensors against the manifest and against the installed featurizer."""
    if model.input_signature[-1] != expected_in[-1] and len(model.input_signature) == len(expected_in):
        raise BundleError(
            f"bundle expects {model.input_signature[-1]} features per flow, featurizer gives {expected_in[-1]} "
            f"({spec.file}): use a bundle converted with this edgebot"
        )
    for got, want, what in ((model.input_signature, expected_in, "input"),
                            (model.output_signature, expected_out, "output")):
        if tuple(got) != tuple(want):
            raise BundleError(
                f"{spec.file} {what} shape {list(got)} does not match the manifest's {list(want)}: {_RECONVERT}"
            )
    if tuple(spec.input_shape) != tuple(model.input_signature) or tuple(spec.output_shape) != tuple(model.output_signature):
        raise BundleError(f"{spec.file} tensor shapes differ from those in the manifest: {_RECONVERT}")
    if not model.input_qp.matches(spec.input_qp) or not model.output_qp.matches(spec.output_qp):
        raise BundleError(f"{spec.file} quantization parameters differ from those in the manifest: {_RECONVERT}")


class Bundle:
    """A loaded, checked bundle: scale features, score windows, decide.

    Build it with :func:`load_bundle`. Attributes
    ----------
    path : Path
    manifest : dict
    bundle_id : str
        First 12 hex digits of the sha256 of ``manifest.json`` (which pins every file's sha256).
    version : str
        edgebot version that converted the bundle.
    schema_version : int
    window : int
        ``T``, flows per window (1 under the feature-axis layout).
    profile : FeatureProfile
        The feature profile the bundle was trained on (``zeek`` or ``cicflowmeter``); featurize
        records with :meth:`featurize`.
    sequence : str
        ``"host-windows"`` or ``"feature-axis"``; build model inputs with :meth:`sequences`.
    n_features : int
        ``F``, features per flow.
    threshold : float
        Decision threshold on the fused score (``score >= threshold`` = malicious).
    thresholds : dict
        ``fused``, ``hybrid`` and ``autoencoder`` thresholds.
    runtime : str
        Interpreter package in use (``"ai_edge_litert"`` or ``"tflite_runtime"``).
    runtime_version : str
    """

    def __init__(self, path: Path, manifest: dict, bundle_id: str, hybrid: Int8Model,
                 autoencoder: Int8Model, booster: Any, runtime: str, profile: FeatureProfile | None = None):
        self.path = path
        self.profile = profile or get_profile(manifest["featurizer"].get("profile"))
        self.sequence = self.profile.sequence
        self.manifest = manifest
        self.bundle_id = bundle_id
        self.version = str(manifest["edgebot_version"])
        self.schema_version = int(manifest["schema_version"])
        self.window = int(manifest["window"])
        self.n_features = int(manifest["featurizer"]["n_features"])
        th = manifest["thresholds"]
        self.thresholds = {k: _float(th.get(k), f"thresholds.{k}") for k in ("fused", "hybrid", "autoencoder")}
        if self.thresholds["autoencoder"] <= 0:
            raise BundleError(f"manifest thresholds.autoencoder must be positive: {_RECONVERT}")
        self.threshold = self.thresholds["fused"]
        self.runtime = runtime
        self.runtime_version = runtime_version(runtime)
        self._hybrid = hybrid
        self._autoencoder = autoencoder
        self._booster = booster
        self._scaler = MinMaxScaler.from_dict(manifest["scaler"])
        self._raw_index = raw_feature_index(self.profile.feature_names, manifest["fuser"]["raw_features"])

    def __repr__(self) -> str:
        return (f"Bundle({str(self.path)!r}, id={self.bundle_id}, profile={self.profile.name}, T={self.window}, "
                f"F={self.n_features}, "
                f"threshold={self.threshold:.4g}, runtime={self.runtime})")

    def scale(self, X_raw: np.ndarray) -> np.ndarray:
        """Min-max scale raw features with the bundle's scaler.

        Parameters
        ----------
        X_raw
            ``(n, F) float32`` from :func:`edgebot.features.featurize` (any leading shape works).

        Returns
        -------
        np.ndarray
            ``(n, F) float32`` in [0, 1].
        """
        X_raw = np.asarray(X_raw, dtype=np.float32)
        if X_raw.shape[-1] != self.n_features:
            raise BundleError(f"X has {X_raw.shape[-1]} features, but the bundle expects {self.n_features}")
        return self._scaler.transform(X_raw)

    def featurize(self, records: Any) -> np.ndarray:
        """Raw features ``(n, F) float32`` of flow records with the bundle's profile's featurizer.

        Raises
        ------
        DataError
            Records of another profile (e.g. Zeek flows for a cicflowmeter bundle).
        """
        return self.profile.featurize(records)

    def sequences(self, X: np.ndarray, hosts: Any = None, ts: Any = None) -> np.ndarray:
        """The networks' input for scaled flows, whatever the bundle's layout (offline, one batch).

        Parameters
        ----------
        X
            ``(n, F) float32`` scaled features (:meth:`scale`).
        hosts, ts
            ``(n,)`` host key and start time of each flow; used (and required) by host windows only.

        Returns
        -------
        np.ndarray
            ``(n, T, F)`` host windows, or ``(n, F, 1)`` along the feature axis; float32.
        """
        return model_sequences(X, self.sequence, hosts, ts, self.window)

    def _check_windows(self, W: np.ndarray) -> np.ndarray:
        W = np.asarray(W, dtype=np.float32)
        steps, channels = self.profile.input_shape(self.window)
        if W.ndim != 3 or W.shape[1] != steps or W.shape[2] != channels:
            raise BundleError(
                f"windows have shape {tuple(W.shape)}, but the bundle expects (n, {steps}, {channels}): "
                "build them with Bundle.sequences (or edgebot.windows and the bundle's window length)"
            )
        return W

    def score_components(self, W: np.ndarray) -> dict[str, np.ndarray]:
        """Every score the bundle computes for scaled windows.

        Parameters
        ----------
        W
            ``(n, T, F) float32`` scaled windows (the last row is the flow being scored).

        Returns
        -------
        dict
            ``hybrid`` ``(n,)`` CNN-LSTM probability, ``anomaly`` ``(n,)`` reconstruction error
            divided by the autoencoder threshold (1.0 = at it), ``fused`` ``(n,)`` the fuser's
            probability; all float32 and higher = more malicious.
        """
        W = self._check_windows(W)
        n = len(W)
        if n == 0:
            empty = np.zeros(0, dtype=np.float32)
            return {"hybrid": empty, "anomaly": empty.copy(), "fused": empty.copy()}
        hybrid = self._hybrid.run(W)[:, 0]
        last = last_rows(W, self.sequence)
        recon = self._autoencoder.run(last)
        anomaly = (reconstruction_error(last, recon) / np.float32(self.thresholds["autoencoder"])).astype(np.float32)
        fused = self._booster.inplace_predict(fuser_inputs(hybrid, anomaly, last, self._raw_index))
        return {"hybrid": hybrid, "anomaly": anomaly, "fused": np.asarray(fused, dtype=np.float32).reshape(n)}

    def score(self, W: np.ndarray) -> np.ndarray:
        """Fused score ``(n,) float32`` of scaled windows ``(n, T, F)``; higher = more malicious."""
        return self.score_components(W)["fused"]

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """``(n,) bool``: True where the fused score reaches the bundle's threshold.

        Compared in float64: thresholds are float64 values set just above a float32 score, and
        numpy 2 would round the threshold to float32 in a float32 comparison.
        """
        return np.asarray(scores, dtype=np.float64) >= self.threshold

    def fuse(self, hybrid: np.ndarray, anomaly: np.ndarray, last_rows: np.ndarray) -> np.ndarray:
        """The fuser alone: ``(n,)``, ``(n,)``, ``(n, F)`` scaled last rows -> ``(n,)`` fused score.

        Used by the converter to score the float models' outputs with the very same fuser.
        """
        X = fuser_inputs(np.asarray(hybrid, np.float32), np.asarray(anomaly, np.float32),
                         np.asarray(last_rows, np.float32), self._raw_index)
        return np.asarray(self._booster.inplace_predict(X), dtype=np.float32).reshape(len(X))


def load_booster(path: Path, n_inputs: int, num_threads: int = 1, remedy: str | None = None) -> Any:
    """Load an XGBoost fuser and check it takes ``n_inputs`` columns; ``remedy`` ends the error messages."""
    remedy = remedy or _RECONVERT
    try:
        from edgebot.lean import import_xgboost

        xgboost = import_xgboost()
    except ImportError:
        raise RuntimeMissingError("xgboost is not installed: pip install xgboost-cpu (the fuser needs it)")
    try:
        booster = xgboost.Booster(model_file=str(path))
    except xgboost.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "unreadable"
        raise BundleError(f"{path.name} is not an XGBoost model ({first}): {remedy}")
    if booster.num_features() != n_inputs:
        raise BundleError(
            f"{path.name} takes {booster.num_features()} inputs but the fusion layer gives {n_inputs}: {remedy}"
        )
    booster.set_param({"nthread": num_threads})
    return booster


def load_bundle(path: str | Path, *, runtime: str | None = None, num_threads: int = 1,
                max_batch: int = 256) -> Bundle:
    """Load a bundle after checking all of it.

    Parameters
    ----------
    path
        The bundle directory.
    runtime
        Force ``"ai_edge_litert"`` or ``"tflite_runtime"``; None picks the first installed.
    num_threads
        Interpreter and XGBoost threads (1 is fastest for gateway batch sizes).
    max_batch
        Largest interpreter batch (bigger inputs are scored in chunks).

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        Newer/older schema, missing or tampered file, featurizer mismatch, wrong tensor shapes,
        quantization or thresholds inconsistent with the manifest.
    RuntimeMissingError
        Neither ai-edge-litert nor tflite-runtime (or no xgboost) is installed.
    """
    path = Path(path)
    manifest = read_manifest(path)
    verify_files(path, manifest)
    profile = check_featurizer(manifest)
    n_features = profile.n_features
    window = manifest["window"]
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise BundleError(f"manifest window must be a positive integer, got {window!r}: {_RECONVERT}")
    scaler = manifest["scaler"]
    if not isinstance(scaler, dict) or len(scaler.get("min", [])) != n_features or len(scaler.get("max", [])) != n_features:
        raise BundleError(f"manifest scaler must hold {n_features} minima and maxima: {_RECONVERT}")
    raw = manifest["fuser"].get("raw_features", [])
    unknown = [name for name in raw if name not in profile.feature_names]
    if unknown:
        raise BundleError(f"the fuser uses features the featurizer lacks ({', '.join(unknown)}): {_RECONVERT}")

    interpreter_cls, runtime_name = find_interpreter(runtime)
    hybrid_spec = _model_spec(manifest, "hybrid")
    ae_spec = _model_spec(manifest, "autoencoder")
    models = {}
    for key, spec, expected_in, expected_out in (
        ("hybrid", hybrid_spec, (-1, *profile.input_shape(window)), (-1, 1)),
        ("autoencoder", ae_spec, (-1, n_features), (-1, n_features)),
    ):
        if spec.file not in manifest["files"]:
            raise BundleError(f"models.{key}.file {spec.file} is not among the manifest's files: {_RECONVERT}")
        model = Int8Model((path / spec.file).read_bytes(), spec.file, interpreter_cls,
                          num_threads=num_threads, max_batch=max_batch)
        _check_model(model, spec, expected_in, expected_out)
        models[key] = model
    fuser_file = manifest["fuser"].get("file", FUSER_FILE)
    if fuser_file not in manifest["files"]:
        raise BundleError(f"fuser.file {fuser_file} is not among the manifest's files: {_RECONVERT}")
    booster = load_booster(path / fuser_file, 2 + len(raw), num_threads)
    bundle_id = sha256_file(path / MANIFEST)[:12]
    from edgebot import __version__

    if manifest["edgebot_version"] != __version__:
        log.warning("bundle %s was converted by edgebot %s, this is edgebot %s (same featurizer, loading it)",
                    path, manifest["edgebot_version"], __version__)
    bundle = Bundle(path, manifest, bundle_id, models["hybrid"], models["autoencoder"], booster, runtime_name,
                    profile)
    log.info("loaded bundle %s (%s) with %s %s", path, bundle_id, runtime_name, bundle.runtime_version)
    return bundle
