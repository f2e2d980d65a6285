"""Derive data/benign_devices/ from the shared benign IoT captures: meter, label, compress, register.

Run from a clone with the repository's venv, pointing at the shared data folder::

    .venv/bin/python data/derive/meter_benign.py --shared ../shared/data
    .venv/bin/python data/derive/meter_benign.py --shared ../shared/data --check   # rebuild in memory, compare

What it writes (all paths relative to the repository's ``data/``):

* one labeled Zeek conn log per benign device, ``benign_devices/<dataset>/<name>.conn.log.labeled.xz``, in
  IoT-23's newer 23-tab-field layout (``... tunnel_parents label det_label``). pcaps are metered with the
  project's own meter (:class:`edgebot.edge.sources.pcap.PcapSource`, the agent's defaults), so the flows are
  exactly the ones ``edgebot run --pcap`` scores. Every row is ``Benign``; ``det_label`` holds the role of the
  flow's originator: ``device`` (an address the device's MAC sent from in that capture) or ``companion``
  (the setup phone, the gateway, and whatever else the capture holds);
* xz copies of the IoT-23 honeypot 7-1 log (byte-identical) and of CTU-SME-11's day log (byte-identical), and
  labeled copies of the five 7-1 Zeek re-run logs (the original rows with ``Benign`` / ``device`` appended);
* ``benign_devices/DEVICES.tsv``, the device registry (one row per device: files, addresses, time span,
  flows), which leave-device-out and the false-incident figures use;
* the generated section of ``ATTRIBUTION.md`` (source and derived sha256 of every file).

The output is deterministic: same inputs, same bytes (``#open``/``#close`` carry capture time, not the time
of the run; xz is LZMA2 preset 6 with a 1 MiB dictionary, so a reader needs about 1 MiB to decompress).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import ipaddress
import logging
import lzma
import socket
import struct
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

log = logging.getLogger("meter_benign")

DATA = Path(__file__).resolve().parents[1]
OUT_DIR = "benign_devices"
#: xz settings of every derived file: `xz -6` with a 1 MiB dictionary (decoding needs ~1 MiB, not 9).
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]

ROLE_DEVICE = "device"
ROLE_COMPANION = "companion"

#: The newer IoT-23 layout (34-1's header), which edgebot.readers parse as ``iot23-labeled``.
FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
          "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
          "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents", "label", "det_label")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count",
         "string", "bool", "bool", "count", "string", "count", "count", "count", "count", "set[string]",
         "string", "string")

LICENCES = {
    "iot-sentinel": "IoT Sentinel (Miettinen et al., ICDCS 2017, Aalto); research data, no licence file",
    "iotls": "IoTLS (Paracha et al., IMC 2021, Northeastern); research data, no licence file",
    "nku": "NKU lifecycle-based IoT traffic dataset (Nankai University); Apache-2.0",
    "iot23": "IoT-23 (Garcia, Parmisano, Erquiaga, Stratosphere, 2020); see IoT-23 note",
    "ctu-sme-11": "CTU-SME-11 (Stratosphere, Zenodo 10.5281/zenodo.7958259); GPL-2.0 (IDPS-Comparison-Tool)",
}


# --------------------------------------------------------------------------------------------------------
# what the capture says about its hosts

def ethernet_sources(pcap: Path) -> dict[str, Counter]:
    """Source MAC -> Counter of the IP source addresses it sent packets from (``"non-ip"`` for others)."""
    from edgebot.edge.pcapfile import PcapReader

    out: dict[str, Counter] = defaultdict(Counter)
    with PcapReader(pcap) as reader:
        if reader.linktype != 1:
            raise SystemExit(f"{pcap}: link type {reader.linktype}, expected Ethernet (1)")
        for _ts, frame in reader:
            if len(frame) < 14:
                continue
            mac = frame[6:12].hex(":")
            ethertype, off = struct.unpack_from("!H", frame, 12)[0], 14
            while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:  # VLAN tags
                ethertype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
            if ethertype == 0x0800 and len(frame) >= off + 20:
                out[mac][socket.inet_ntoa(frame[off + 12:off + 16])] += 1
            elif ethertype == 0x86DD and len(frame) >= off + 40:
                out[mac][socket.inet_ntop(socket.AF_INET6, frame[off + 8:off + 24])] += 1
            else:
                out[mac]["non-ip"] += 1
    return out


def _is_local(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_link_local or ip.is_unspecified


def router_macs(sources: dict[str, Counter]) -> set[str]:
    """MACs that sent packets from Internet addresses: the gateway forwarding remote traffic."""
    return {mac for mac, ips in sources.items() if any(a != "non-ip" and not _is_local(a) for a in ips)}


def infer_device_mac(sources: dict[str, Counter]) -> str:
    """The device of a single-device capture: of the MACs that never forward Internet traffic (not the
    router), the one that sent the most IP packets."""
    routers = router_macs(sources)
    candidates = {mac: sum(n for a, n in ips.items() if a != "non-ip")
                  for mac, ips in sources.items() if mac not in routers}
    candidates = {mac: n for mac, n in candidates.items() if n}
    if not candidates:
        raise SystemExit("no non-router MAC sent IP packets")
    return max(sorted(candidates), key=candidates.__getitem__)


def device_addresses(sources: dict[str, Counter], mac: str) -> list[str]:
    """Every IP source address the device's MAC used (0.0.0.0 and :: included: its DHCP and DAD).

    An address that another MAC also sent from belongs to the device only if the other MAC is a router
    forwarding it; any other overlap stops the run (the capture would not say whose flows they are).
    """
    mine = {a for a in sources.get(mac, {}) if a != "non-ip"}
    if not mine:
        raise SystemExit(f"MAC {mac} sent no IP packet in this capture")
    routers = router_macs(sources)
    for other, ips in sources.items():
        if other == mac or other in routers:
            continue
        shared = mine & set(ips)
        if shared:
            raise SystemExit(f"addresses {sorted(shared)} were used by {mac} and {other}")
    return sorted(mine, key=lambda a: (":" in a, a))


# --------------------------------------------------------------------------------------------------------
# metering and writing

def meter(pcaps: Sequence[Path]) -> list:
    """Flows of one or more pcaps metered as ONE stream in the given (time) order, with the meter and the
    settings ``edgebot run --pcap`` uses (:class:`PcapSource`'s defaults)."""
    from edgebot.edge.pcapfile import PcapReader
    from edgebot.edge.sources.pcap import CHUNK_BYTES, make_meter

    flow_meter = make_meter(None, str(pcaps[0]))
    flows: list = []
    for pcap in pcaps:
        with PcapReader(pcap) as reader:
            for buf, packets in reader.batches(chunk_size=CHUNK_BYTES):
                flows.extend(flow_meter.add_batch(buf, packets, reader.linktype))
    flows.extend(flow_meter.flush())
    return flows


def _zeek_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")


def zeek_row(flow, role: str) -> str:
    """One conn.log line of a metered flow (Zeek's conventions: ``-`` for unset, no duration for 1 packet)."""
    if flow.duration > 0:
        duration, ob, rb = f"{flow.duration:.6f}", str(flow.orig_bytes), str(flow.resp_bytes)
    else:
        duration = ob = rb = "-"
    cells = (f"{flow.ts:.6f}", flow.uid, flow.orig_h, str(flow.orig_p), flow.resp_h, str(flow.resp_p), flow.proto,
             flow.service or "-", duration, ob, rb, flow.conn_state, "-", "-", str(flow.missed_bytes),
             flow.history or "-", str(flow.orig_pkts), str(flow.orig_ip_bytes), str(flow.resp_pkts),
             str(flow.resp_ip_bytes), "-", "Benign", role)
    return "\t".join(cells)


def conn_log(flows: Sequence, device: set[str]) -> bytes:
    """A labeled conn log of metered flows, rows in start-time order."""
    flows = sorted(flows, key=lambda f: (f.ts, f.uid))
    first = flows[0].ts if flows else 0.0
    last = max((f.ts + f.duration for f in flows), default=0.0)
    lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn",
             f"#open\t{_zeek_time(first)}", "#fields\t" + "\t".join(FIELDS), "#types\t" + "\t".join(TYPES)]
    lines += [zeek_row(f, ROLE_DEVICE if f.orig_h in device else ROLE_COMPANION) for f in flows]
    lines.append(f"#close\t{_zeek_time(last)}")
    return ("\n".join(lines) + "\n").encode()


