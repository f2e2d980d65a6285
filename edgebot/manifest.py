"""The bundle manifest (``manifest.json``): one typed, versioned schema with one ``validate``, its canonical form and id.

The converter (``edgebot.convert.bundle_writer``), the gateway loader (``edgebot.bundle``) and the
test factories all go through :class:`Manifest`: the writer validates what it is about to write,
the loader validates what it reads, with the same checks and the same one-line
:class:`~edgebot.errors.BundleError` naming the field (``manifest field thresholds.fused must be
a number in [0, 1], got 2.0: ...``).

Integrity (schema 2). The manifest carries ``bundle_id``: the sha256 of its own canonical content
without that key (:func:`manifest_digest`), and it lists every other file with its sha256, so the
id pins the whole bundle. The file itself must be exactly :func:`render_manifest` of its content
(sorted keys, two-space indent, ASCII, one trailing newline), so that any changed byte is refused:
either the content changed (the id no longer matches) or only the layout did (the file is not in
canonical form). The id detects corruption and hand edits; it is no protection against someone
who recomputes it: that is what the optional signature (``edgebot.signing``) is for.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NoReturn

from edgebot.fields import FieldChecks
from edgebot.fields import show as _show
from edgebot.errors import BundleError

#: Version of the manifest layout this edgebot writes and reads (2: ``bundle_id`` covers the manifest).
SCHEMA_VERSION = 2
#: Oldest schema this edgebot still reads.
MIN_SCHEMA_VERSION = 2

MANIFEST = "manifest.json"
SIGNATURE_FILE = "signature.json"
HYBRID_FILE = "hybrid.tflite"
AUTOENCODER_FILE = "autoencoder.tflite"
FUSER_FILE = "fuser.json"
VERIFICATION_FILE = "verification.json"
#: A manifest larger than this is refused before it is parsed (a real one is a few KB).
MAX_MANIFEST_BYTES = 1 << 20

#: Top-level keys every manifest has (``bundle_id`` is added by :func:`seal`).
REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version", "edgebot_version", "featurizer", "scaler", "window", "models", "fuser",
    "thresholds", "versions", "files",
)
SEQUENCES = ("host-windows", "feature-axis")
FUSER_FIXED_INPUTS = ("hybrid_prob", "anomaly_score")
RECONVERT = "reconvert the run with `edgebot convert`"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_WINDOW = 4096
_MAX_FEATURES = 4096
_MAX_FILES = 64
_MAX_COMMAND = 16384
_MAX_DATA_FILES = 1024


# ---------------------------------------------------------------------------------------------
# canonical form and id


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted, ASCII JSON of ``data`` without its ``bundle_id`` (what the id hashes)."""
    content = {k: v for k, v in data.items() if k != "bundle_id"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def manifest_digest(data: Mapping[str, Any]) -> str:
    """The bundle id: hex sha256 of :func:`canonical_json` (64 digits; 12 of them name the bundle)."""
    return hashlib.sha256(canonical_json(data)).hexdigest()


def render_manifest(data: Mapping[str, Any]) -> bytes:
    """The exact bytes of ``manifest.json`` for ``data`` (sorted keys, indent 2, ASCII, newline)."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def seal(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``bundle_id`` set to its :func:`manifest_digest`."""
    content = {k: v for k, v in data.items() if k != "bundle_id"}
    return {**content, "bundle_id": manifest_digest(content)}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_manifest_bytes(raw: bytes, where: str = MANIFEST) -> dict[str, Any]:
    """Parse ``manifest.json`` bytes and check schema version and integrity (not the fields).

    Raises
    ------
    BundleError
        Too large, not JSON, not an object, no integer schema, a schema this edgebot does not
        read, no or a wrong ``bundle_id``, or bytes other than the canonical rendering.
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where} is {len(raw)} bytes, more than a manifest can be ({MAX_MANIFEST_BYTES}): "
                          f"re-copy the bundle or {RECONVERT}")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{where} is not valid JSON ({exc.__class__.__name__}): re-copy the bundle or {RECONVERT}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{where} is not a JSON object: re-copy the bundle or {RECONVERT}")
    schema = data.get("schema_version")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise BundleError(f"{where} has no integer schema_version: it is not an edgebot bundle manifest")
    if schema > SCHEMA_VERSION:
        built = data.get("edgebot_version")
        built = built if isinstance(built, str) and len(built) <= 40 else "?"
        raise BundleError(
            f"bundle schema {schema} is newer than this edgebot reads ({SCHEMA_VERSION}): upgrade edgebot on "
            f"this machine (the bundle was made by edgebot {built}) or {RECONVERT} of this version")
    if schema < MIN_SCHEMA_VERSION:
        raise BundleError(f"bundle schema {schema} is older than this edgebot reads "
                          f"({MIN_SCHEMA_VERSION}..{SCHEMA_VERSION}): {RECONVERT}")
    claimed = data.get("bundle_id")
    if not isinstance(claimed, str) or not _HEX64.match(claimed):
        raise BundleError(f"{where} has no valid bundle_id (64 hex digits): {RECONVERT}")
    try:
        actual = manifest_digest(data)
    except (TypeError, ValueError, RecursionError):  # pragma: no cover - json.loads output always dumps
        raise BundleError(f"{where} cannot be hashed: {RECONVERT}") from None
    if actual != claimed:
        raise BundleError(f"{where} does not match its bundle_id (tampered or corrupted): copy the bundle again "
                          f"from where it was converted, or {RECONVERT}")
    if render_manifest(data) != raw:
        raise BundleError(f"{where} is not in the canonical form `edgebot convert` writes (edited by hand?): "
                          f"copy the bundle again from where it was converted, or {RECONVERT}")
    return data


# ---------------------------------------------------------------------------------------------
# field checks: each raises one BundleError naming the field


def _fail(path: str, what: str, value: Any) -> NoReturn:
    raise BundleError(f"manifest field {path} must be {what}, got {_show(value)}: {RECONVERT}")


def _get(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise BundleError(f"manifest field {path}{key} is missing: the bundle is incomplete; {RECONVERT}")
    return obj[key]


_checks = FieldChecks(_fail)
_obj, _str, _int, _num = _checks.obj, _checks.text, _checks.integer, _checks.number
_str_list, _num_list = _checks.str_list, _checks.num_list


def _file_name(value: Any, path: str) -> str:
    name = _str(value, path, max_len=128)
    if Path(name).name != name or name in (MANIFEST, SIGNATURE_FILE, ".", "..") or name.startswith("."):
        _fail(path, "a plain file name inside the bundle", value)
    return name


# ---------------------------------------------------------------------------------------------
# the typed schema


@dataclass(frozen=True)
class TensorSpec:
    """One int8 tensor of a model: ``shape`` (-1 = batch), ``scale`` and ``zero_point``."""

    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def validate(cls, value: Any, path: str) -> TensorSpec:
        t = _obj(value, path)
        shape = _get(t, "shape", path + ".")
        if not isinstance(shape, list) or not 2 <= len(shape) <= 4:
            _fail(path + ".shape", "a list of 2 to 4 integers", shape)
        if isinstance(shape[0], bool) or not isinstance(shape[0], int) or shape[0] != -1:
            _fail(path + ".shape[0]", "-1 (a dynamic batch)", shape[0])
        dims = tuple([-1] + [_int(d, f"{path}.shape[{i + 1}]", 1, 1 << 16) for i, d in enumerate(shape[1:])])
        return cls(shape=dims, dtype=_str(t.get("dtype", "int8"), path + ".dtype", ("int8",)),
                   scale=_num(_get(t, "scale", path + "."), path + ".scale", positive=True),
                   zero_point=_int(_get(t, "zero_point", path + "."), path + ".zero_point", -128, 127))


@dataclass(frozen=True)
class ModelEntry:
    """``models.hybrid`` or ``models.autoencoder``: the file, its input and output tensors, its ops."""

    file: str
    input: TensorSpec
    output: TensorSpec
    ops: tuple[str, ...]

    @classmethod
    def validate(cls, value: Any, path: str) -> ModelEntry:
        m = _obj(value, path)
        return cls(file=_file_name(_get(m, "file", path + "."), path + ".file"),
                   input=TensorSpec.validate(_get(m, "input", path + "."), path + ".input"),
                   output=TensorSpec.validate(_get(m, "output", path + "."), path + ".output"),
                   ops=_str_list(m.get("ops", []), path + ".ops", max_items=256))


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: typed fields plus ``data``, the JSON content it was built from.

    Build it with :meth:`validate`; never by hand. ``data`` is what is written and hashed.
    """

    data: dict[str, Any]
    schema_version: int
    edgebot_version: str
    profile: str | None
    featurizer_version: str
    featurizer_hash: str
    feature_names: tuple[str, ...]
    sequence: str
    scaler_min: tuple[float, ...]
    scaler_max: tuple[float, ...]
    window: int
    hybrid: ModelEntry
    autoencoder: ModelEntry
    fuser_file: str
    fuser_raw_features: tuple[str, ...]
    thresholds: dict[str, float]
    files: dict[str, tuple[str, int]]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def bundle_id(self) -> str:
        """The 64-digit id (:func:`manifest_digest` of ``data``)."""
        return manifest_digest(self.data)

    def sealed(self) -> dict[str, Any]:
        """``data`` with its ``bundle_id``: what ``manifest.json`` holds."""
        return seal(self.data)

    @classmethod
    def validate(cls, data: Any) -> Manifest:
        """Check every field of a manifest by type and range, and their consistency.

        Parameters
        ----------
        data
            The parsed JSON (with or without ``bundle_id``, which is not checked here: see
            :func:`parse_manifest_bytes`).

        Raises
        ------
        BundleError
            ``manifest field <path> must be <what>, got <value>: reconvert ...`` for the first
            field that is missing, of the wrong type, or out of range.
        """
        d = _obj(data, "(top level)")
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise BundleError(f"manifest lacks {', '.join(missing)}: the bundle is incomplete; {RECONVERT}")
        schema = _int(d["schema_version"], "schema_version", MIN_SCHEMA_VERSION, SCHEMA_VERSION)
        version = _str(d["edgebot_version"], "edgebot_version", max_len=64)
        for key in ("created",):
            if key in d:
                _str(d[key], key, max_len=64)
        if "label_mode" in d:
            _str(d["label_mode"], "label_mode", ("binary",))
        if "calibration" in d:
            _obj(d["calibration"], "calibration")
        if "training" in d:
            _check_training(d["training"])
        _check_verification(d.get("verification"))
        versions = _obj(d["versions"], "versions")
        for key, value in versions.items():
            if value is not None:
                _str(value, f"versions.{key}", max_len=128)

        feat = _obj(d["featurizer"], "featurizer")
        profile = feat.get("profile")
        if profile is not None:
            _str(profile, "featurizer.profile", max_len=64)
        n_features = _int(_get(feat, "n_features", "featurizer."), "featurizer.n_features", 1, _MAX_FEATURES)
        names = _str_list(_get(feat, "feature_names", "featurizer."), "featurizer.feature_names")
        if len(names) != n_features:
            _fail("featurizer.feature_names", f"{n_features} names (featurizer.n_features)", len(names))
        sequence = _str(feat.get("sequence", "host-windows"), "featurizer.sequence", SEQUENCES)
        feat_version = _str(_get(feat, "version", "featurizer."), "featurizer.version", max_len=64)
        feat_hash = _str(_get(feat, "hash", "featurizer."), "featurizer.hash", max_len=128)

        scaler = _obj(d["scaler"], "scaler")
        smin = _num_list(_get(scaler, "min", "scaler."), "scaler.min", n_features)
        smax = _num_list(_get(scaler, "max", "scaler."), "scaler.max", n_features)
        for i, (lo, hi) in enumerate(zip(smin, smax)):
            if hi < lo:
                _fail(f"scaler.max[{i}]", f"at least scaler.min[{i}] ({lo:g})", hi)
        window = _int(d["window"], "window", 1, _MAX_WINDOW)

        models = _obj(d["models"], "models")
        hybrid = ModelEntry.validate(_get(models, "hybrid", "models."), "models.hybrid")
        autoencoder = ModelEntry.validate(_get(models, "autoencoder", "models."), "models.autoencoder")
        steps, channels = (n_features, 1) if sequence == "feature-axis" else (window, n_features)
        for path, got, want in (("models.hybrid.input.shape", hybrid.input.shape, (-1, steps, channels)),
                                ("models.hybrid.output.shape", hybrid.output.shape, (-1, 1)),
                                ("models.autoencoder.input.shape", autoencoder.input.shape, (-1, n_features)),
                                ("models.autoencoder.output.shape", autoencoder.output.shape, (-1, n_features))):
            if got != want:
                _fail(path, f"{list(want)} (window {window}, {n_features} features, {sequence})", list(got))

        fuser = _obj(d["fuser"], "fuser")
        fuser_file = _file_name(fuser.get("file", FUSER_FILE), "fuser.file")
        _str(fuser.get("format", "xgboost-json"), "fuser.format", ("xgboost-json",))
        _str(fuser.get("objective", "binary:logistic"), "fuser.objective", ("binary:logistic",))
        raw = _str_list(_get(fuser, "raw_features", "fuser."), "fuser.raw_features")
        unknown = [n for n in raw if n not in names]
        if unknown:
            _fail("fuser.raw_features", "names from featurizer.feature_names", unknown)
        if "inputs" in fuser:
            inputs = _str_list(fuser["inputs"], "fuser.inputs")
            if inputs != FUSER_FIXED_INPUTS + raw:
                _fail("fuser.inputs", "hybrid_prob, anomaly_score, then fuser.raw_features", list(inputs))

        th = _obj(d["thresholds"], "thresholds")
        thresholds = {
            "fused": _num(_get(th, "fused", "thresholds."), "thresholds.fused", 0.0, 1.0),
            "hybrid": _num(_get(th, "hybrid", "thresholds."), "thresholds.hybrid", 0.0, 1.0),
            "autoencoder": _num(_get(th, "autoencoder", "thresholds."), "thresholds.autoencoder", positive=True),
        }

        files = _check_files(d["files"])
        for path, name in (("models.hybrid.file", hybrid.file), ("models.autoencoder.file", autoencoder.file),
                           ("fuser.file", fuser_file)):
            if name not in files:
                _fail(path, "a file listed in files", name)
        return cls(data={k: v for k, v in d.items() if k != "bundle_id"}, schema_version=schema,
                   edgebot_version=version, profile=profile, featurizer_version=feat_version,
                   featurizer_hash=feat_hash, feature_names=names, sequence=sequence, scaler_min=smin,
                   scaler_max=smax, window=window, hybrid=hybrid, autoencoder=autoencoder, fuser_file=fuser_file,
                   fuser_raw_features=raw, thresholds=thresholds, files=files)


def _check_files(value: Any) -> dict[str, tuple[str, int]]:
    files = _obj(value, "files")
    if not files or len(files) > _MAX_FILES:
        _fail("files", f"an object of 1 to {_MAX_FILES} files", value)
    out = {}
    for name, entry in files.items():
        _file_name(name, f"files.{name}")
        e = _obj(entry, f"files.{name}")
        digest = _get(e, "sha256", f"files.{name}.")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            _fail(f"files.{name}.sha256", "64 lowercase hex digits", digest)
        out[name] = (digest, _int(_get(e, "bytes", f"files.{name}."), f"files.{name}.bytes", 0, 1 << 40))
    return out


def _check_training(value: Any) -> None:
    """``training``: an object; its ``data`` (when present) one ``{path, sha256, rows}`` per training
    file, its ``command`` (when present) the command line that trained the run."""
    t = _obj(value, "training")
    if "command" in t:
        _str(t["command"], "training.command", max_len=_MAX_COMMAND)
    data = t.get("data", [])
    if not isinstance(data, list) or len(data) > _MAX_DATA_FILES:
        _fail("training.data", f"a list of at most {_MAX_DATA_FILES} training files", data)
    for i, entry in enumerate(data):
        e = _obj(entry, f"training.data[{i}]")
        name = _str(_get(e, "path", f"training.data[{i}]."), f"training.data[{i}].path")
        if Path(name).is_absolute():
            _fail(f"training.data[{i}].path", "a file name, not an absolute path", name)
        digest = _get(e, "sha256", f"training.data[{i}].")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            _fail(f"training.data[{i}].sha256", "64 lowercase hex digits", digest)
        if e.get("rows") is not None:  # null: not counted (the run's files are named by sha256 all the same)
            _int(e["rows"], f"training.data[{i}].rows", 0, 1 << 40)


def _check_verification(value: Any) -> None:
    if value is None:
        return
    v = _obj(value, "verification")
    for key in ("float_f1", "int8_f1"):
        if key in v:
            _num(v[key], f"verification.{key}", 0.0, 1.0)
    for key in ("f1_drop", "max_f1_drop"):
        if key in v:
            _num(v[key], f"verification.{key}", -1.0, 1.0)
    if "passed" in v and v["passed"] is not True:
        _fail("verification.passed", "true (the converter publishes verified bundles only)", v["passed"])


def write_manifest(bundle_dir: str | Path, data: Mapping[str, Any] | Manifest) -> Manifest:
    """Validate ``data``, set its ``bundle_id`` and write ``manifest.json`` atomically.

    Returns
    -------
    Manifest
        The validated manifest written.

    Raises
    ------
    BundleError
        ``data`` breaks the schema (the converter never writes a manifest the loader refuses).
    """
    manifest = data if isinstance(data, Manifest) else Manifest.validate(dict(data))
    path = Path(bundle_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_bytes(render_manifest(manifest.sealed()))
    tmp.replace(path)
    return manifest
