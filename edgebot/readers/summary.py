"""What a set of flow files holds: rows, skipped rows, labels, families, time span, hosts."""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections import Counter
from typing import Any, Iterable, Optional, Union

from edgebot.flow import BENIGN, MALICIOUS, FlowRecord

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Key under which ``labels`` counts rows without a label (plain conn logs).
UNLABELED = "unlabeled"


def _label_counts(counter: Counter) -> dict[str, int]:
    """Benign and malicious always, other labels only when present; ``None`` as ``unlabeled``."""
    counts = {BENIGN: counter.get(BENIGN, 0), MALICIOUS: counter.get(MALICIOUS, 0)}
    for label, n in sorted(counter.items(), key=lambda item: str(item[0])):
        if label not in counts:
            counts[UNLABELED if label is None else label] = n
    return counts


def _sorted_counts(counter: Counter) -> dict[str, int]:
    return {str(key): n for key, n in sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))}


def summarize(paths: Union[PathLike, Iterable[PathLike]], *, strict: bool = False) -> dict[str, Any]:
    """Read flow files once and describe them.

    Parameters
    ----------
    paths : path or iterable of paths
        Flow files of any supported format.
    strict : bool
        Raise on the first malformed row.

    Returns
    -------
    dict
        JSON-serializable::

            {"files": [{"path", "format", "scenario", "rows", "skipped", "skipped_reasons",
                        "skipped_examples", "labels", "detailed_labels", "families",
                        "first_ts", "last_ts", "hosts"}, ...],
             "rows": N, "skipped": N, "labels": {"benign": N, "malicious": N, ...},
             "families": {...}, "time_span": {"first": ts, "last": ts} or None, "hosts": N}

        ``rows`` counts records read; ``labels`` always has benign and malicious, plus
        background / unknown / unlabeled when present; ``families`` counts malicious rows;
        ``hosts`` counts distinct originating hosts (CICFlowMeter files have none: 0).

    Raises
    ------
    DataFormatError, SourceError
        As :func:`edgebot.readers.open_flows`.
    """
    from edgebot.readers import open_flows

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    all_labels: Counter = Counter()
    all_families: Counter = Counter()
    all_hosts: set[str] = set()
    first: Optional[float] = None
    last: Optional[float] = None
    for path in paths:
        reader = open_flows(path, strict=strict)
        labels: Counter = Counter()
        detailed: Counter = Counter()
        families: Counter = Counter()
        hosts: set[str] = set()
        file_first: Optional[float] = None
        file_last: Optional[float] = None
        for record in reader:
            labels[record.label] += 1
            if record.detailed_label is not None:
                detailed[record.detailed_label] += 1
            if record.family is not None:
                families[record.family] += 1
            if type(record) is FlowRecord:
                hosts.add(record.orig_h)
                ts = record.ts
                if file_first is None or ts < file_first:
                    file_first = ts
                if file_last is None or ts > file_last:
                    file_last = ts
        files.append(
            {
                "path": str(reader.path),
                "format": reader.format,
                "scenario": reader.scenario,
                "rows": reader.rows_read,
                "skipped": reader.rows_skipped,
                "skipped_reasons": dict(reader.skipped_reasons.most_common()),
                "skipped_examples": [list(example) for example in reader.skipped_examples],
                "labels": _label_counts(labels),
                "detailed_labels": _sorted_counts(detailed),
                "families": _sorted_counts(families),
                "first_ts": file_first,
                "last_ts": file_last,
                "hosts": len(hosts),
            }
        )
        all_labels.update(labels)
        all_families.update(families)
        all_hosts |= hosts
        if file_first is not None:
            first = file_first if first is None else min(first, file_first)
            last = file_last if last is None else max(last, file_last)  # type: ignore[type-var]
    return {
        "files": files,
        "rows": sum(entry["rows"] for entry in files),
        "skipped": sum(entry["skipped"] for entry in files),
        "labels": _label_counts(all_labels),
        "families": _sorted_counts(all_families),
        "time_span": None if first is None else {"first": first, "last": last},
        "hosts": len(all_hosts),
    }


def _utc(ts: Optional[float]) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _counts(counts: dict[str, int], limit: int = 6) -> str:
    shown = [f"{name} {n:,}" for name, n in list(counts.items())[:limit] if n or name in (BENIGN, MALICIOUS)]
    rest = len(counts) - limit
    return ", ".join(shown) + (f", ... ({rest} more)" if rest > 0 else "") if shown else "-"


def _span(first: Optional[float], last: Optional[float]) -> str:
    if first is None or last is None:
        return "no timestamps"
    hours = (last - first) / 3600.0
    length = f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
    return f"{_utc(first)} .. {_utc(last)} ({length})"


def format_summary(summary: dict[str, Any]) -> str:
    """Render :func:`summarize`'s dict for a terminal (what ``edgebot data summary`` prints).

    Example::

        data/iot23/CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz
          format iot23-labeled, scenario 34-1, 23,145 rows, 0 skipped, 1 host
          labels: benign 1,923, malicious 21,222
          detailed: DDoS 14,394, C&C 6,706, PartOfAHorizontalPortScan 122
          families: Mirai 21,222
          time: 2018-12-21 15:50:16 UTC .. 2018-12-22 15:49:58 UTC (24.0 h)
        total: 1 file, 23,145 rows, 0 skipped, 1 host; benign 1,923, malicious 21,222
    """
    lines: list[str] = []
    for entry in summary["files"]:
        hosts = entry["hosts"]
        lines.append(entry["path"])
        lines.append(
            f"  format {entry['format']}, scenario {entry.get('scenario', '-')}, {entry['rows']:,} rows, "
            f"{entry['skipped']:,} skipped, {hosts:,} host{'s' if hosts != 1 else ''}"
        )
        if entry["skipped"]:
            lines.append(f"  skipped: {_counts(entry['skipped_reasons'])}")
            examples = entry.get("skipped_examples") or []
            for line_no, reason in examples[:3]:
                lines.append(f"    line {line_no}: {reason}")
        lines.append(f"  labels: {_counts(entry['labels'])}")
        if entry.get("detailed_labels"):
            lines.append(f"  detailed: {_counts(entry['detailed_labels'])}")
        if entry["families"]:
            lines.append(f"  families: {_counts(entry['families'])}")
        if entry["first_ts"] is not None:
            lines.append(f"  time: {_span(entry['first_ts'], entry['last_ts'])}")
    n_files = len(summary["files"])
    hosts = summary["hosts"]
    lines.append(
        f"total: {n_files} file{'s' if n_files != 1 else ''}, {summary['rows']:,} rows, "
        f"{summary['skipped']:,} skipped, {hosts:,} host{'s' if hosts != 1 else ''}; {_counts(summary['labels'])}"
    )
    if summary["families"]:
        lines.append(f"families: {_counts(summary['families'], limit=12)}")
    span = summary["time_span"]
    if span:
        lines.append(f"time: {_span(span['first'], span['last'])}")
    return "\n".join(lines)
