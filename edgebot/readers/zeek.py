"""Zeek conn logs: TSV (plain, IoT-23 and Stratosphere labeled layouts) and JSON lines."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from edgebot.flow import FlowRecord
from edgebot.readers.common import (
    FlowReader,
    MalformedRow,
    clean_detailed_label,
    normalize_label,
    not_a_flow_file,
    to_address,
    to_conn_state,
    to_count,
    to_interval,
    to_port,
    to_proto,
    to_text,
    to_timestamp,
)

log = logging.getLogger(__name__)

FORMAT_TSV = "zeek-tsv"
FORMAT_LABELED = "iot23-labeled"
FORMAT_JSON = "zeek-json"

Converter = Callable[[Any, str], Any]

#: Zeek column -> (FlowRecord attribute, converter, value when the column is absent), in the
#: order of FlowRecord's fields, so that a row becomes ``FlowRecord(*values)``.
ZEEK_COLUMNS: tuple[tuple[str, str, Converter, Any], ...] = (
    ("ts", "ts", to_timestamp, None),
    ("id.orig_h", "orig_h", to_address, None),
    ("id.orig_p", "orig_p", to_port, None),
    ("id.resp_h", "resp_h", to_address, None),
    ("id.resp_p", "resp_p", to_port, None),
    ("proto", "proto", to_proto, None),
    ("duration", "duration", to_interval, 0.0),
    ("orig_bytes", "orig_bytes", to_count, 0),
    ("resp_bytes", "resp_bytes", to_count, 0),
    ("conn_state", "conn_state", to_conn_state, "OTH"),
    ("missed_bytes", "missed_bytes", to_count, 0),
    ("history", "history", to_text, ""),
    ("orig_pkts", "orig_pkts", to_count, 0),
    ("orig_ip_bytes", "orig_ip_bytes", to_count, 0),
    ("resp_pkts", "resp_pkts", to_count, 0),
    ("resp_ip_bytes", "resp_ip_bytes", to_count, 0),
    ("service", "service", to_text, ""),
    ("uid", "uid", to_text, ""),
)
#: Columns a conn log must have (the rest default when absent).
REQUIRED_COLUMNS = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
LABEL_COLUMN = "label"
#: Spellings of the detailed-label column: IoT-23 old / IoT-23 new / Stratosphere / others.
DETAILED_LABEL_COLUMNS = ("detailed-label", "det_label", "detailedlabel", "detailed_label")

# IoT-23's older layout packs "tunnel_parents   label   detailed-label" into the last tab field.
_PACKED_SPLIT = re.compile(r" {2,}")


@dataclass(frozen=True)
class ZeekLayout:
    """Where each FlowRecord field sits in a row, from a ``#fields`` header.

    Attributes
    ----------
    names : tuple of str
        Column names, with IoT-23's packed last field already split in three.
    packed_fields : int or None
        For the older IoT-23 layout, the number of tab fields of a row (21) whose last field
        holds three space-separated values; None for ordinary layouts.
    columns : tuple
        ``(zeek column, index or None, converter, default)`` in FlowRecord field order.
    label_index, detailed_index : int or None
        Positions of the label columns, None when absent.
    """

    names: tuple[str, ...]
    packed_fields: Optional[int]
    columns: tuple[tuple[str, Optional[int], Converter, Any], ...]
    label_index: Optional[int]
    detailed_index: Optional[int]
    #: ``(index, converter)`` per FlowRecord field; absent columns read index 0 with a converter
    #: that returns the default, so a row converts in one comprehension.
    fast: tuple[tuple[int, Converter], ...] = ()

    @property
    def labeled(self) -> bool:
        return self.label_index is not None

    @classmethod
    def from_fields(cls, fields: Sequence[str]) -> "ZeekLayout":
        """Build a layout from the names after ``#fields``.

        Raises
        ------
        ValueError
            A required column is missing (the message names it).
        """
        names = [name.strip() for name in fields]
        packed_fields = None
        if names and _PACKED_SPLIT.search(names[-1]):
            packed_fields = len(names)
            names[-1:] = _PACKED_SPLIT.split(names[-1])
        index: dict[str, int] = {}
        for position, name in enumerate(names):
            index.setdefault(name, position)
        missing = [name for name in REQUIRED_COLUMNS if name not in index]
        if missing:
            raise ValueError(f"#fields has no {', '.join(missing)} column")
        columns = tuple((name, index.get(name), convert, default) for name, _, convert, default in ZEEK_COLUMNS)
        fast = tuple(
            (position, convert) if position is not None else (0, _constant(default))
            for _, position, convert, default in columns
        )
        detailed_index = next((index[name] for name in DETAILED_LABEL_COLUMNS if name in index), None)
        return cls(tuple(names), packed_fields, columns, index.get(LABEL_COLUMN), detailed_index, fast)


def _constant(value: Any) -> Converter:
    """A converter that ignores its cell: the value of a column the log does not have."""
    return lambda _cell, _unset: value


def _unescape_separator(value: str) -> str:
    """``\\x09`` -> a tab; anything unusable gives a tab (Zeek's default)."""
    try:
        separator = value.encode("ascii").decode("unicode_escape")
    except (UnicodeError, ValueError):
        return "\t"
    return separator if len(separator) == 1 and separator not in "\r\n" else "\t"


class ZeekHeader:
    """State of a Zeek ASCII header: separator, unset marker, path and the current layout."""

    def __init__(self) -> None:
        self.separator = "\t"
        self.unset = "-"
        self.log_path: Optional[str] = None
        self.layout: Optional[ZeekLayout] = None

    def feed(self, text: str) -> None:
        """Take in one ``#`` line.

        Raises
        ------
        ValueError
            A ``#fields`` line lacks a required column.
        """
        if text.startswith("#separator"):
            self.separator = _unescape_separator(text[len("#separator"):].strip())
            return
        key, _, rest = text.partition(self.separator)
        if key == "#fields":
            self.layout = ZeekLayout.from_fields(rest.split(self.separator))
        elif key == "#unset_field" and rest:
            self.unset = rest
        elif key == "#path":
            self.log_path = rest.strip()


def probe_tsv(path: Any, head: Sequence[str]) -> str:
    """Check the header of a Zeek TSV log and name its format.

    Parameters
    ----------
    path : Path
        The file (for messages).
    head : sequence of str
        Its first lines.

    Returns
    -------
    str
        ``"iot23-labeled"`` when the log has a label column, else ``"zeek-tsv"``.

    Raises
    ------
    DataFormatError
        Not a Zeek conn log (other log type, no ``#fields``, a required column missing).
    """
    header = ZeekHeader()
    for text in head:
        if not text:
            continue
        if not text.startswith("#"):
            break
        try:
            header.feed(text)
        except ValueError as exc:
            raise not_a_flow_file(path, f"a Zeek log whose {exc}") from exc
        if header.layout is not None:
            break
    if header.log_path and not header.log_path.startswith("conn"):
        raise not_a_flow_file(path, f"a Zeek {header.log_path!r} log; give the conn log")
    if header.layout is None:
        raise not_a_flow_file(path, "a '#' header without a #fields line")
    return FORMAT_LABELED if header.layout.labeled else FORMAT_TSV


class ZeekTsvReader(FlowReader):
    """Reads Zeek ASCII conn logs: plain ``conn.log``, IoT-23 ``conn.log.labeled`` (both the
    23-field layout with ``label``/``det_label`` and the older 21-field one whose last field packs
    ``tunnel_parents   label   detailed-label``) and Stratosphere labeled logs (``detailedlabel``).

    ``#`` lines are headers wherever they appear (a new ``#fields`` line, e.g. in concatenated
    logs, switches the layout); ``-`` is unset (0, 0.0 or ``""``).
    """

    def __init__(self, path: Any, *, format: str = FORMAT_TSV, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.format = format

    def _reset(self) -> None:
        super()._reset()
        self._header = ZeekHeader()

    def _is_meta_line(self, text: str) -> bool:
        return text[0] == "#"

    def _meta_line(self, text: str, line_no: int) -> None:
        try:
            self._header.feed(text)
        except ValueError as exc:
            raise not_a_flow_file(self.path, f"line {line_no}: {exc}") from exc

    def _parse_row(self, text: str, line_no: int) -> FlowRecord:
        layout = self._header.layout
        if layout is None:
            raise MalformedRow("row before the #fields header")
        parts = text.split(self._header.separator)
        if len(parts) != len(layout.names):
            if layout.packed_fields is None or len(parts) != layout.packed_fields:
                expected = layout.packed_fields or len(layout.names)
                raise MalformedRow("wrong number of fields", f"{len(parts)} fields, expected {expected}")
            packed = _PACKED_SPLIT.split(parts[-1].strip())
            if len(packed) != 3:
                raise MalformedRow(
                    "bad packed label field",
                    f"last field {parts[-1][:60]!r} is not 'tunnel_parents   label   detailed-label'",
                )
            parts[-1:] = packed
        return build_record(self, layout, parts, self._header.unset, line_no)


def build_record(reader: FlowReader, layout: ZeekLayout, parts: Sequence[Any], unset: str, line_no: int) -> FlowRecord:
    """One FlowRecord from a row already split into ``layout.names`` order."""
    try:
        values = [convert(parts[position], unset) for position, convert in layout.fast]
    except ValueError:
        raise _bad_column(layout, parts, unset) from None
    label = detailed = None
    if layout.label_index is not None:
        cell = parts[layout.label_index]
        if type(cell) is not str and cell is not None:
            raise MalformedRow("unknown label", f"label {cell!r} is not a string")
        label = normalize_label(cell or "")
        if layout.detailed_index is not None:
            cell = parts[layout.detailed_index]
            detailed = clean_detailed_label(cell if type(cell) is str else None)
    # ``values`` fills exactly the leading fields (ZEEK_COLUMNS order); the label and provenance
    # fields are set after, which mypy can check (a star-list beside keywords it cannot).
    record = FlowRecord(*values)
    record.label = label
    record.detailed_label = detailed
    record.family = reader._family_of(label, detailed)
    record.scenario = reader.scenario
    record.source = str(reader.path)
    record.line = line_no
    return record


def _bad_column(layout: ZeekLayout, parts: Sequence[Any], unset: str) -> MalformedRow:
    """Name the first column of a row that does not convert."""
    for column, position, convert, _ in layout.columns:
        if position is None:
            continue
        try:
            convert(parts[position], unset)
        except ValueError:
            return MalformedRow(f"bad {column}", f"bad {column} value {str(parts[position])[:40]!r}")
    return MalformedRow("bad value")  # pragma: no cover - a converter failed above


def _flat_keys(obj: dict) -> dict:
    """Zeek JSON uses flat keys (``id.orig_h``); accept a nested ``id`` object too."""
    nested = obj.get("id")
    if "id.orig_h" not in obj and isinstance(nested, dict):
        obj = dict(obj)
        for key, value in nested.items():
            obj[f"id.{key}"] = value
    return obj


def probe_json(path: Any, head: Sequence[str]) -> str:
    """Check that the first JSON line is a Zeek conn record; returns ``"zeek-json"``.

    Raises
    ------
    DataFormatError
        The first line is not a JSON object with conn log keys.
    """
    first = next((text for text in head if text.strip()), "")
    try:
        obj = json.loads(first)
    except (ValueError, RecursionError) as exc:
        raise not_a_flow_file(path, f"first line is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise not_a_flow_file(path, "first line is JSON but not an object")
    obj = _flat_keys(obj)
    missing = [key for key in REQUIRED_COLUMNS + ("conn_state",) if key not in obj]
    if missing:
        raise not_a_flow_file(path, f"JSON lines without the conn log keys {', '.join(missing)}")
    return FORMAT_JSON


# The JSON layout: every known column, by key.
_JSON_NAMES = tuple(name for name, *_ in ZEEK_COLUMNS) + (LABEL_COLUMN,) + DETAILED_LABEL_COLUMNS


class ZeekJsonReader(FlowReader):
    """Reads Zeek conn logs written as JSON lines (``LogAscii::use_json``): one object per line,
    keys like ``id.orig_h``; absent keys are unset values; ``ts`` as epoch seconds or ISO 8601.
    """

    format = FORMAT_JSON

    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._layout = ZeekLayout.from_fields(_JSON_NAMES)

    def _parse_row(self, text: str, line_no: int) -> FlowRecord:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise MalformedRow("invalid JSON", f"invalid JSON {text[:40]!r}") from None
        if not isinstance(obj, dict):
            raise MalformedRow("invalid JSON", f"JSON {type(obj).__name__}, expected an object")
        obj = _flat_keys(obj)
        label_key = LABEL_COLUMN if LABEL_COLUMN in obj else None
        detailed = next((obj[key] for key in DETAILED_LABEL_COLUMNS if key in obj), None)
        parts = [obj.get(name) for name, *_ in ZEEK_COLUMNS]
        parts.append(obj.get(label_key) if label_key else None)
        parts.append(detailed)
        parts.extend([None] * (len(self._layout.names) - len(parts)))
        layout = self._layout if label_key else _JSON_UNLABELED
        return build_record(self, layout, parts, "-", line_no)


_JSON_UNLABELED = ZeekLayout.from_fields(tuple(name for name, *_ in ZEEK_COLUMNS))
