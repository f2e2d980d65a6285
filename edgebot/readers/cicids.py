"""CICFlowMeter CSVs (CICIDS2017 MachineLearningCVE and derived subsets): numeric features + Label."""

from __future__ import annotations

import logging
import math
import re
from operator import itemgetter
from typing import Any, Callable, Optional, Sequence

from edgebot.flow import BENIGN, MALICIOUS, CicFlowRecord
from edgebot.readers.common import FlowReader, MalformedRow, not_a_flow_file

log = logging.getLogger(__name__)

FORMAT = "cicflowmeter"

#: Columns that identify a flow rather than describe it (TrafficLabelling CSVs); never features.
IDENTIFIER_COLUMNS = frozenset({"flow id", "source ip", "src ip", "destination ip", "dst ip", "timestamp"})
#: CICFlowMeter's placeholder label for unlabeled output.
_UNLABELED = frozenset({"needmanuallabel"})

# CICIDS2017 attack labels -> the 7 merged classes of the Western-OC2 subset, so that every
# CICIDS file names its families alike. Anything else keeps its own (cleaned) label.
_CIC_FAMILIES = {
    "dos hulk": "DoS",
    "dos goldeneye": "DoS",
    "dos slowloris": "DoS",
    "dos slowhttptest": "DoS",
    "ddos": "DoS",
    "heartbleed": "DoS",
    "ftp-patator": "BruteForce",
    "ssh-patator": "BruteForce",
    "portscan": "PortScan",
    "bot": "Bot",
    "infiltration": "Infiltration",
}
# The official Thursday file spells "Web Attack – Brute Force" with a cp1252 dash (0x96) that
# decodes to U+FFFD; both dashes become "-".
_DASHES = re.compile("[\ufffd\u2013\u2014\u0096]")
_SPACES = re.compile(r"\s+")


def cic_family(detailed_label: Optional[str]) -> Optional[str]:
    """Family (attack class) of a CICIDS2017 label: ``"DoS Hulk"`` -> ``"DoS"``, ``"Web Attack - XSS"`` -> ``"WebAttack"``."""
    if not detailed_label:
        return None
    key = detailed_label.lower()
    if key.startswith("web attack") or key == "webattack":
        return "WebAttack"
    return _CIC_FAMILIES.get(key, detailed_label)


def clean_cic_label(cell: str) -> str:
    """A label cell without stray spaces and with one kind of dash."""
    return _SPACES.sub(" ", _DASHES.sub("-", cell)).strip()


def header_names(header: str) -> list[str]:
    """Column names of a CICFlowMeter header: stripped, duplicates renamed as pandas does.

    ``Fwd Header Length`` appears twice in CICIDS2017; the second becomes ``Fwd Header Length.1``.
    """
    names: list[str] = []
    seen: dict[str, int] = {}
    for raw in header.split(","):
        name = raw.strip()
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        names.append(name)
    return names


def looks_like(first_line: str) -> bool:
    """True when a first line is a CSV header with CICFlowMeter column names."""
    return "," in first_line and "flow duration" in {name.strip().lower() for name in first_line.split(",")}


def probe(path: Any, head: Sequence[str]) -> str:
    """Check a CICFlowMeter header; returns ``"cicflowmeter"``.

    Raises
    ------
    DataFormatError
        The header has no numeric feature column.
    """
    header = next(line for line in head if line)
    names = header_names(header)
    features = [name for name in names if name.lower() != "label" and name.lower() not in IDENTIFIER_COLUMNS]
    if not features:
        raise not_a_flow_file(path, "a CSV header without feature columns")
    return FORMAT


class CicFlowMeterReader(FlowReader):
    """Reads CICFlowMeter CSVs: one header line, then comma-separated rows of numbers and a label.

    Every column except ``Label`` and the identifier columns (Flow ID, IPs, Timestamp) is a
    feature, parsed with ``float`` (``Infinity`` and ``NaN`` stay float inf / nan; an empty cell,
    as pandas writes NaN, is nan too). Labels:
    ``BENIGN`` -> benign, anything else -> malicious with the label as detailed label and its
    class (see :func:`cic_family`) as family. Every non-empty line after the header is a data row;
    rows of empty cells (``,,,,``) and repeated headers are counted as malformed.
    """

    format = FORMAT

    def __init__(self, path: Any, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._names: Optional[tuple[str, ...]] = None
        self._read_header()

    @property
    def feature_names(self) -> Optional[tuple[str, ...]]:
        """Names of :attr:`CicFlowRecord.values`, in order (e.g. ``"Fwd Header Length.1"``)."""
        return self._names

    def _read_header(self) -> None:
        """Learn the feature names at open time (the first line of the file)."""
        from edgebot.readers.detect import head_lines, read_head  # detect imports this module

        head = read_head(self.path)
        header = next(line for line in head_lines(head, complete=True) if line)
        self._configure(header)

    def _configure(self, header: str) -> None:
        names = header_names(header)
        label_positions = [i for i, name in enumerate(names) if name.lower() == "label"]
        feature_positions = [
            i for i, name in enumerate(names) if name.lower() != "label" and name.lower() not in IDENTIFIER_COLUMNS
        ]
        self._header_text = header
        self._n_columns = len(names)
        self._label_position = label_positions[-1] if label_positions else None
        self._feature_positions = feature_positions
        self._names = tuple(names[i] for i in feature_positions)
        self._take: Callable[[Sequence[str]], Any] = (
            itemgetter(*feature_positions) if len(feature_positions) > 1 else (lambda parts: (parts[feature_positions[0]],))
        )

    def _reset(self) -> None:
        super()._reset()
        self._seen_header = False

    def _parse_row(self, text: str, line_no: int) -> Optional[CicFlowRecord]:
        if not self._seen_header:
            self._seen_header = True
            if text != self._header_text:
                self._configure(text)  # the file changed since it was opened
            return None
        if text == self._header_text:
            raise MalformedRow("repeated header", "repeated CSV header line")
        parts = text.split(",")
        if len(parts) != self._n_columns:
            raise MalformedRow("wrong number of fields", f"{len(parts)} fields, expected {self._n_columns}")
        try:
            values = tuple(map(float, self._take(parts)))
        except ValueError:
            values = self._slow_values(parts)
        label = detailed = None
        if self._label_position is not None:
            cell = clean_cic_label(parts[self._label_position])
            if not cell:
                raise MalformedRow("empty label", "the Label cell is empty")
            if cell.lower() == "benign":
                label = BENIGN
            elif cell.lower() not in _UNLABELED:
                label, detailed = MALICIOUS, cell
        return CicFlowRecord(
            values=values,
            label=label,
            detailed_label=detailed,
            family=self._family_of(label, detailed),
            scenario=self.scenario,
            source=str(self.path),
            line=line_no,
            feature_names=self._names or (),
        )

    def _slow_values(self, parts: Sequence[str]) -> tuple[float, ...]:
        """Values of a row with an empty cell (NaN, as pandas reads it) or a bad one (raises)."""
        if not any(cell.strip() for cell in parts):
            raise MalformedRow("empty row", "a row of empty cells")
        assert self._names is not None
        values = []
        for name, position in zip(self._names, self._feature_positions):
            cell = parts[position]
            try:
                values.append(float(cell) if cell.strip() else math.nan)
            except ValueError:
                raise MalformedRow(f"bad {name}", f"bad {name} value {cell[:40]!r}") from None
        return tuple(values)
