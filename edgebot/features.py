"""The one featurizer: flow records to ``float32 (n, F)``, shared by the trainer and the gateway.

Both sides import this module, and every bundle records :data:`FEATURIZER_HASH`, so a model
trained on one version of the features can never be fed another (the loader refuses it).

What goes in: log-scaled sizes, counts and duration, mean packet sizes, the share of bytes
sent by the originator, one-hot protocol and Zeek connection state, direction-aware TCP
history flags, and ports as three coarse classes. What never goes in: IP addresses,
timestamps, uids, and Zeek's ``service`` (the gateway meter does no payload inspection, so
using it would be train/serve skew).

That is the ``zeek`` profile. The ``cicflowmeter`` profile (:data:`CIC_PROFILE`) featurizes
CICIDS2017 CSV rows instead; :class:`FeatureProfile` bundles each featurizer with its hash and
the sequence layout its networks see, and bundles record the profile they were trained on.
"""

from __future__ import annotations

import hashlib
import json
import threading
from array import array
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgebot.errors import DataError
from edgebot.flow import CicFlowRecord, FlowRecord

FEATURIZER_VERSION = "zeek-flow-1"

PROTOCOLS = ("tcp", "udp", "icmp")
CONN_STATES = (
    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH",
)
#: Zeek history letters kept as flags: upper case = originator, lower case = responder.
HISTORY_LETTERS = "SHADFR"
#: Port classes: well-known [0, 1024), registered [1024, 49152), dynamic [49152, 65536).
PORT_CLASS_BOUNDS = (1024, 49152)
PORT_CLASSES = ("well_known", "registered", "dynamic")

_NUMERIC_NAMES = (
    "log_duration",
    "log_orig_bytes",
    "log_resp_bytes",
    "log_orig_pkts",
    "log_resp_pkts",
    "log_orig_ip_bytes",
    "log_resp_ip_bytes",
    "log_orig_mean_pkt_size",
    "log_resp_mean_pkt_size",
    "orig_ip_byte_share",
    "has_missed_bytes",
)

FEATURE_NAMES: tuple[str, ...] = (
    _NUMERIC_NAMES
    + tuple(f"proto_{p}" for p in PROTOCOLS)
    + tuple(f"state_{s}" for s in CONN_STATES)
    + tuple(f"orig_hist_{c}" for c in HISTORY_LETTERS)
    + tuple(f"resp_hist_{c.lower()}" for c in HISTORY_LETTERS)
    + tuple(f"resp_port_{c}" for c in PORT_CLASSES)
    + tuple(f"orig_port_{c}" for c in PORT_CLASSES)
)
N_FEATURES = len(FEATURE_NAMES)

_PROTO_INDEX = {p: len(_NUMERIC_NAMES) + i for i, p in enumerate(PROTOCOLS)}
_STATE_OFFSET = len(_NUMERIC_NAMES) + len(PROTOCOLS)
_STATE_INDEX = {s: _STATE_OFFSET + i for i, s in enumerate(CONN_STATES)}
_HIST_OFFSET = _STATE_OFFSET + len(CONN_STATES)
_HIST_INDEX = {c: _HIST_OFFSET + i for i, c in enumerate(HISTORY_LETTERS)}
_HIST_INDEX.update({c.lower(): _HIST_OFFSET + len(HISTORY_LETTERS) + i for i, c in enumerate(HISTORY_LETTERS)})
_RESP_PORT_OFFSET = _HIST_OFFSET + 2 * len(HISTORY_LETTERS)
_ORIG_PORT_OFFSET = _RESP_PORT_OFFSET + len(PORT_CLASSES)


def _spec() -> dict:
    return {
        "version": FEATURIZER_VERSION,
        "names": list(FEATURE_NAMES),
        "protocols": list(PROTOCOLS),
        "conn_states": list(CONN_STATES),
        "history_letters": HISTORY_LETTERS,
        "port_class_bounds": list(PORT_CLASS_BOUNDS),
        "transform": "log1p counts; mean sizes; byte share; one-hot; flags",
    }


#: Hash of everything that defines the features; stored in every bundle and checked on load.
FEATURIZER_HASH = hashlib.sha256(json.dumps(_spec(), sort_keys=True).encode()).hexdigest()[:16]