def label_plain_log(text: bytes, role: str = ROLE_DEVICE) -> bytes:
    """A plain Zeek conn log with ``label`` / ``det_label`` columns appended (every row ``Benign``, ``role``)."""
    out = []
    for line in text.decode().split("\n"):
        if line.startswith("#fields\t"):
            line += "\tlabel\tdet_label"
        elif line.startswith("#types\t"):
            line += "\tstring\tstring"
        elif line and not line.startswith("#"):
            line += f"\tBenign\t{role}"
        out.append(line)
    return "\n".join(out).encode()


def xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=XZ_FILTERS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------------
# the devices

@dataclass
class Device:
    """One benign device and what it is made of."""

    device: str  # "<dataset>/<name>"
    dataset: str
    sources: list[Path]  # shared files, in time order
    out: str  # derived file(s) under data/, comma-separated when several
    addresses: list[str] = field(default_factory=list)
    mac: str = "-"
    identified_by: str = ""
    group: str = ""
    first: float = 0.0
    last: float = 0.0
    hours: float = 0.0
    flows: int = 0
    device_flows: int = 0


@dataclass
class Derived:
    """One file written under data/: where it came from and its bytes (uncompressed)."""

    path: str
    sources: list[Path]
    plain: bytes
    how: str


def _span_hours(flows: Iterable) -> tuple[float, float, float]:
    flows = list(flows)
    if not flows:
        return 0.0, 0.0, 0.0
    first = min(f.ts for f in flows)
    last = max(f.ts + f.duration for f in flows)
    return first, last, (last - first) / 3600.0


