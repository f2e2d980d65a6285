"""IoT-23 conn logs converted to pipe-separated CSV (the Kaggle form), with their labels rebuilt."""

from __future__ import annotations

import logging
import re
from typing import Any, Optional, Sequence

from edgebot.flow import FlowRecord
from edgebot.readers.common import FlowReader, MalformedRow, not_a_flow_file
from edgebot.readers.zeek import ZeekLayout, build_record

log = logging.getLogger(__name__)

FORMAT = "iot23-csv"

_SPACES = re.compile(r"\s+")
_DELIMITERS = ("|", ",")


def _delimiter(header: str) -> Optional[str]:
    """The delimiter of a header with Zeek column names, or None."""
    for delimiter in _DELIMITERS:
        names = [name.strip() for name in header.split(delimiter)]
        if "id.orig_h" in names and "ts" in names:
            return delimiter
    return None


def looks_like(first_line: str) -> bool:
    """True when a first line is a CSV header with Zeek conn column names."""
    return _delimiter(first_line) is not None


def probe(path: Any, head: Sequence[str]) -> str:
    """Check the header of a Zeek-columns CSV; returns ``"iot23-csv"``.

    Raises
    ------
    DataFormatError
        A required conn log column is missing.
    """
    header = next(line for line in head if line)
    delimiter = _delimiter(header) or "|"
    try:
        ZeekLayout.from_fields(header.split(delimiter))
    except ValueError as exc:
        raise not_a_flow_file(path, f"a CSV whose header {exc.args[0].replace('#fields', 'line')}") from exc
    return FORMAT


def rebuild_labels(label_cell: str, detailed_cell: str) -> tuple[str, str]:
    """Undo the converter's label mangling.

    The converter wrote ``Malicious   C&C`` | ``FileDownload`` for the original label
    ``Malicious`` with detailed label ``C&C-FileDownload``, ``Malicious   C&C`` | ```` for ``C&C``,
    and in some scenarios plain ``Malicious`` | ``C&C``.

    Parameters
    ----------
    label_cell, detailed_cell : str
        The ``label`` and ``detailed-label`` cells.

    Returns
    -------
    (str, str)
        The original label and detailed label cells (``-`` when the detailed label is unset).
    """
    words = _SPACES.split(label_cell.strip(), maxsplit=1)
    label = words[0]
    head = words[1].strip() if len(words) > 1 else ""
    tail = detailed_cell.strip()
    if tail == "-":
        tail = ""
    detailed = f"{head}-{tail}" if head and tail else (head or tail)
    return label, detailed or "-"


class Iot23CsvReader(FlowReader):
    """Reads the pipe-separated IoT-23 CSV conversion: one header line (23 Zeek column names),
    no ``#`` lines; every later non-empty line is a data row (a repeated header counts as a
    malformed row). The original detailed label is rebuilt exactly (see :func:`rebuild_labels`).
    """

    format = FORMAT

    def _reset(self) -> None:
        super()._reset()
        self._header_text: Optional[str] = None
        self._layout: Optional[ZeekLayout] = None
        self._delimiter = "|"

    def _parse_row(self, text: str, line_no: int) -> Optional[FlowRecord]:
        if self._header_text is None:
            delimiter = _delimiter(text)
            try:
                if delimiter is None:
                    raise ValueError("has no ts and id.orig_h columns")
                self._layout = ZeekLayout.from_fields(text.split(delimiter))
            except ValueError as exc:
                raise not_a_flow_file(self.path, f"line {line_no}: CSV header {exc}") from exc
            self._header_text, self._delimiter = text, delimiter
            return None
        if text == self._header_text:
            raise MalformedRow("repeated header", "repeated CSV header line")
        layout = self._layout
        assert layout is not None
        parts = text.split(self._delimiter)
        if len(parts) != len(layout.names):
            raise MalformedRow("wrong number of fields", f"{len(parts)} fields, expected {len(layout.names)}")
        if layout.label_index is not None and layout.detailed_index is not None:
            parts[layout.label_index], parts[layout.detailed_index] = rebuild_labels(
                parts[layout.label_index], parts[layout.detailed_index]
            )
        elif layout.label_index is not None:
            parts[layout.label_index] = rebuild_labels(parts[layout.label_index], "")[0]
        return build_record(self, layout, parts, "-", line_no)

