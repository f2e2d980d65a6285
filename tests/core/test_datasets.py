"""edgebot.datasets (the bundled data named once) and data/benign_devices (the derived benign world)."""

from __future__ import annotations

import importlib.util
import socket
import struct
import sys
from collections import Counter
from pathlib import Path

import pytest

from edgebot import datasets
from edgebot.bundle import sha256_file
from edgebot.errors import DataError
from edgebot.flow import BENIGN, UNKNOWN
from edgebot.readers import open_flows

REPO = Path(__file__).resolve().parents[2]
DERIVE = REPO / "data" / "derive" / "meter_benign.py"


@pytest.fixture(scope="module")
def derive():
    """The derivation script as a module (it is a script under data/, not part of the package)."""
    spec = importlib.util.spec_from_file_location("meter_benign", DERIVE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["meter_benign"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("meter_benign", None)


@pytest.fixture(scope="module")
def registry():
    return datasets.benign_devices()


# ---------------------------------------------------------------------------------------------- the root


def test_data_root_is_the_repo_data_folder(monkeypatch):
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    assert datasets.data_root() == REPO / "data"
    assert all(p.is_file() for p in datasets.iot23_training())
    assert all(p.is_file() for p in datasets.resolve(datasets.STRATOSPHERE + datasets.CICIDS2017 + datasets.IOT23_EVAL))
    assert all(p.is_file() for p in datasets.resolve(datasets.PCAPS.values()))
    assert (datasets.data_root() / datasets.ZEEK_TRACES).is_dir()


def test_env_override_and_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match=f"bundled data not found under {tmp_path}.*{datasets.ENV_VAR}"):
        datasets.data_root()
    with pytest.raises(DataError):
        datasets.DEFAULT_TRAINING  # noqa: B018 - the lazy attribute resolves under the override
    monkeypatch.setenv(datasets.ENV_VAR, str(REPO / "data"))
    assert datasets.DEFAULT_TRAINING == datasets.default_training(REPO / "data")


def test_a_broken_registry_is_a_one_line_data_error(tmp_path):
    (tmp_path / "iot23").mkdir()
    (tmp_path / datasets.IOT23_TRAINING[0]).write_bytes(b"")
    with pytest.raises(DataError, match="registry is missing"):
        datasets.benign_devices(tmp_path)
    (tmp_path / "benign_devices").mkdir()
    (tmp_path / datasets.DEVICES_TSV).write_text("device\tfiles\n")
    with pytest.raises(DataError, match="expected the columns device, dataset"):
        datasets.benign_devices(tmp_path)
    row = ["x/y", "x", "x/y", "-", "-", "10.0.0.1", "benign_devices/none.xz", "-", "-", "1", "1", "1", "-"]
    (tmp_path / datasets.DEVICES_TSV).write_text("\t".join(datasets.DEVICE_COLUMNS) + "\n" + "\t".join(row) + "\n")
    with pytest.raises(DataError, match=r"DEVICES.tsv:2: device x/y names missing files"):
        datasets.benign_devices(tmp_path)


# ------------------------------------------------------------------------------------------ the registry


def test_registry_holds_the_44_devices_of_issue_11(registry):
    assert len(registry) == 44
    assert Counter(d.dataset for d in registry.values()) == {
        "iot-sentinel": 31, "iotls": 9, "nku": 2, "iot23": 1, "ctu-sme-11": 1}
    # two MACs are shared by two IoT Sentinel folders each: one physical host, one group
    groups = Counter(d.group for d in registry.values())
    assert sorted(n for n in groups.values() if n > 1) == [2, 2]
    assert {d.device for d in registry.values() if groups[d.group] == 2} == {
        "iot-sentinel/D-LinkDoorSensor", "iot-sentinel/D-LinkHomeHub", "iot-sentinel/HueBridge",
        "iot-sentinel/HueSwitch"}
    files = [f for d in registry.values() for f in d.files]
    assert len(files) == len(set(files)) == 49  # no file belongs to two devices
    assert all("benign_devices" in f.parts for f in files)
    somfy = registry["iot23/7-1-somfy-lock"]
    assert len(somfy.files) == 6 and somfy.addresses == ("192.168.1.158",)
    assert registry["ctu-sme-11/192.168.1.109"].addresses == ("192.168.1.109",)
    assert len(registry["nku/xiaobai-Y2camera"].files) == 1  # three pcaps metered as one stream
    assert all(d.addresses and d.capture_hours > 0 and d.flows >= d.device_flows >= 0 for d in registry.values())


def test_default_training_is_iot23_plus_every_device_file(registry):
    training = datasets.default_training()
    assert training[:4] == datasets.iot23_training()
    assert training[4:] == tuple(f for d in registry.values() for f in d.files)
    assert datasets.device_of_file(training[-1]).device == list(registry)[-1]
    assert datasets.device_of_file(training[0]) is None


@pytest.fixture(scope="module")
def device_rows(registry):
    return {name: [r for f in dev.files for r in _read(f)] for name, dev in registry.items()}


def _read(path):
    reader = open_flows(path)
    rows = list(reader)
    assert reader.format == "iot23-labeled" and reader.rows_skipped == 0, path
    return rows


def test_every_device_file_reads_as_benign_flows_without_a_family(registry, device_rows):
    labels = Counter()
    for name, dev in registry.items():
        rows = device_rows[name]
        labels.update(r.label for r in rows)
        assert len(rows) == dev.flows, name
        assert sum(r.orig_h in dev.addresses for r in rows) == dev.device_flows, name
        assert all(r.family is None for r in rows), name
    # CTU-SME-11's Unknown rows are read (and never trained on); everything else is benign
    assert labels == {BENIGN: 8790, UNKNOWN: 328}
    assert sum(d.device_flows for d in registry.values()) == 8694


def test_roles_of_metered_rows_follow_the_device_addresses(registry, device_rows):
    for name, dev in registry.items():
        if dev.dataset not in ("iot-sentinel", "iotls", "nku"):
            continue
        for r in device_rows[name]:
            assert r.detailed_label == ("device" if r.orig_h in dev.addresses else "companion"), (name, r)


def test_scenarios_keep_each_device_apart(registry):
    scenarios = {name: {open_flows(f).scenario for f in dev.files} for name, dev in registry.items()}
    assert scenarios["iot23/7-1-somfy-lock"] == {"7-1"}  # six files, one IoT-23 capture
    assert all(len(s) == 1 for s in scenarios.values())
    assert len({next(iter(s)) for s in scenarios.values()}) == 44


def test_attribution_lists_every_derived_file_with_its_hash(registry):
    text = (REPO / "data" / "ATTRIBUTION.md").read_text()
    for dev in registry.values():
        for f in dev.files:
            rel = f.relative_to(REPO / "data").as_posix()
            (line,) = [x for x in text.splitlines() if x.startswith(f"| {rel} |")]
            assert sha256_file(f) in line, rel
    assert sum(f.stat().st_size for f in (REPO / "data" / "benign_devices").rglob("*")) < 2_000_000


# ------------------------------------------------------------------------- the derivation, on crafted data

DEVICE_MAC, ROUTER_MAC, PHONE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_frame(src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00" + ip + udp


def _pcap(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in packets:
        out.append(struct.pack("<IIII", int(ts), int(round((ts % 1) * 1e6)), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


@pytest.fixture
def crafted_pcap(tmp_path):
    t = 1_600_000_000.0
    packets = [
        (t, _udp_frame(DEVICE_MAC, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", 68, 67, b"d" * 240)),
        (t + 1, _udp_frame(DEVICE_MAC, ROUTER_MAC, "10.0.0.5", "10.0.0.1", 40000, 53, b"q" * 30)),
        (t + 1.01, _udp_frame(ROUTER_MAC, DEVICE_MAC, "10.0.0.1", "10.0.0.5", 53, 40000, b"r" * 60)),
        (t + 2, _udp_frame(DEVICE_MAC, ROUTER_MAC, "10.0.0.5", "93.184.216.34", 40001, 123, b"n" * 48)),
        (t + 2.2, _udp_frame(ROUTER_MAC, DEVICE_MAC, "93.184.216.34", "10.0.0.5", 123, 40001, b"n" * 48)),
        (t + 3, _udp_frame(PHONE_MAC, DEVICE_MAC, "10.0.0.7", "10.0.0.5", 50000, 9999, b"p" * 10)),
    ]
    return _pcap(tmp_path / "crafted.pcap", packets)


def test_device_host_from_the_ethernet_source_mac(derive, crafted_pcap):
    sources = derive.ethernet_sources(crafted_pcap)
    assert derive.router_macs(sources) == {ROUTER_MAC}  # it sends from an Internet address
    assert derive.infer_device_mac(sources) == DEVICE_MAC  # the non-router MAC with the most IP packets
    assert derive.device_addresses(sources, DEVICE_MAC) == ["0.0.0.0", "10.0.0.5"]
    sources[PHONE_MAC]["10.0.0.5"] += 1  # a second, non-router MAC using the device's address: refuse
    with pytest.raises(SystemExit, match="were used by"):
        derive.device_addresses(sources, DEVICE_MAC)


def test_metered_flows_round_trip_through_the_labeled_log(derive, crafted_pcap, tmp_path):
    from edgebot.edge.sources.pcap import PcapSource
    from edgebot.features import featurize

    direct = sorted(PcapSource(crafted_pcap), key=lambda f: (f.ts, f.uid))
    assert len(direct) == 4  # DHCP, DNS, NTP, the phone's probe
    log = tmp_path / "crafted.conn.log.labeled.xz"
    log.write_bytes(derive.xz(derive.conn_log(direct, {"0.0.0.0", "10.0.0.5"})))
    reader = open_flows(log, strict=True)
    back = list(reader)
    assert reader.format == "iot23-labeled" and reader.scenario == "crafted"
    assert [(r.orig_h, r.resp_h, r.resp_p, r.proto, r.conn_state, r.orig_pkts, r.resp_ip_bytes, r.uid) for r in back] \
        == [(f.orig_h, f.resp_h, f.resp_p, f.proto, f.conn_state, f.orig_pkts, f.resp_ip_bytes, f.uid) for f in direct]
    assert featurize(back) == pytest.approx(featurize(direct), abs=1e-6)
    assert [r.detailed_label for r in back] == ["device", "device", "device", "companion"]
    assert {r.label for r in back} == {BENIGN} and all(r.family is None for r in back)
    # single-packet flows have no duration and unset byte counts, as Zeek writes them
    text = derive.conn_log(direct, set()).decode().splitlines()
    phone = next(line for line in text if "\t10.0.0.7\t" in line).split("\t")
    assert phone[8:11] == ["-", "-", "-"] and len(phone) == 23
    assert derive.conn_log(direct, set()) == derive.conn_log(list(reversed(direct)), set())  # deterministic


def test_a_plain_zeek_log_gets_label_columns(derive, tmp_path):
    plain = (b"#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
             b"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n"
             b"1562164876.663814\tCx\t192.168.1.158\t4096\t192.168.1.1\t53\tudp\n#close\t2019\n")
    path = tmp_path / "somfy.conn.log.labeled"
    path.write_bytes(derive.label_plain_log(plain))
    (row,) = list(open_flows(path, strict=True))
    assert (row.label, row.detailed_label, row.family, row.orig_h) == (BENIGN, "device", None, "192.168.1.158")