def pcap_span_hours(pcap: Path) -> tuple[float, float]:
    from edgebot.edge.pcapfile import PcapReader

    first = last = None
    with PcapReader(pcap) as reader:
        for _buf, packets in reader.batches():
            if first is None:
                first = packets[0][0]
            last = packets[-1][0]
    return float(first or 0.0), float(last or 0.0)


def _metered_device(dev: Device, pcaps: list[Path], mac: Optional[str]) -> Derived:
    """Meter a device's pcaps and find its addresses (from its MAC, or the MAC inferred when not given)."""
    sources: dict[str, Counter] = defaultdict(Counter)
    for pcap in pcaps:
        for m, ips in ethernet_sources(pcap).items():
            sources[m].update(ips)
    inferred = mac is None
    if mac is None:
        mac = infer_device_mac(sources)
        dev.identified_by = "non-router MAC with the most IP packets"
    else:
        dev.identified_by = "iot_sentinel/DEVICE_MACS.tsv"
    dev.mac = mac
    dev.addresses = device_addresses(sources, mac)
    flows = meter(pcaps)
    address_set = set(dev.addresses)
    dev.flows = len(flows)
    dev.device_flows = sum(f.orig_h in address_set for f in flows)
    spans = [pcap_span_hours(p) for p in pcaps]
    dev.first, dev.last = spans[0][0], spans[-1][1]
    dev.hours = sum(b - a for a, b in spans) / 3600.0
    originators = Counter(f.orig_h for f in flows if _is_local(f.orig_h))
    top = originators.most_common(1)[0][0] if originators else None
    log.info("%s: MAC %s, addresses %s, %d flows (%d device), top local originator %s", dev.device, mac,
             dev.addresses, dev.flows, dev.device_flows, top)
    if inferred and top is not None and top not in address_set:
        raise SystemExit(f"{dev.device}: inferred device {mac} is not the top flow originator ({top})")
    how = (f"metered with edgebot's FlowMeter (PcapSource defaults); {len(pcaps)} pcap(s) as one stream"
           if len(pcaps) > 1 else "metered with edgebot's FlowMeter (PcapSource defaults)")
    return Derived(dev.out, pcaps, conn_log(flows, address_set), how)