class _Patterns:
    """The one-hot part of a flow's features, memoized per ``(proto, conn_state, history)``.

    Gateway traffic has few distinct combinations, so each is computed once and flows get
    their flags by gathering rows of a small ``(K, F)`` table. Bounded: the memo starts over
    past :attr:`MAX` combinations.
    """

    MAX = 4096

    def __init__(self) -> None:
        self.ids: dict[tuple, int] = {}
        self.rows: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._table: np.ndarray = np.zeros((0, N_FEATURES), dtype=np.float32)

    def add(self, key: tuple) -> int:
        """Id of a new combination (locked: featurize may run in several threads)."""
        with self._lock:
            k = self.ids.get(key)
            return self._add(key) if k is None else k

    def _add(self, key: tuple) -> int:
        proto, state, history = key
        row = np.zeros(N_FEATURES, dtype=np.float32)
        j = _PROTO_INDEX.get(proto)
        if j is not None:
            row[j] = 1.0
        row[_STATE_INDEX.get(state, _STATE_INDEX["OTH"])] = 1.0
        for c in history:
            j = _HIST_INDEX.get(c)
            if j is not None:
                row[j] = 1.0
        self.rows.append(row)
        self.ids[key] = len(self.rows) - 1
        return len(self.rows) - 1

    def table(self) -> np.ndarray:
        """``(K, F) float32``: row ``k`` holds the flags of combination ``k``."""
        table = self._table
        if len(table) != len(self.rows):
            with self._lock:
                table = self._table = np.stack(self.rows)
        return table


_patterns = _Patterns()
_NUMERIC_FIELDS = attrgetter("duration", "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "orig_ip_bytes",
                             "resp_ip_bytes", "resp_p", "orig_p", "missed_bytes")
_CATEGORY_FIELDS = attrgetter("proto", "conn_state", "history")


def featurize(flows: Sequence[FlowRecord] | Iterable[FlowRecord]) -> np.ndarray:
    """Turn flow records into the feature matrix.

    Parameters
    ----------
    flows
        Flow records (any iterable; a list is fastest).

    Returns
    -------
    np.ndarray
        ``(n, F) float32`` with ``F == N_FEATURES``, columns in :data:`FEATURE_NAMES` order.
        Unscaled: the bundle's min-max scaler is applied by the models' callers.
    """
    flows = flows if isinstance(flows, list) else list(flows)
    n = len(flows)
    if n == 0:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    global _patterns
    patterns = _patterns
    if len(patterns.rows) > patterns.MAX:
        patterns = _patterns = _Patterns()
    # One pass in Python (C-level getters only) collects the numbers and a pattern id per
    # flow; numpy does the rest on whole arrays.
    values: list = []
    put = values.extend
    ids = array("q")
    add_id = ids.append
    memo = patterns.ids
    numeric_fields, category_fields = _NUMERIC_FIELDS, _CATEGORY_FIELDS
    for f in flows:
        put(numeric_fields(f))
        key = category_fields(f)
        k = memo.get(key)
        add_id(patterns.add(key) if k is None else k)
    X = patterns.table()[np.frombuffer(ids, dtype=np.int64)]
    raw = np.array(values, dtype=np.float64).reshape(n, 10)  # None becomes NaN, as in a float array
    numeric = raw[:, 0:7].copy()
    d = numeric[:, 0]
    d[~(d > 0)] = 0.0  # also NaN, as `d if d and d > 0 else 0.0`
    rows = np.arange(n)
    low, high = PORT_CLASS_BOUNDS
    for col, offset in ((7, _RESP_PORT_OFFSET), (8, _ORIG_PORT_OFFSET)):
        port = raw[:, col]
        X[rows, offset + (port >= low) + (port >= high)] = 1.0
    X[raw[:, 9] != 0, 10] = 1.0
    _numeric_columns(X, numeric)
    return X


