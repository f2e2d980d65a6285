"""The bundled data files, named once: for the demo, the trainer's defaults, tests and benchmarks.

Everything lives under the repository's ``data/`` folder (see ``data/ATTRIBUTION.md``); set
``EDGEBOT_DATA`` to use another copy (e.g. an installed wheel, which carries no data). Names are
paths relative to that root; the functions return absolute paths under :func:`data_root`.

* :data:`IOT23_TRAINING` - the four IoT-23 captures the trainer has always used (Mirai 34-1,
  Hakai 8-1, honeypots 4-1 and 5-1); :data:`IOT23_EVAL` - Mirai 44-1, kept out of training.
* :func:`benign_devices` - the 44 benign devices of ``data/benign_devices/DEVICES.tsv`` (IoT
  Sentinel, IoTLS, NKU lifecycle, the IoT-23 honeypot 7-1 Somfy lock, the CTU-SME-11 host): each
  device's files, addresses, time span and flows. Leave-device-out holds them out one group at a time.
* :data:`DEFAULT_TRAINING` - IoT-23 training captures + every benign device file (the wider benign
  world), as absolute paths; :func:`default_training` is the same for an explicit root.
* :data:`STRATOSPHERE`, :data:`CICIDS2017`, :data:`PCAPS` - the other bundled logs and captures
  (:data:`IOT23`, :data:`STRATOSPHERE_LOGS`, :data:`CICIDS2017_CSVS` name each file; :func:`path`,
  :func:`iot23` and :func:`pcap` give absolute paths: tests, benchmarks and the demo use these, never
  a ``data/...`` path of their own).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from edgebot.errors import DataError

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming another data root.
ENV_VAR = "EDGEBOT_DATA"
#: The repository's data folder (right for a clone or an editable install).
REPO_DATA = Path(__file__).resolve().parents[1] / "data"

#: IoT-23 captures of the default training set: Mirai 34-1, Hakai 8-1, benign honeypots 4-1 and 5-1.
IOT23_TRAINING: tuple[str, ...] = (
    "iot23/CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz",
    "iot23/CTU-IoT-Malware-Capture-8-1conn.log.labeled.csv.xz",
    "iot23/CTU-Honeypot-Capture-4-1.conn.log.labeled.xz",
    "iot23/CTU-Honeypot-Capture-5-1.conn.log.labeled.xz",
)
#: IoT-23 capture kept out of training (Mirai 44-1, a small evaluation capture).
IOT23_EVAL: tuple[str, ...] = ("iot23/CTU-IoT-Malware-Capture-44-1conn.log.labeled.csv.xz",)
#: Stratosphere labeled logs (Windows hosts; not IoT): CTU-Normal 008/010/011, Slips test 18 (RemcosRAT).
STRATOSPHERE: tuple[str, ...] = (
    "stratosphere/008-zeek-mixed.conn.log.labeled.xz",
    "stratosphere/010-zeek-mixed.conn.log.labeled.xz",
    "stratosphere/011-zeek-mixed.conn.log.labeled.xz",
    "stratosphere/slips-test18-ctu-sme-11-win.conn.log.labeled.xz",
)
#: CICIDS2017 CICFlowMeter CSVs (the cicflowmeter profile).
CICIDS2017: tuple[str, ...] = (
    "cicids2017/MachineLearningCVE_Friday-WorkingHours-Afternoon-DDos_first9998rows.csv.xz",
    "cicids2017/WesternOC2_CICIDS2017_sample_subset6311.csv.xz",
)
#: Bundled pcaps by role.
PCAPS: dict[str, str] = {
    "mirai_34_1": "pcaps/iot23_CTU-IoT-Malware-Capture-34-1_2018-12-21-15-50-14-192.168.1.195.irc.pcap.xz",
    "hue_4_1": "pcaps/iot23_CTU-Honeypot-Capture-4-1_2018-10-25-14-06-32-192.168.1.132.pcap.xz",
    "hue_2018_09_14": "pcaps/iot23_CTU-Honeypot-Capture-4-1_2018-09-14-13-40-25-Philips-Hue-Bridge.pcap.xz",
}
#: Folder of the small Zeek test-suite pcaps (golden meter tests).
ZEEK_TRACES = "pcaps/zeek_traces"
#: Every bundled IoT-23 conn log by scenario (the training captures and the evaluation one).
IOT23: dict[str, str] = {
    "34-1": IOT23_TRAINING[0], "8-1": IOT23_TRAINING[1], "4-1": IOT23_TRAINING[2], "5-1": IOT23_TRAINING[3],
    "44-1": IOT23_EVAL[0],
}
#: The Stratosphere logs by short name.
STRATOSPHERE_LOGS: dict[str, str] = {"008": STRATOSPHERE[0], "010": STRATOSPHERE[1], "011": STRATOSPHERE[2],
                                     "slips-18": STRATOSPHERE[3]}
#: The CICIDS2017 CSVs by short name.
CICIDS2017_CSVS: dict[str, str] = {"ddos": CICIDS2017[0], "western": CICIDS2017[1]}
#: The benign device registry, relative to the data root.
DEVICES_TSV = "benign_devices/DEVICES.tsv"
#: Columns of DEVICES.tsv, in order (written by data/derive/meter_benign.py).
DEVICE_COLUMNS = ("device", "dataset", "group", "mac", "identified_by", "addresses", "files", "first_seen",
                  "last_seen", "capture_hours", "flows", "device_flows", "licence")


def data_root(root: Optional[PathLike] = None) -> Path:
    """The data folder: ``root`` if given, else ``$EDGEBOT_DATA``, else the repository's ``data/``.

    Raises
    ------
    DataError
        The folder does not hold edgebot's bundled data (checked by its first training capture).
    """
    path = Path(root) if root is not None else Path(os.environ.get(ENV_VAR) or REPO_DATA)
    if not (path / IOT23_TRAINING[0]).is_file():
        raise DataError(
            f"bundled data not found under {path}; run from a clone of the edgebot repository "
            f"or set {ENV_VAR} to its data/ folder"
        )
    return path


def resolve(names: Iterable[str], root: Optional[PathLike] = None) -> tuple[Path, ...]:
    """Absolute paths of data files named relative to the data root."""
    base = data_root(root)
    return tuple(base / name for name in names)


def path(name: str, root: Optional[PathLike] = None) -> Path:
    """Absolute path of one data file or folder named relative to the data root (e.g. :data:`ZEEK_TRACES`)."""
    return data_root(root) / name


def iot23(scenario: str, root: Optional[PathLike] = None) -> Path:
    """The bundled IoT-23 conn log of ``scenario`` (a key of :data:`IOT23`: ``"34-1"``, ``"4-1"``...)."""
    return path(IOT23[scenario], root)


def pcap(key: str, root: Optional[PathLike] = None) -> Path:
    """The bundled pcap ``key`` (a key of :data:`PCAPS`: ``"mirai_34_1"``, ``"hue_4_1"``...)."""
    return path(PCAPS[key], root)


@dataclass(frozen=True)
class BenignDevice:
    """One row of ``DEVICES.tsv``: a benign device and the files that hold its traffic.

    Attributes
    ----------
    device : str
        ``"<dataset>/<name>"``, e.g. ``"iot-sentinel/HueBridge"``.
    dataset : str
        ``iot-sentinel``, ``iotls``, ``nku``, ``iot23`` or ``ctu-sme-11``.
    group : str
        Physical host: devices sharing a MAC share a group (leave-device-out keeps a group together).
    mac : str
        The device's MAC, ``"-"`` for devices known from Zeek logs only.
    addresses : tuple of str
        Every address the device originates flows from (flows of other hosts in its files are companions).
    files : tuple of Path
        Its flow files, absolute, in time order.
    first_seen, last_seen : str
        ISO 8601 UTC.
    capture_hours : float
        Hours of capture (sum over its source captures).
    flows, device_flows : int
        Flows in its files, and flows its addresses originate.
    licence : str
        Short citation / licence note (details in data/ATTRIBUTION.md).
    """

    device: str
    dataset: str
    group: str
    mac: str
    identified_by: str
    addresses: tuple[str, ...]
    files: tuple[Path, ...]
    first_seen: str
    last_seen: str
    capture_hours: float
    flows: int
    device_flows: int
    licence: str


_REGISTRY_CACHE: dict[tuple[str, int], dict[str, BenignDevice]] = {}


def benign_devices(root: Optional[PathLike] = None) -> dict[str, BenignDevice]:
    """The benign device registry, ``{device id: BenignDevice}`` in file order.

    Raises
    ------
    DataError
        DEVICES.tsv is missing, has other columns, or names a file that does not exist.
    """
    base = data_root(root)
    path = base / DEVICES_TSV
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise DataError(f"{path}: the benign device registry is missing ({exc.strerror or exc})") from exc
    key = (str(path), stamp)
    cached = _REGISTRY_CACHE.get(key)
    if cached is not None:
        return dict(cached)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows or tuple(rows[0]) != DEVICE_COLUMNS:
        raise DataError(f"{path}: expected the columns {', '.join(DEVICE_COLUMNS)}")
    devices: dict[str, BenignDevice] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(DEVICE_COLUMNS):
            raise DataError(f"{path}:{line_no}: {len(row)} columns, expected {len(DEVICE_COLUMNS)}")
        cell = dict(zip(DEVICE_COLUMNS, row))
        files = tuple(base / name for name in cell["files"].split(","))
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{path}:{line_no}: device {cell['device']} names missing files: {', '.join(missing)}")
        devices[cell["device"]] = BenignDevice(
            device=cell["device"], dataset=cell["dataset"], group=cell["group"], mac=cell["mac"],
            identified_by=cell["identified_by"], addresses=tuple(cell["addresses"].split(",")), files=files,
            first_seen=cell["first_seen"], last_seen=cell["last_seen"], capture_hours=float(cell["capture_hours"]),
            flows=int(cell["flows"]), device_flows=int(cell["device_flows"]), licence=cell["licence"],
        )
    _REGISTRY_CACHE.clear()
    _REGISTRY_CACHE[key] = devices
    return dict(devices)


def benign_device_files(root: Optional[PathLike] = None) -> tuple[Path, ...]:
    """Every benign device file, in registry order."""
    return tuple(f for dev in benign_devices(root).values() for f in dev.files)


def iot23_training(root: Optional[PathLike] = None) -> tuple[Path, ...]:
    """The IoT-23 training captures (:data:`IOT23_TRAINING`), absolute."""
    return resolve(IOT23_TRAINING, root)


def default_training(root: Optional[PathLike] = None) -> tuple[Path, ...]:
    """The default training set: IoT-23 training captures + every benign device file."""
    return iot23_training(root) + benign_device_files(root)


def device_of_file(path: PathLike, root: Optional[PathLike] = None) -> Optional[BenignDevice]:
    """The benign device a flow file belongs to (matched by resolved path or file name), else None."""
    path = Path(path)
    for dev in benign_devices(root).values():
        for f in dev.files:
            if f.name == path.name or f.resolve() == path.resolve():
                return dev
    return None


_LAZY = {
    "DEFAULT_TRAINING": default_training,
    "IOT23_TRAINING_FILES": iot23_training,
    "BENIGN_DEVICE_FILES": benign_device_files,
}


def __getattr__(name: str):
    """``DEFAULT_TRAINING`` and friends, resolved under :func:`data_root` when first used (not at import:
    importing this module never touches the disk)."""
    if name in _LAZY:
        return _LAZY[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: F822  (DEFAULT_TRAINING and friends come from the module __getattr__)
    "BenignDevice", "CICIDS2017", "CICIDS2017_CSVS", "DEFAULT_TRAINING", "DEVICES_TSV", "ENV_VAR", "IOT23",
    "IOT23_EVAL", "IOT23_TRAINING", "PCAPS", "REPO_DATA", "STRATOSPHERE", "STRATOSPHERE_LOGS", "ZEEK_TRACES",
    "benign_device_files", "benign_devices", "data_root", "default_training", "device_of_file", "iot23",
    "iot23_training", "path", "pcap", "resolve",
]
