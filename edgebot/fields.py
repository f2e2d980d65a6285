"""Field checks for the two JSON contracts (the run dir's spec.json and the bundle's manifest).

Each contract validates every field by type and range and fails on the first bad one with a
one-line message naming the field. The checks are the same for both; only the message differs
(which file, and the remedy), so :class:`FieldChecks` takes the contract's ``fail`` function.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, NoReturn

__all__ = ["FieldChecks", "show"]

#: Longest string and list a field may hold unless a check says otherwise.
MAX_STR = 256
MAX_ITEMS = 4096


def show(value: Any) -> str:
    """A value as the messages quote it: JSON, cut to 60 characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FieldChecks:
    """Type and range checks that call ``fail(path, what, value)`` (which raises) on a bad field."""

    def __init__(self, fail: Callable[[str, str, Any], NoReturn]) -> None:
        self.fail = fail

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, "an object", value)
        return value

    def text(self, value: Any, path: str, choices: tuple[str, ...] | None = None, max_len: int = MAX_STR) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            self.fail(path, f"a non-empty string of at most {max_len} characters", value)
        if choices is not None and value not in choices:
            self.fail(path, " or ".join(repr(c) for c in choices), value)
        return value

    def integer(self, value: Any, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"an integer in [{low}, {high}]", value)
        return value

    def number(self, value: Any, path: str, low: float | None = None, high: float | None = None,
               positive: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (not positive or value > 0) and (low is None or value >= low) and (high is None or value <= high)
        if not ok:
            if positive:
                what = "a positive finite number"
            elif low is not None and high is not None:
                what = f"a number in [{low:g}, {high:g}]"
            else:
                what = "a finite number"
            self.fail(path, what, value)
        return float(value)

    def str_list(self, value: Any, path: str, max_items: int = MAX_ITEMS) -> tuple[str, ...]:
        if not isinstance(value, list) or len(value) > max_items:
            self.fail(path, f"a list of at most {max_items} strings", value)
        for i, item in enumerate(value):
            self.text(item, f"{path}[{i}]")
        if len(set(value)) != len(value):
            self.fail(path, "a list of distinct strings", value)
        return tuple(value)

    def num_list(self, value: Any, path: str, length: int) -> tuple[float, ...]:
        if not isinstance(value, list) or len(value) != length:
            self.fail(path, f"a list of {length} numbers (one per feature)", value)
        return tuple(self.number(v, f"{path}[{i}]") for i, v in enumerate(value))