def _numeric_columns(X: np.ndarray, numeric: np.ndarray) -> None:
    """Fill columns 0..9 of ``X`` from the raw numbers ``(n, 7) float64`` (clipped in place)."""
    n = len(X)
    np.maximum(numeric, 0.0, out=numeric)
    X[:, 0:7] = np.log1p(numeric)
    pkts = np.maximum(numeric[:, 3:5], 1.0)
    X[:, 7:9] = np.log1p(numeric[:, 5:7] / pkts)
    total = numeric[:, 5] + numeric[:, 6]
    X[:, 9] = np.divide(numeric[:, 5], total, out=np.zeros(n), where=total > 0)


class MinMaxScaler:
    """Min-max scaling to [0, 1] fitted on training data, clipped outside the fitted range.

    Parameters are plain lists so they travel in the bundle manifest as JSON.
    """

    def __init__(self, data_min: Sequence[float] | None = None, data_max: Sequence[float] | None = None):
        self.data_min = None if data_min is None else np.asarray(data_min, dtype=np.float32)
        self.data_max = None if data_max is None else np.asarray(data_max, dtype=np.float32)

    def fit(self, X: np.ndarray) -> "MinMaxScaler":
        """Learn the per-column range of ``X`` ``(n, F)``."""
        if len(X) == 0:
            raise DataError("cannot fit the scaler on zero flows")
        self.data_min = X.min(axis=0).astype(np.float32)
        self.data_max = X.max(axis=0).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scale ``X`` of shape ``(..., F)`` to [0, 1] (float32), clipping unseen extremes."""
        if self.data_min is None or self.data_max is None:
            raise DataError("scaler is not fitted")
        if X.shape[-1] != self.data_min.shape[0]:
            raise DataError(
                f"X has {X.shape[-1]} features, but the scaler expects {self.data_min.shape[0]}"
            )
        span = self.data_max - self.data_min
        span = np.where(span > 0, span, 1.0).astype(np.float32)
        out = (X - self.data_min) / span
        return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        if self.data_min is None or self.data_max is None:
            raise DataError("scaler is not fitted")
        return {"min": self.data_min.tolist(), "max": self.data_max.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "MinMaxScaler":
        return cls(d["min"], d["max"])


# ----------------------------------------------------------------------------------------------
# the CICFlowMeter profile (CICIDS2017 CSVs)

CIC_FEATURIZER_VERSION = "cicflowmeter-1"
#: The 77 CICFlowMeter columns every bundled CICIDS2017 file has, in the MachineLearningCVE order
#: (names as the reader gives them, with pandas' ``.1`` for the duplicated header). ``Destination
#: Port`` is left out: the Western-OC2 subset lacks it, and ports would only be coarse classes.
CIC_FEATURE_NAMES: tuple[str, ...] = (
    "Flow Duration", "Total Fwd Packets", "Total Backward Packets", "Total Length of Fwd Packets",
    "Total Length of Bwd Packets", "Fwd Packet Length Max", "Fwd Packet Length Min", "Fwd Packet Length Mean",
    "Fwd Packet Length Std", "Bwd Packet Length Max", "Bwd Packet Length Min", "Bwd Packet Length Mean",
    "Bwd Packet Length Std", "Flow Bytes/s", "Flow Packets/s", "Flow IAT Mean", "Flow IAT Std", "Flow IAT Max",
    "Flow IAT Min", "Fwd IAT Total", "Fwd IAT Mean", "Fwd IAT Std", "Fwd IAT Max", "Fwd IAT Min", "Bwd IAT Total",
    "Bwd IAT Mean", "Bwd IAT Std", "Bwd IAT Max", "Bwd IAT Min", "Fwd PSH Flags", "Bwd PSH Flags", "Fwd URG Flags",
    "Bwd URG Flags", "Fwd Header Length", "Bwd Header Length", "Fwd Packets/s", "Bwd Packets/s",
    "Min Packet Length", "Max Packet Length", "Packet Length Mean", "Packet Length Std", "Packet Length Variance",
    "FIN Flag Count", "SYN Flag Count", "RST Flag Count", "PSH Flag Count", "ACK Flag Count", "URG Flag Count",
    "CWE Flag Count", "ECE Flag Count", "Down/Up Ratio", "Average Packet Size", "Avg Fwd Segment Size",
    "Avg Bwd Segment Size", "Fwd Header Length.1", "Fwd Avg Bytes/Bulk", "Fwd Avg Packets/Bulk",
    "Fwd Avg Bulk Rate", "Bwd Avg Bytes/Bulk", "Bwd Avg Packets/Bulk", "Bwd Avg Bulk Rate", "Subflow Fwd Packets",
    "Subflow Fwd Bytes", "Subflow Bwd Packets", "Subflow Bwd Bytes", "Init_Win_bytes_forward",
    "Init_Win_bytes_backward", "act_data_pkt_fwd", "min_seg_size_forward", "Active Mean", "Active Std",
    "Active Max", "Active Min", "Idle Mean", "Idle Std", "Idle Max", "Idle Min",
)
#: |values| above this (and +-Infinity, which CICFlowMeter writes for rates of zero-length flows)
#: become +-CIC_VALUE_CAP before the log.
CIC_VALUE_CAP = 1e10


def _cic_spec() -> dict:
    return {
        "version": CIC_FEATURIZER_VERSION,
        "names": list(CIC_FEATURE_NAMES),
        "cap": CIC_VALUE_CAP,
        "transform": "NaN -> 0; clip to +-cap (inf included); sign(x) * log1p(|x|)",
    }


CIC_FEATURIZER_HASH = hashlib.sha256(json.dumps(_cic_spec(), sort_keys=True).encode()).hexdigest()[:16]


def featurize_cic(records: Sequence[CicFlowRecord] | Iterable[CicFlowRecord]) -> np.ndarray:
    """Turn CICFlowMeter rows into the CIC profile's feature matrix.

    Columns are picked by name (each record carries its file's feature names), so files whose
    columns differ in order or have extra columns (``Destination Port``) give the same features.

    Parameters
    ----------
    records
        :class:`~edgebot.flow.CicFlowRecord` rows (from :mod:`edgebot.readers`).

    Returns
    -------
    np.ndarray
        ``(n, 77) float32`` in :data:`CIC_FEATURE_NAMES` order: NaN -> 0, values clipped to
        +-:data:`CIC_VALUE_CAP` (infinities included), then ``sign(x) * log1p(|x|)``; finite.

    Raises
    ------
    DataError
        A record that is not a CICFlowMeter row, or a file without one of the profile's columns.
    """
    records = records if isinstance(records, list) else list(records)
    n, F = len(records), len(CIC_FEATURE_NAMES)
    raw = np.zeros((n, F), dtype=np.float64)
    columns: dict[tuple, np.ndarray] = {}  # a file's feature names -> indices of the profile's columns
    for i, rec in enumerate(records):
        if not isinstance(rec, CicFlowRecord):
            raise DataError(
                f"the cicflowmeter profile featurizes CICFlowMeter rows, got a {type(rec).__name__} "
                "(zeek profile flows); use a bundle or data set of one profile"
            )
        idx = columns.get(rec.feature_names)
        if idx is None:
            names = {name: j for j, name in enumerate(rec.feature_names)}
            missing = [name for name in CIC_FEATURE_NAMES if name not in names]
            if missing:
                raise DataError(
                    f"{rec.source}: CICFlowMeter columns {', '.join(missing[:3])}"
                    f"{' ...' if len(missing) > 3 else ''} are missing ({len(missing)} of {F})"
                )
            idx = columns[rec.feature_names] = np.array([names[name] for name in CIC_FEATURE_NAMES])
        raw[i] = np.asarray(rec.values, dtype=np.float64)[idx]
    np.nan_to_num(raw, copy=False, nan=0.0, posinf=CIC_VALUE_CAP, neginf=-CIC_VALUE_CAP)
    np.clip(raw, -CIC_VALUE_CAP, CIC_VALUE_CAP, out=raw)
    return (np.sign(raw) * np.log1p(np.abs(raw))).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# profiles: which featurizer a data set, a run and a bundle use

#: Sequence layouts the networks see. ``host-windows``: the last ``T`` flows of the originating
#: host, ``(n, T, F)``. ``feature-axis``: one flow's ``F`` features as a length-``F`` sequence of
#: one value, ``(n, F, 1)`` (for data without host and time columns, the usual CNN-LSTM
#: formulation in the CICIDS2017 literature).
SEQUENCES = ("host-windows", "feature-axis")


@dataclass(frozen=True)
class FeatureProfile:
    """One featurizer: its names, hash, how flows become model sequences, the fuser's raw features.

    Attributes
    ----------
    name : ``"zeek"`` or ``"cicflowmeter"``.
    version, hash : recorded in every run and bundle; the loader compares the hash.
    feature_names : column names of :attr:`featurize`'s output.
    sequence : ``"host-windows"`` or ``"feature-axis"`` (see :data:`SEQUENCES`).
    fuser_raw_features : scaled columns the fuser sees beside the model outputs.
    featurize : records -> ``(n, F) float32``.
    """

    name: str
    version: str
    hash: str
    feature_names: tuple[str, ...]
    sequence: str
    fuser_raw_features: tuple[str, ...]
    featurize: Callable[[Any], np.ndarray] = field(repr=False, compare=False)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def input_shape(self, window: int) -> tuple[int, int]:
        """``(steps, channels)`` of the networks' input: ``(T, F)`` host windows or ``(F, 1)``."""
        return (self.n_features, 1) if self.sequence == "feature-axis" else (int(window), self.n_features)

    def info(self) -> dict:
        """What a run's spec.json and a bundle manifest record about the featurizer."""
        return {
            "profile": self.name,
            "version": self.version,
            "hash": self.hash,
            "feature_names": list(self.feature_names),
            "n_features": self.n_features,
            "sequence": self.sequence,
        }


ZEEK_PROFILE = FeatureProfile(
    name="zeek", version=FEATURIZER_VERSION, hash=FEATURIZER_HASH, feature_names=FEATURE_NAMES,
    sequence="host-windows",
    fuser_raw_features=("log_duration", "log_orig_ip_bytes", "log_resp_ip_bytes", "log_orig_pkts", "log_resp_pkts",
                        "orig_ip_byte_share", "state_S0", "state_SF"),
    featurize=featurize,
)
CIC_PROFILE = FeatureProfile(
    name="cicflowmeter", version=CIC_FEATURIZER_VERSION, hash=CIC_FEATURIZER_HASH, feature_names=CIC_FEATURE_NAMES,
    sequence="feature-axis",
    fuser_raw_features=("Flow Duration", "Total Fwd Packets", "Total Length of Fwd Packets", "Fwd Packet Length Max",
                        "Bwd Packet Length Mean", "Average Packet Size", "Flow IAT Mean", "PSH Flag Count",
                        "Init_Win_bytes_forward", "Init_Win_bytes_backward"),
    featurize=featurize_cic,
)
#: Every profile by name.
PROFILES: dict[str, FeatureProfile] = {p.name: p for p in (ZEEK_PROFILE, CIC_PROFILE)}


def get_profile(name: str | None) -> FeatureProfile:
    """The profile called ``name`` (``None``: ``"zeek"``, what bundles without a profile used).

    Raises
    ------
    DataError
        An unknown name.
    """
    profile = PROFILES.get(name or "zeek")
    if profile is None:
        raise DataError(f"unknown feature profile {name!r}; this edgebot knows {', '.join(PROFILES)}")
    return profile


def profile_for_format(fmt: str) -> FeatureProfile:
    """The profile of a reader format: ``"cicflowmeter"`` files -> CIC, every Zeek-like format -> zeek."""
    return CIC_PROFILE if fmt == "cicflowmeter" else ZEEK_PROFILE


def profile_for_records(records: Sequence[Any]) -> FeatureProfile:
    """The profile of a list of records (all of one kind).

    Raises
    ------
    DataError
        No records, or Zeek-like and CICFlowMeter records mixed.
    """
    kinds = {isinstance(r, CicFlowRecord) for r in records}
    if not kinds:
        raise DataError("no flow records to pick a feature profile from")
    if len(kinds) > 1:
        raise DataError("Zeek-like and CICFlowMeter flows are mixed; their features differ, use one kind at a time")
    return CIC_PROFILE if kinds.pop() else ZEEK_PROFILE


def featurizer_info(profile: FeatureProfile | str | None = None) -> dict:
    """What a bundle manifest records about the featurizer (the zeek profile by default)."""
    if not isinstance(profile, FeatureProfile):
        profile = get_profile(profile)
    return profile.info()
