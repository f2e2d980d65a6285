"""Flow readers: Zeek conn logs (TSV, JSON, IoT-23 / Stratosphere labeled), IoT-23 CSV, CICFlowMeter CSV.

``open_flows(path)`` sniffs the format from the file's content (xz, gzip and bzip2 are opened
transparently) and returns a streaming :class:`FlowReader`; ``read_flows`` reads several files
for the trainer; ``summarize`` counts rows, labels, families, time span and hosts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

from edgebot.errors import DataError
from edgebot.flow import CicFlowRecord, FlowRecord
from edgebot.readers.cicids import CicFlowMeterReader, cic_family
from edgebot.readers.common import NOT_A_FLOW_FILE, FlowReader, MalformedRow
from edgebot.readers.detect import sniff_format
from edgebot.readers.iot23csv import Iot23CsvReader
from edgebot.readers.scenarios import (
    IOT23_SCENARIOS,
    Iot23Scenario,
    family_from_detailed_label,
    iot23_scenario,
    scenario_family,
)
from edgebot.readers.summary import format_summary, summarize
from edgebot.readers.zeek import ZeekJsonReader, ZeekTsvReader

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Every format name a reader reports.
FORMATS = ("zeek-tsv", "iot23-labeled", "zeek-json", "iot23-csv", "cicflowmeter")


def _no_family(detailed_label: Optional[str]) -> Optional[str]:
    return None


def open_flows(path: PathLike, *, strict: bool = False, family: Optional[str] = None) -> FlowReader:
    """Open a flow file of any supported format for streaming.

    Parameters
    ----------
    path : str or PathLike
        A Zeek conn log (TSV or JSON, plain or IoT-23 / Stratosphere labeled), an IoT-23
        pipe-separated CSV or a CICFlowMeter CSV; may be xz-, gzip- or bzip2-compressed.
    strict : bool
        Raise on the first malformed row instead of skipping and counting it.
    family : str, optional
        Family to give every malicious row (overrides the IoT-23 table and the detailed label).

    Returns
    -------
    FlowReader
        Iterate over it for :class:`~edgebot.flow.FlowRecord` (or
        :class:`~edgebot.flow.CicFlowRecord` for CICFlowMeter files).

    Raises
    ------
    DataFormatError
        ``"<file>: not a Zeek conn log or CICFlowMeter CSV (<why>)"``; while iterating with
        ``strict``, ``"<file>:<line>: <reason>"``.
    SourceError
        The file cannot be opened.
    """
    path = Path(path)
    fmt, reader_class = sniff_format(path)
    scenario, table_family = scenario_family(path)
    if fmt == "cicflowmeter":
        derive = cic_family
    elif (capture := iot23_scenario(path)) is not None:
        derive = _no_family  # IoT-23 detailed labels (C&C, DDoS) are behaviours, not families
        if not capture.name and family is None:
            log.warning(
                "%s: IoT-23 capture %s is not in the scenario table; its malicious rows get no family "
                "(give one with family=)", path, scenario,
            )
    else:
        derive = family_from_detailed_label
    kwargs: dict[str, Any] = dict(strict=strict, scenario=scenario, family=family or table_family, derive_family=derive)
    if reader_class is ZeekTsvReader:
        kwargs["format"] = fmt
    return reader_class(path, **kwargs)


def _override_for(path: PathLike, families: Optional[Mapping[str, str]]) -> Optional[str]:
    """The family given for a file by path as written, resolved path, or file name."""
    if not families:
        return None
    path = Path(path)
    for key, name in families.items():
        key_path = Path(key)
        if key == str(path) or key_path.name == str(key) == path.name:
            return name
        try:
            if key_path.resolve() == path.resolve():
                return name
        except OSError:
            continue
    return None


def read_flows(
    paths: Union[PathLike, Iterable[PathLike]],
    *,
    strict: bool = False,
    families: Optional[Mapping[str, str]] = None,
) -> tuple[list[Union[FlowRecord, CicFlowRecord]], list[FlowReader]]:
    """Read every record of several files into one list (for training).

    Parameters
    ----------
    paths : path or iterable of paths
        Flow files (any supported format, but Zeek-like and CICFlowMeter files cannot be mixed).
    strict : bool
        Raise on the first malformed row.
    families : mapping of str to str, optional
        File (as given, resolved path or bare file name) -> family of its malicious rows, as
        the trainer's ``--family FILE=NAME``.

    Returns
    -------
    (list, list of FlowReader)
        The records in file order, and the exhausted readers (with their skip counts).

    Raises
    ------
    DataError
        CICFlowMeter CSVs mixed with Zeek-like files (their features differ).
    DataFormatError, SourceError
        As :func:`open_flows`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    readers = [open_flows(path, strict=strict, family=_override_for(path, families)) for path in paths]
    kinds = {reader.format == "cicflowmeter" for reader in readers}
    if len(kinds) > 1:
        cic = [str(r.path) for r in readers if r.format == "cicflowmeter"]
        raise DataError(
            f"cannot mix CICFlowMeter CSVs ({', '.join(cic)}) with Zeek logs in one data set; "
            "their features differ, train on one kind at a time"
        )
    records: list[Union[FlowRecord, CicFlowRecord]] = []
    for reader in readers:
        records.extend(reader)
    return records, readers


__all__ = [
    "FORMATS",
    "FlowReader",
    "IOT23_SCENARIOS",
    "Iot23Scenario",
    "MalformedRow",
    "NOT_A_FLOW_FILE",
    "CicFlowMeterReader",
    "Iot23CsvReader",
    "ZeekJsonReader",
    "ZeekTsvReader",
    "format_summary",
    "open_flows",
    "read_flows",
    "scenario_family",
    "summarize",
]
