"""The one featurizer: flow records to ``float32 (n, F)``, shared by the trainer and the gateway.

Both sides import this module, and every bundle records :data:`FEATURIZER_HASH`, so a model
trained on one version of the features can never be fed another (the loader refuses it).

What goes in: log-scaled sizes, counts and duration, mean packet sizes, the share of bytes
sent by the originator, one-hot protocol and Zeek connection state, direction-aware TCP
history flags, and ports as three coarse classes. What never goes in: IP addresses,
timestamps, uids, and Zeek's ``service`` (the gateway meter does no payload inspection, so
using it would be train/serve skew).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Iterable, Sequence

import numpy as np

from edgebot.errors import DataError
from edgebot.flow import FlowRecord

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


def _port_class(port: int) -> int:
    if port < PORT_CLASS_BOUNDS[0]:
        return 0
    if port < PORT_CLASS_BOUNDS[1]:
        return 1
    return 2


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
    numeric = np.empty((n, 7), dtype=np.float64)
    X = np.zeros((n, N_FEATURES), dtype=np.float32)
    log1p = math.log1p
    proto_index = _PROTO_INDEX
    state_index = _STATE_INDEX
    other_state = _STATE_INDEX["OTH"]
    hist_index = _HIST_INDEX
    for i, f in enumerate(flows):
        numeric[i] = (
            f.duration if f.duration and f.duration > 0 else 0.0,
            f.orig_bytes,
            f.resp_bytes,
            f.orig_pkts,
            f.resp_pkts,
            f.orig_ip_bytes,
            f.resp_ip_bytes,
        )
        row = X[i]
        j = proto_index.get(f.proto)
        if j is not None:
            row[j] = 1.0
        row[state_index.get(f.conn_state, other_state)] = 1.0
        for c in f.history:
            j = hist_index.get(c)
            if j is not None:
                row[j] = 1.0
        row[_RESP_PORT_OFFSET + _port_class(f.resp_p)] = 1.0
        row[_ORIG_PORT_OFFSET + _port_class(f.orig_p)] = 1.0
        if f.missed_bytes:
            row[10] = 1.0
    if n == 0:
        return X
    np.maximum(numeric, 0.0, out=numeric)
    X[:, 0:7] = np.log1p(numeric)
    pkts = np.maximum(numeric[:, 3:5], 1.0)
    X[:, 7:9] = np.log1p(numeric[:, 5:7] / pkts)
    total = numeric[:, 5] + numeric[:, 6]
    X[:, 9] = np.divide(numeric[:, 5], total, out=np.zeros(n), where=total > 0)
    del log1p
    return X


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
        if self.data_min is None:
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
        return {"min": self.data_min.tolist(), "max": self.data_max.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "MinMaxScaler":
        return cls(d["min"], d["max"])


def featurizer_info() -> dict:
    """What a bundle manifest records about the featurizer."""
    return {
        "profile": "zeek",
        "version": FEATURIZER_VERSION,
        "hash": FEATURIZER_HASH,
        "feature_names": list(FEATURE_NAMES),
        "n_features": N_FEATURES,
    }
