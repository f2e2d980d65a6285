"""The public IoT-23 scenario table, and the scenario / family of a file or a detailed label."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Iot23Scenario:
    """One IoT-23 capture.

    Attributes
    ----------
    scenario : str
        Short id, e.g. ``"34-1"``.
    capture : str
        Full capture name, e.g. ``"CTU-IoT-Malware-Capture-34-1"``.
    name : str
        The name the IoT-23 table gives (``"Linux.Mirai"``, ``"Philips HUE"``).
    family : str or None
        Normalized botnet family of its malicious rows; None for the benign honeypot captures.
    """

    scenario: str
    capture: str
    name: str
    family: Optional[str]


def _malware(scenario: str, name: str, family: str) -> Iot23Scenario:
    return Iot23Scenario(scenario, f"CTU-IoT-Malware-Capture-{scenario}", name, family)


def _honeypot(scenario: str, name: str) -> Iot23Scenario:
    return Iot23Scenario(scenario, f"CTU-Honeypot-Capture-{scenario}", name, None)


#: The 23 captures of IoT-23 (Garcia, Parmisano, Erquiaga, Stratosphere Laboratory, 2020), keyed by
#: capture name. Family names are normalized: "Linux.Mirai" -> "Mirai", "Linux.Hajime" -> "Hajime",
#: "Gagfyt" (the table's spelling) -> "Gafgyt", "Hide and Seek" -> "HideAndSeek"; Okiru (a Mirai
#: variant) and the others keep their own name, as IoT-23 labels them.
IOT23_SCENARIOS: dict[str, Iot23Scenario] = {
    entry.capture: entry
    for entry in (
        _malware("1-1", "Hide and Seek", "HideAndSeek"),
        _malware("3-1", "Muhstik", "Muhstik"),
        _malware("7-1", "Linux.Mirai", "Mirai"),
        _malware("8-1", "Hakai", "Hakai"),
        _malware("9-1", "Linux.Hajime", "Hajime"),
        _malware("17-1", "Kenjiro", "Kenjiro"),
        _malware("20-1", "Torii", "Torii"),
        _malware("21-1", "Torii", "Torii"),
        _malware("33-1", "Kenjiro", "Kenjiro"),
        _malware("34-1", "Mirai", "Mirai"),
        _malware("35-1", "Mirai", "Mirai"),
        _malware("36-1", "Okiru", "Okiru"),
        _malware("39-1", "IRCBot", "IRCBot"),
        _malware("42-1", "Trojan", "Trojan"),
        _malware("43-1", "Mirai", "Mirai"),
        _malware("44-1", "Mirai", "Mirai"),
        _malware("48-1", "Mirai", "Mirai"),
        _malware("49-1", "Mirai", "Mirai"),
        _malware("52-1", "Mirai", "Mirai"),
        _malware("60-1", "Gagfyt", "Gafgyt"),
        _honeypot("4-1", "Philips HUE"),
        _honeypot("5-1", "Amazon Echo"),
        _honeypot("7-1", "Somfy Door Lock"),
    )
}

# "CTU-IoT-Malware-Capture-34-1", also inside "CTU-IoT-Malware-Capture-8-1conn.log.labeled.csv".
_IOT23_CAPTURE = re.compile(r"(?:CTU-)?(IoT-Malware|Honeypot)-Capture-(\d+)-(\d+)", re.IGNORECASE)

# Suffixes dropped from a file name to get its stem ("008-zeek-mixed.conn.log.labeled.xz").
_COMPRESSION_SUFFIXES = (".xz", ".gz", ".gzip", ".bz2")
_LOG_SUFFIXES = (".labeled", ".log", ".csv", ".json", ".jsonl", ".ndjson", ".tsv", ".txt", ".conn")

# Slips / netflowlabeler long labels: "From_malicious-To_malicious-Malware_data_exfiltration-RemcosRAT".
_FROM_TO_LABEL = re.compile(r"^From_[^-]*-To_[^-]*-(?:.*-)?([^-]+)$")


def iot23_scenario(path: PathLike) -> Optional[Iot23Scenario]:
    """The IoT-23 capture a file belongs to, from its name (or a parent folder's), else None.

    A capture id that the public table does not list gives an entry with ``family=None``.
    """
    path = Path(path)
    for text in (path.name, str(path)):
        match = _IOT23_CAPTURE.search(text)
        if match:
            kind = "IoT-Malware" if match.group(1).lower() == "iot-malware" else "Honeypot"
            scenario = f"{int(match.group(2))}-{int(match.group(3))}"
            capture = f"CTU-{kind}-Capture-{scenario}"
            return IOT23_SCENARIOS.get(capture, Iot23Scenario(scenario, capture, "", None))
    return None


def file_stem(path: PathLike) -> str:
    """A file's name without compression and log suffixes: ``008-zeek-mixed.conn.log.labeled.xz`` -> ``008-zeek-mixed``."""
    name = Path(path).name
    lowered = name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if lowered.endswith(suffix):
            name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
            break
    stripped = True
    while stripped:
        stripped = False
        for suffix in _LOG_SUFFIXES:
            if lowered.endswith(suffix) and len(lowered) > len(suffix):
                name, lowered = name[: -len(suffix)], lowered[: -len(suffix)]
                stripped = True
    return name


def scenario_family(path: PathLike) -> tuple[str, Optional[str]]:
    """Scenario id and table family of a file.

    Parameters
    ----------
    path : str or PathLike
        A flow file.

    Returns
    -------
    (str, str or None)
        For IoT-23 files the scenario id (``"34-1"``) and the family of the IoT-23 table
        (``"Mirai"``; None for benign honeypot captures and ids the table does not list); for any
        other file its stem (``"008-zeek-mixed"``) and None (the family then comes from each row's
        detailed label).
    """
    entry = iot23_scenario(path)
    if entry is not None:
        return entry.scenario, entry.family
    return file_stem(path), None


def family_from_detailed_label(detailed_label: Optional[str]) -> Optional[str]:
    """Family of a malicious row of a non-IoT-23 Zeek log, from its detailed label.

    Slips long labels ``From_<x>-To_<y>-<what>-<family>`` give their last part (``"RemcosRAT"``);
    any other detailed label is the family itself (``"External-Attack-to-Device"``).
    """
    if not detailed_label:
        return None
    match = _FROM_TO_LABEL.match(detailed_label)
    if match:
        return match.group(1)
    return detailed_label
