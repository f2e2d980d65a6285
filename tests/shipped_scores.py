"""A bundled capture scored by the shipped bundle the way ``edgebot eval`` scores it (no fixture: plain helpers)."""

from __future__ import annotations

from typing import Any

import numpy as np


def shipped_capture(relpath: str) -> tuple[Any, list, np.ndarray]:
    """(the shipped bundle, the capture's records under ``data/`` in start-time order, their fused scores)."""
    from edgebot import datasets
    from edgebot.bundle import load_bundle
    from edgebot.readers import read_flows
    from edgebot.shipped import default_bundle

    records, _ = read_flows([datasets.data_root() / relpath])
    records.sort(key=lambda r: r.ts)
    bundle = load_bundle(default_bundle())
    X = bundle.scale(bundle.featurize(records))
    hosts = [r.orig_h for r in records]
    scores = bundle.score(bundle.sequences(X, hosts, np.array([r.ts for r in records], dtype=np.float64)))
    return bundle, records, np.asarray(scores, dtype=np.float64)
