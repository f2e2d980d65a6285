"""Strict JSON of what edgebot writes: numpy values become Python ones, NaN and infinities ``null``.

One place for what the trainer (``spec.json``, ``metrics.json``), the sinks (incidents), the CLI
(``--json``) and the benchmarks need, so that every file and message is JSON any parser reads.
numpy is recognized by duck typing (``item`` / ``tolist``), never imported here: the module is
as light as :mod:`json`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping


def plain(value: Any) -> Any:
    """A ``json.dumps`` ``default``: numpy scalars and arrays to numbers and lists, sets to lists.

    Raises
    ------
    TypeError
        Anything else (as ``json.dumps`` does).
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def plain_or_str(value: Any) -> Any:
    """As :func:`plain`, but anything else becomes its ``str`` (paths, dates in reports)."""
    try:
        return plain(value)
    except TypeError:
        return str(value)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values, recursively: numpy -> Python, NaN / inf -> None.

    Mapping keys that JSON cannot hold become their ``str``.
    """
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, (str, int, float, bool)) or k is None else str(k)): jsonable(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, bool, int)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") or hasattr(obj, "tolist"):
        return jsonable(plain(obj))
    return obj


def dumps(obj: Any, *, indent: int | None = None, compact: bool = False, sort_keys: bool = False) -> str:
    """Strict JSON text of :func:`jsonable` of ``obj`` (``compact``: no spaces, one line)."""
    separators = (",", ":") if compact else None
    return json.dumps(jsonable(obj), indent=indent, separators=separators, sort_keys=sort_keys, allow_nan=False)


def write_json(path: str | Path, data: Any) -> None:
    """Write strict JSON, indented by two, with a trailing newline (key order kept: it is part of
    the run-dir contract)."""
    Path(path).write_text(dumps(data, indent=2) + "\n", encoding="utf-8")
