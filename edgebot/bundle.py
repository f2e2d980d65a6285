"""The model bundle: the checking loader and int8 scoring (numpy + TFLite + XGBoost only).

A bundle is a directory written by ``edgebot convert``::

    manifest.json        what the bundle is and how to feed it (edgebot.manifest, docs/bundle.md)
    hybrid.tflite        CNN-LSTM, full int8, input (-1, T, F) host windows or (-1, F, 1) along
                         the feature axis (cicflowmeter profile), output (-1, 1) probability
    autoencoder.tflite   dense autoencoder, full int8, input (-1, F), output (-1, F)
    fuser.json           XGBoost binary:logistic Booster (JSON) over edgebot.fusion.fuser_inputs
    verification.json    int8 versus float metrics on the run's test split
    signature.json       optional: ed25519 signature of the bundle id (edgebot.signing)

:func:`load_bundle` checks everything before anything is scored and refuses a bundle with a
one-line :class:`~edgebot.errors.BundleError` (exit code 2): another schema, a manifest whose
bytes do not match its ``bundle_id``, a missing or bad signature when a trusted key is given, a
field of the wrong type or out of range, a missing or tampered file (sha256), a featurizer other
than the installed profile of its name (``zeek`` or ``cicflowmeter``), tensors whose shapes do
not match the feature count or window length, quantization that disagrees with the manifest.
It never falls back to defaults. This module never imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgebot.errors import BundleError, DataError, RuntimeMissingError
from edgebot.features import FeatureProfile, MinMaxScaler, get_profile
from edgebot.fusion import fused_probability, fuser_inputs, margin_kind, raw_feature_index, reconstruction_error
from edgebot.manifest import (  # noqa: F401 - re-exported: the bundle's file names and schema live there
    AUTOENCODER_FILE,
    FUSER_FILE,
    HYBRID_FILE,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MIN_SCHEMA_VERSION,
    REQUIRED_KEYS,
    SCHEMA_VERSION,
    SIGNATURE_FILE,
    VERIFICATION_FILE,
    Manifest,
    ModelEntry,
    parse_manifest_bytes,
    write_manifest,
)
from edgebot.runtime import Int8Model, QuantParams, find_interpreter, runtime_version
from edgebot.windows import last_rows, model_sequences

log = logging.getLogger(__name__)

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


def load_manifest(bundle_dir: str | Path, *, trust: str | os.PathLike[str] | None = None) -> Manifest:
    """Read ``manifest.json``, check its integrity (and signature), validate every field.

    Parameters
    ----------
    bundle_dir
        The bundle directory.
    trust
        A public key file (``edgebot keygen``): the bundle must carry a valid signature by it.

    Returns
    -------
    Manifest
        Validated; the files it lists are not checked here (see :func:`verify_files`).

    Raises
    ------
    BundleError
        No directory or manifest, not JSON, another schema, bytes that do not match the
        ``bundle_id``, no or a wrong signature under ``trust``, a field of the wrong type or range.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle {bundle_dir} is not a directory: give the directory `edgebot convert --out` wrote")
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir} has no {MANIFEST}: it is not a bundle; create one with `edgebot convert`")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from None
    data = parse_manifest_bytes(raw, str(path))
    if trust is not None:
        from edgebot.signing import verify_bundle_signature

        verify_bundle_signature(bundle_dir, data["bundle_id"], trust)
    return Manifest.validate(data)


def read_manifest(bundle_dir: str | Path, *, trust: str | os.PathLike[str] | None = None) -> dict:
    """The content of a checked ``manifest.json`` as a dict (see :func:`load_manifest`)."""
    return load_manifest(bundle_dir, trust=trust).sealed()


def verify_files(bundle_dir: str | Path, manifest: Manifest) -> None:
    """Check that every file the manifest lists exists and has its recorded sha256.

    Raises
    ------
    BundleError
        ``"bundle file X is missing"`` or ``"bundle file X does not match its sha256"``.
    """
    bundle_dir = Path(bundle_dir)
    for name, (expected, _) in manifest.files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle file {name} is missing from {bundle_dir}: copy the whole bundle directory again")
        if sha256_file(path) != expected:
            raise BundleError(
                f"bundle file {name} does not match its sha256 in the manifest (tampered or corrupted): "
                "copy the bundle again from where it was converted"
            )


