"""The canonical flow record: one bidirectional connection with the fields a Zeek conn record has."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

#: Normalized label values. ``background`` and ``unknown`` are Stratosphere's "not labeled"
#: values; they are read and counted but never used for training or metrics.
BENIGN = "benign"
MALICIOUS = "malicious"
BACKGROUND = "background"
UNKNOWN = "unknown"
LABELS = (BENIGN, MALICIOUS, BACKGROUND, UNKNOWN)


@dataclass(slots=True)
class FlowRecord:
    """One bidirectional flow, as Zeek's conn.log describes it.

    Unset numeric Zeek values (``-``) are 0 here, except ``duration`` which may be ``None``
    in the source and is stored as 0.0; the featurizer never sees ``None``.
    ``orig_h`` is the originator (the host whose window the flow joins).
    """

    ts: float
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    proto: str  # "tcp", "udp", "icmp" or other lower-case name
    duration: float = 0.0
    orig_bytes: int = 0
    resp_bytes: int = 0
    conn_state: str = "OTH"
    missed_bytes: int = 0
    history: str = ""
    orig_pkts: int = 0
    orig_ip_bytes: int = 0
    resp_pkts: int = 0
    resp_ip_bytes: int = 0
    service: str = ""
    uid: str = ""
    label: Optional[str] = None  # one of LABELS, or None when the source has no labels
    detailed_label: Optional[str] = None  # e.g. "C&C", "DDoS", "PortScan"
    family: Optional[str] = None  # botnet family or attack class of malicious rows: "Mirai", "Hakai", "Bot"
    scenario: Optional[str] = None  # capture the row belongs to, e.g. "34-1" (IoT-23) or a file stem
    source: str = ""  # file (or capture) the record came from
    line: int = 0  # 1-based line number in that file, 0 when not from a file

    @property
    def end_ts(self) -> float:
        """Time the flow ended (start + duration)."""
        return self.ts + (self.duration or 0.0)

    @property
    def is_labeled(self) -> bool:
        """True for benign or malicious rows (the ones training and metrics use)."""
        return self.label in (BENIGN, MALICIOUS)


@dataclass(slots=True)
class CicFlowRecord:
    """One CICFlowMeter row: a fixed vector of named numeric features plus its label.

    ``values`` follows the reader's feature names; ``NaN``/``Infinity`` are kept as float
    values and handled by the CIC featurizer profile.
    """

    values: tuple
    label: Optional[str] = None
    detailed_label: Optional[str] = None
    family: Optional[str] = None
    scenario: Optional[str] = None
    source: str = ""
    line: int = 0
    feature_names: tuple = field(default=(), repr=False)

    @property
    def is_labeled(self) -> bool:
        return self.label in (BENIGN, MALICIOUS)