def _log_device(dev: Device, logs: Sequence[Path], address: str) -> None:
    """Fill in a device whose capture is a Zeek log (flows read from the source logs themselves)."""
    from edgebot.readers import open_flows

    dev.addresses = [address]
    dev.identified_by = "the capture's host: nearly every row originates there"
    flows, dev.hours = [], 0.0
    for path in logs:
        rows = list(open_flows(path, strict=True))
        dev.hours += _span_hours(rows)[2]
        flows += rows
    dev.flows = len(flows)
    dev.device_flows = sum(f.orig_h == address for f in flows)
    dev.first, dev.last, _ = _span_hours(flows)


def build(shared: Path) -> tuple[list[Device], list[Derived]]:
    """Every device and derived file (nothing written)."""
    devices: list[Device] = []
    derived: list[Derived] = []
    macs = {}
    for line in (shared / "iot_sentinel" / "DEVICE_MACS.tsv").read_text().splitlines()[1:]:
        name, mac, _ = line.split("\t")
        macs[name] = mac.lower()
    for name in sorted(macs, key=str.lower):
        pcaps = sorted((shared / "iot_sentinel" / name).glob("*.pcap"))
        dev = Device(f"iot-sentinel/{name}", "iot-sentinel", pcaps,
                     f"{OUT_DIR}/iot_sentinel/iot-sentinel_{name}.conn.log.labeled.xz")
        derived.append(_metered_device(dev, pcaps, macs[name]))
        devices.append(dev)
    for pcap in sorted((shared / "iotls").glob("*.pcap")):
        dev = Device(f"iotls/{pcap.stem}", "iotls", [pcap], f"{OUT_DIR}/iotls/iotls_{pcap.stem}.conn.log.labeled.xz")
        derived.append(_metered_device(dev, [pcap], None))
        devices.append(dev)
    nku = shared / "nku_lifecycle"
    camera = [nku / f"xiaobai_Y2camera_{part}.pcap" for part in ("setup", "idle_local", "idle_remote")]
    for name, pcaps in (("xiaobai-Y2camera", camera), ("xiaodu-plug", [nku / "xiaodu_plug.pcap"])):
        dev = Device(f"nku/{name}", "nku", pcaps, f"{OUT_DIR}/nku_lifecycle/nku_{name}.conn.log.labeled.xz")
        derived.append(_metered_device(dev, pcaps, None))
        devices.append(dev)
    # IoT-23 honeypot 7-1: the Somfy door lock (192.168.1.158), its labeled log and five Zeek re-runs
    honeypot = shared / "iot23"
    somfy = [Derived(f"{OUT_DIR}/iot23_honeypot_7-1/CTU-Honeypot-Capture-7-1.conn.log.labeled.xz",
                     [honeypot / "CTU-Honeypot-Capture-7-1.conn.log.labeled"],
                     (honeypot / "CTU-Honeypot-Capture-7-1.conn.log.labeled").read_bytes(), "xz copy (byte-identical)")]
    for i in range(2, 7):
        src = honeypot / "CTU-Honeypot-Capture-7-1-zeek-rerun" / f"Somfy-0{i}_conn.log"
        somfy.append(Derived(f"{OUT_DIR}/iot23_honeypot_7-1/CTU-Honeypot-Capture-7-1_Somfy-0{i}.conn.log.labeled.xz",
                             [src], label_plain_log(src.read_bytes()),
                             "columns label=Benign, det_label=device appended to every row (and to #fields/#types); "
                             "nothing else changed"))
    dev = Device("iot23/7-1-somfy-lock", "iot23", [d.sources[0] for d in somfy], ",".join(d.path for d in somfy))
    _log_device(dev, dev.sources, "192.168.1.158")
    devices.append(dev)
    derived += somfy
    sme = shared / "ctu_sme_11" / "2023-02-20.conn.log.labeled"
    sme_derived = Derived(f"{OUT_DIR}/ctu_sme_11/ctu-sme-11_2023-02-20.conn.log.labeled.xz", [sme],
                          sme.read_bytes(), "xz copy (byte-identical)")
    dev = Device("ctu-sme-11/192.168.1.109", "ctu-sme-11", [sme], sme_derived.path)
    _log_device(dev, [sme], "192.168.1.109")
    devices.append(dev)
    derived.append(sme_derived)
    for dev in devices:
        # devices that share a MAC (IoT Sentinel: the door sensor is set up through the D-Link hub, the Hue
        # switch through the Hue bridge) are one physical host: leave-device-out keeps them in one fold
        dev.group = f"{dev.dataset}/{dev.mac}" if dev.mac != "-" else dev.device
    return devices, derived


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