def check_featurizer(manifest: Manifest) -> FeatureProfile:
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
    built = manifest.edgebot_version
    try:
        profile = get_profile(manifest.profile)
    except DataError:
        raise BundleError(
            f"bundle was built for feature profile {manifest.profile!r}, which this edgebot lacks: "
            f"install edgebot=={built}"
        ) from None
    n = manifest.n_features
    if n != profile.n_features:
        raise BundleError(
            f"bundle expects {n} features per flow, featurizer gives {profile.n_features} ({profile.name} profile): "
            f"use a bundle converted with this edgebot, or install edgebot=={built}"
        )
    if manifest.featurizer_hash != profile.hash or manifest.feature_names != tuple(profile.feature_names):
        raise BundleError(
            f"bundle was built for featurizer {manifest.featurizer_version} (hash {manifest.featurizer_hash}), "
            f"the installed one has hash {profile.hash} ({profile.name} profile): retrain and reconvert, "
            f"or install edgebot=={built}"
        )
    if manifest.sequence != profile.sequence:
        raise BundleError(
            f"bundle feeds its networks {manifest.sequence!r} sequences, the {profile.name} profile uses "
            f"{profile.sequence}: {_RECONVERT}"
        )
    return profile


def _check_model(model: Int8Model, spec: ModelEntry) -> None:
    """Model tensors against the (validated) manifest."""
    want_in, want_out = spec.input.shape, spec.output.shape
    if model.input_signature[-1] != want_in[-1] and len(model.input_signature) == len(want_in):
        raise BundleError(
            f"bundle expects {model.input_signature[-1]} features per flow, featurizer gives {want_in[-1]} "
            f"({spec.file}): use a bundle converted with this edgebot"
        )
    for got, want, what in ((model.input_signature, want_in, "input"), (model.output_signature, want_out, "output")):
        if tuple(got) != tuple(want):
            raise BundleError(
                f"{spec.file} {what} shape {list(got)} does not match the manifest's {list(want)}: {_RECONVERT}"
            )
    input_qp = QuantParams(spec.input.scale, spec.input.zero_point, spec.input.dtype)
    output_qp = QuantParams(spec.output.scale, spec.output.zero_point, spec.output.dtype)
    if not model.input_qp.matches(input_qp) or not model.output_qp.matches(output_qp):
        raise BundleError(f"{spec.file} quantization parameters differ from those in the manifest: {_RECONVERT}")