REGISTRY_COLUMNS = ("device", "dataset", "group", "mac", "identified_by", "addresses", "files", "first_seen",
                    "last_seen", "capture_hours", "flows", "device_flows", "licence")


def registry(devices: Sequence[Device]) -> bytes:
    lines = ["\t".join(REGISTRY_COLUMNS)]
    for d in devices:
        lines.append("\t".join((d.device, d.dataset, d.group, d.mac, d.identified_by, ",".join(d.addresses), d.out,
                                _iso(d.first), _iso(d.last), f"{d.hours:.4f}", str(d.flows), str(d.device_flows),
                                LICENCES[d.dataset])))
    return ("\n".join(lines) + "\n").encode()


ATTRIBUTION_BEGIN = "<!-- BEGIN benign_devices (generated by data/derive/meter_benign.py; do not edit by hand) -->"
ATTRIBUTION_END = "<!-- END benign_devices -->"


def attribution(derived: Sequence[Derived], compressed: dict[str, bytes], shared: Path) -> str:
    rows = [ATTRIBUTION_BEGIN, "",
            "| file in data/ | derived from (under the shared data folder; see its SOURCES.md for repo @ commit) "
            "| sha256 of the source(s) | how | sha256 of the derived file (uncompressed) | sha256 of the .xz |",
            "|---|---|---|---|---|---|"]
    for item in derived:
        srcs = ", ".join(str(p.relative_to(shared)) for p in item.sources)
        hashes = ", ".join(sha256(p.read_bytes()) for p in item.sources)
        rows.append(f"| {item.path} | {srcs} | {hashes} | {item.how} | {sha256(item.plain)} | "
                    f"{sha256(compressed[item.path])} |")
    rows += ["", ATTRIBUTION_END]
    return "\n".join(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", required=True, type=Path, help="the shared data folder (holds SOURCES.md)")
    ap.add_argument("--data", type=Path, default=DATA, help="the repository's data/ folder (default: this clone's)")
    ap.add_argument("--check", action="store_true", help="rebuild in memory and compare with the files in --data")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    shared, data = args.shared.resolve(), args.data.resolve()
    if not (shared / "iot_sentinel" / "DEVICE_MACS.tsv").exists():
        ap.error(f"{shared} does not look like the shared data folder (no iot_sentinel/DEVICE_MACS.tsv)")
    devices, derived = build(shared)
    compressed = {item.path: xz(item.plain) for item in derived}
    files = {**compressed, f"{OUT_DIR}/DEVICES.tsv": registry(devices)}
    if args.check:
        bad = [p for p, b in files.items() if not (data / p).exists() or (data / p).read_bytes() != b]
        for p in bad:
            print(f"differs: {p}")
        print(f"{len(files) - len(bad)} of {len(files)} files identical")
        return 1 if bad else 0
    for rel, blob in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(blob)
    section = attribution(derived, compressed, shared)
    att = data / "ATTRIBUTION.md"
    text = att.read_text()
    if ATTRIBUTION_BEGIN in text:
        head, rest = text.split(ATTRIBUTION_BEGIN, 1)
        text = head + section + rest.split(ATTRIBUTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    att.write_text(text)
    total = sum(len(b) for b in files.values())
    print(f"{len(devices)} devices, {len(files)} files, {total:,} bytes under {data / OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