class Bundle:
    """A loaded, checked bundle: scale features, score windows, decide.

    Build it with :func:`load_bundle`. Attributes
    ----------
    path : Path
    manifest : dict
        The content of ``manifest.json`` (with its ``bundle_id``).
    spec : Manifest
        The same, validated and typed.
    digest : str
        The full bundle id: sha256 of the manifest's canonical content (64 hex digits), which pins
        every file's sha256; a signature signs it.
    bundle_id : str
        Its first 12 hex digits (the model id in incidents).
    signed_by : str or None
        Key id of the trusted key whose signature was verified (None: loaded without ``trust``).
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

    def __init__(self, path: Path, spec: Manifest, hybrid: Int8Model, autoencoder: Int8Model, booster: Any,
                 runtime: str, profile: FeatureProfile, signed_by: str | None = None):
        self.path = path
        self.profile = profile
        self.sequence = self.profile.sequence
        self.spec = spec
        self.manifest = spec.sealed()
        self.digest = self.manifest["bundle_id"]
        self.bundle_id = self.digest[:12]
        self.signed_by = signed_by
        self.version = spec.edgebot_version
        self.schema_version = spec.schema_version
        self.window = spec.window
        self.n_features = spec.n_features
        self.thresholds = dict(spec.thresholds)
        self.threshold = self.thresholds["fused"]
        self.runtime = runtime
        self.runtime_version = runtime_version(runtime)
        self._hybrid = hybrid
        self._autoencoder = autoencoder
        self._booster = booster
        self._margin = margin_kind(booster)
        self._scaler = MinMaxScaler(spec.scaler_min, spec.scaler_max)
        self._raw_index = raw_feature_index(self.profile.feature_names, spec.fuser_raw_features)

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
        fused = fused_probability(self._booster, fuser_inputs(hybrid, anomaly, last, self._raw_index), self._margin)
        return {"hybrid": hybrid, "anomaly": anomaly, "fused": fused}

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
        return fused_probability(self._booster, X, self._margin)


def load_booster(path: Path, n_inputs: int, num_threads: int = 1, remedy: str | None = None) -> Any:
    """Load an XGBoost fuser and check it takes ``n_inputs`` columns; ``remedy`` ends the error messages."""
    remedy = remedy or _RECONVERT
    try:
        from edgebot.lean import import_xgboost

        xgboost = import_xgboost()
    except ImportError:
        raise RuntimeMissingError("xgboost is not installed: pip install xgboost-cpu (the fuser needs it)") from None
    try:
        booster = xgboost.Booster(model_file=str(path))
    except xgboost.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "unreadable"
        raise BundleError(f"{path.name} is not an XGBoost model ({first}): {remedy}") from None
    if booster.num_features() != n_inputs:
        raise BundleError(
            f"{path.name} takes {booster.num_features()} inputs but the fusion layer gives {n_inputs}: {remedy}"
        )
    try:
        margin_kind(booster)
    except ValueError as exc:
        raise BundleError(f"{path.name}: {exc}: {remedy}") from None
    booster.set_param({"nthread": num_threads})
    return booster


def load_bundle(path: str | os.PathLike[str], *, runtime: str | None = None, num_threads: int = 1,
                max_batch: int = 256, trust: str | os.PathLike[str] | None = None) -> Bundle:
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
    trust
        Public key file (``edgebot keygen``): refuse the bundle unless it carries a valid
        signature by that key. None: signatures are not checked.

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        Another schema, a tampered manifest or file, no or a bad signature under ``trust``, a
        field of the wrong type or range, featurizer mismatch, wrong tensor shapes, quantization
        inconsistent with the manifest.
    RuntimeMissingError
        Neither ai-edge-litert nor tflite-runtime (or no xgboost, or no cryptography under
        ``trust``) is installed.
    ConfigError
        ``trust`` is not a readable ed25519 public key.
    """
    path = Path(path)
    spec = load_manifest(path, trust=trust)
    verify_files(path, spec)
    profile = check_featurizer(spec)

    interpreter_cls, runtime_name = find_interpreter(runtime)
    models = {}
    for key, entry in (("hybrid", spec.hybrid), ("autoencoder", spec.autoencoder)):
        model = Int8Model((path / entry.file).read_bytes(), entry.file, interpreter_cls,
                          num_threads=num_threads, max_batch=max_batch)
        _check_model(model, entry)
        models[key] = model
    # The fuser's trees in numpy (edgebot.trees): XGBoost's JSON model without the xgboost package,
    # whose import costs the gateway about 30 MB (scipy.sparse); scores equal xgboost's.
    from edgebot.trees import load_trees

    booster = load_trees(path / spec.fuser_file, 2 + len(spec.fuser_raw_features))
    from edgebot import __version__

    if spec.edgebot_version != __version__:
        log.warning("bundle %s was converted by edgebot %s, this is edgebot %s (same featurizer, loading it)",
                    path, spec.edgebot_version, __version__)
    signed_by = None
    if trust is not None:
        from edgebot.signing import public_key_id

        signed_by = public_key_id(trust)
    bundle = Bundle(path, spec, models["hybrid"], models["autoencoder"], booster, runtime_name, profile, signed_by)
    log.info("loaded bundle %s (%s) with %s %s%s", path, bundle.bundle_id, runtime_name, bundle.runtime_version,
             f", signed by trusted key {signed_by}" if signed_by else "")
    return bundle
