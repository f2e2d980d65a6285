"""Flow readers on the real bundled data: exact row and label counts, formats, quirks and errors."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from edgebot import datasets
from edgebot.errors import DataError, DataFormatError, EdgebotError
from edgebot.flow import BACKGROUND, BENIGN, MALICIOUS, UNKNOWN, CicFlowRecord, FlowRecord
from edgebot.readers import (
    FORMATS,
    IOT23_SCENARIOS,
    open_flows,
    read_flows,
    scenario_family,
)
from edgebot.readers.iot23csv import rebuild_labels

DATA = datasets.data_root()

IOT23_34 = datasets.iot23("34-1")
IOT23_4 = datasets.iot23("4-1")
IOT23_5 = datasets.iot23("5-1")
IOT23_8_CSV = datasets.iot23("8-1")
IOT23_44_CSV = datasets.iot23("44-1")
STRATO_008 = datasets.path(datasets.STRATOSPHERE_LOGS["008"])
STRATO_010 = datasets.path(datasets.STRATOSPHERE_LOGS["010"])
STRATO_011 = datasets.path(datasets.STRATOSPHERE_LOGS["011"])
SLIPS_18 = datasets.path(datasets.STRATOSPHERE_LOGS["slips-18"])
CIC_DDOS = datasets.path(datasets.CICIDS2017_CSVS["ddos"])
CIC_WESTERN = datasets.path(datasets.CICIDS2017_CSVS["western"])

# Every flow file in data/ with the counts SOURCES.md measured:
# (path, format, scenario, rows, labels, detailed labels, families)
EXPECTED = [
    (
        IOT23_34, "iot23-labeled", "34-1", 23145,
        {MALICIOUS: 21222, BENIGN: 1923},
        {"DDoS": 14394, "C&C": 6706, "PartOfAHorizontalPortScan": 122},
        {"Mirai": 21222},
    ),
    (IOT23_4, "iot23-labeled", "4-1", 452, {BENIGN: 452}, {}, {}),
    (IOT23_5, "iot23-labeled", "5-1", 1374, {BENIGN: 1374}, {}, {}),
    (
        IOT23_8_CSV, "iot23-csv", "8-1", 10403,
        {BENIGN: 2181, MALICIOUS: 8222}, {"C&C": 8222}, {"Hakai": 8222},
    ),
    (
        IOT23_44_CSV, "iot23-csv", "44-1", 237,
        {BENIGN: 211, MALICIOUS: 26}, {"C&C": 14, "C&C-FileDownload": 11, "DDoS": 1}, {"Mirai": 26},
    ),
    (
        STRATO_008, "iot23-labeled", "008-zeek-mixed", 5663,
        {MALICIOUS: 4201, BENIGN: 1402, BACKGROUND: 60},
        {"External-Attack-to-Device": 4201, "Microsoft": 652, "ESET": 604, "Dropbox": 135, "Cert-Validation": 11},
        {"External-Attack-to-Device": 4201},
    ),
    (
        STRATO_010, "iot23-labeled", "010-zeek-mixed", 5347,
        {MALICIOUS: 3373, BENIGN: 1937, BACKGROUND: 37},
        {"External-Attack-to-Device": 3373, "Microsoft": 245, "Cert-Validation": 3},  # + 1689 "(empty)"
        {"External-Attack-to-Device": 3373},
    ),
    (
        STRATO_011, "iot23-labeled", "011-zeek-mixed", 9048,
        {BENIGN: 4771, MALICIOUS: 3951, BACKGROUND: 326},
        {"External-Attack-to-Device": 3951, "Microsoft": 111, "Cert-Validation": 8},  # + 4652 "(empty)"
        {"External-Attack-to-Device": 3951},
    ),
    (
        SLIPS_18, "iot23-labeled", "slips-test18-ctu-sme-11-win", 766,
        {MALICIOUS: 719, BENIGN: 44, UNKNOWN: 3},
        None,  # long benign labels; checked separately
        {"RemcosRAT": 719},
    ),
    (
        CIC_DDOS, "cicflowmeter", "MachineLearningCVE_Friday-WorkingHours-Afternoon-DDos_first9998rows", 9998,
        {BENIGN: 9998}, {}, {},
    ),
    (
        CIC_WESTERN, "cicflowmeter", "WesternOC2_CICIDS2017_sample_subset6311", 6311,
        {MALICIOUS: 6084, BENIGN: 227},
        {"Bot": 1966, "WebAttack": 2180, "DoS": 952, "BruteForce": 553, "PortScan": 397, "Infiltration": 36},
        {"Bot": 1966, "WebAttack": 2180, "DoS": 952, "BruteForce": 553, "PortScan": 397, "Infiltration": 36},
    ),
]


def _read_all(path: Path, **kwargs):
    reader = open_flows(path, **kwargs)
    return reader, list(reader)


def _plain_bytes(path: Path) -> bytes:
    return lzma.decompress(path.read_bytes())


def test_every_flow_file_in_data_is_pinned():
    # data/benign_devices/ (derived flow records) is pinned by tests/core/test_datasets.py
    flow_files = {p for p in DATA.rglob("*.xz") if "pcaps" not in p.parts and "benign_devices" not in p.parts}
    assert flow_files == {entry[0] for entry in EXPECTED}


@pytest.mark.parametrize("path, fmt, scenario, rows, labels, detailed, families", EXPECTED, ids=[e[0].name for e in EXPECTED])
def test_real_file_counts(path, fmt, scenario, rows, labels, detailed, families):
    reader, records = _read_all(path)
    assert reader.format == fmt
    assert reader.scenario == scenario
    assert reader.rows_read == rows == len(records)
    assert reader.rows_skipped == 0 and not reader.skipped_reasons and not reader.skipped_examples
    assert reader.data_rows == rows and reader.done
    assert Counter(r.label for r in records) == labels
    if detailed is not None:
        assert Counter(r.detailed_label for r in records if r.detailed_label) == detailed
    assert Counter(r.family for r in records if r.family) == families
    # family only on malicious rows
    assert all((r.family is not None) == (r.label == MALICIOUS) for r in records)
    assert all(r.scenario == scenario and r.source == str(path) for r in records)
    record_type = CicFlowRecord if fmt == "cicflowmeter" else FlowRecord
    assert all(type(r) is record_type for r in records)
    lines = [r.line for r in records]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)


def test_slips_long_labels_give_family_and_keep_detail():
    _, records = _read_all(SLIPS_18)
    malicious = {r.detailed_label for r in records if r.label == MALICIOUS}
    assert malicious == {"From_malicious-To_malicious-Malware_data_exfiltration-RemcosRAT"}
    benign = Counter(r.detailed_label for r in records if r.label == BENIGN)
    assert benign["From_benign-To_benign-Device_chromecast_tv_assistant"] == 20
    assert sum(benign.values()) == 44
    assert all(r.detailed_label is None for r in records if r.label == UNKNOWN)  # "(empty)"


def test_zeek_fields_of_the_new_layout():
    _, records = _read_all(IOT23_34)
    first, last = records[0], records[-1]
    assert first == FlowRecord(
        ts=1545403816.962094, orig_h="192.168.1.195", orig_p=41040, resp_h="185.244.25.235", resp_p=80,
        proto="tcp", duration=3.139211, orig_bytes=0, resp_bytes=0, conn_state="S0", missed_bytes=0,
        history="S", orig_pkts=3, orig_ip_bytes=180, resp_pkts=0, resp_ip_bytes=0, service="",
        uid="CrDn63WjJEmrWGjqf", label=BENIGN, detailed_label=None, family=None, scenario="34-1",
        source=str(IOT23_34), line=9,
    )
    # "-" for duration / bytes is unset -> 0
    assert (last.uid, last.duration, last.orig_bytes, last.resp_bytes, last.resp_p) == ("Ct2Yhy4d33oL3yyZY9", 0.0, 0, 0, 123)
    assert {r.proto for r in records} <= {"tcp", "udp", "icmp"}


def test_old_layout_splits_the_packed_label_field():
    _, records = _read_all(IOT23_4)
    first = records[0]
    assert (first.orig_h, first.resp_h, first.resp_p, first.proto, first.label, first.detailed_label) == (
        "192.168.1.132", "216.239.35.4", 123, "udp", BENIGN, None)
    assert (first.orig_pkts, first.orig_ip_bytes, first.resp_pkts, first.resp_ip_bytes) == (1, 76, 1, 76)
    assert {r.orig_h for r in records} == {"192.168.1.132"}


def test_iot23_csv_rebuilds_detailed_labels():
    _, records = _read_all(IOT23_44_CSV)
    assert records[0].detailed_label == "C&C-FileDownload" and records[0].label == MALICIOUS
    assert records[0].resp_bytes == 171750 and records[0].missed_bytes == 11584
    assert records[1].detailed_label == "C&C" and records[1].family == "Mirai"
    assert rebuild_labels("Malicious   C&C", "FileDownload") == ("Malicious", "C&C-FileDownload")
    assert rebuild_labels("Malicious   C&C", "") == ("Malicious", "C&C")
    assert rebuild_labels("Malicious", "C&C") == ("Malicious", "C&C")
    assert rebuild_labels("Benign", "-") == ("Benign", "-")


def test_cicflowmeter_header_quirks_crlf_and_infinity():
    reader, records = _read_all(CIC_DDOS)
    names = reader.feature_names
    assert len(names) == 78 and names[0] == "Destination Port"
    assert names.count("Fwd Header Length") == 1 and "Fwd Header Length.1" in names
    assert all(name == name.strip() for name in names)
    assert all(r.feature_names == names and len(r.values) == 78 for r in records)
    inf_rows = [r for r in records if not all(math.isfinite(v) for v in r.values)]
    assert len(inf_rows) == 7  # Infinity / NaN kept as float values
    first = records[0]
    assert first.values[:3] == (54865.0, 3.0, 2.0) and first.label == BENIGN and first.line == 2


def test_western_subset_reads_empty_cell_as_nan():
    reader, records = _read_all(CIC_WESTERN)
    assert len(reader.feature_names) == 77 and "Fwd Header Length.1" in reader.feature_names
    row = next(r for r in records if r.line == 6065)
    values = dict(zip(reader.feature_names, row.values))
    assert math.isnan(values["Flow Bytes/s"]) and values["Flow Packets/s"] == math.inf
    assert row.detailed_label == "DoS" and row.family == "DoS"


def _zeek_json_line(record: FlowRecord, nested: bool = False, iso: bool = False) -> str:
    """A record as Zeek's JSON writer prints it: unset fields omitted, numbers as numbers."""
    obj = {"ts": record.ts, "uid": record.uid}
    if iso:
        import datetime as dt

        obj["ts"] = dt.datetime.fromtimestamp(record.ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    endpoints = {"orig_h": record.orig_h, "orig_p": record.orig_p, "resp_h": record.resp_h, "resp_p": record.resp_p}
    if nested:
        obj["id"] = endpoints
    else:
        obj.update({f"id.{k}": v for k, v in endpoints.items()})
    obj["proto"] = record.proto
    if record.service:
        obj["service"] = record.service
    if record.duration:
        obj["duration"] = record.duration
    for name in ("orig_bytes", "resp_bytes"):
        if getattr(record, name):
            obj[name] = getattr(record, name)
    obj.update(conn_state=record.conn_state, missed_bytes=record.missed_bytes, history=record.history,
               orig_pkts=record.orig_pkts, orig_ip_bytes=record.orig_ip_bytes, resp_pkts=record.resp_pkts,
               resp_ip_bytes=record.resp_ip_bytes)
    return json.dumps(obj)


def _same_flow(a: FlowRecord, b: FlowRecord) -> bool:
    fields = ("orig_h", "orig_p", "resp_h", "resp_p", "proto", "duration", "orig_bytes", "resp_bytes",
              "conn_state", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts",
              "resp_ip_bytes", "service", "uid")
    return all(getattr(a, f) == getattr(b, f) for f in fields) and abs(a.ts - b.ts) < 1e-5


@pytest.mark.parametrize("nested, iso", [(False, False), (True, True)])
def test_zeek_json_log(tmp_path, nested, iso):
    _, source = _read_all(IOT23_34)
    rows = source[:300]
    path = tmp_path / "conn.json"
    path.write_text("".join(_zeek_json_line(r, nested, iso) + "\n" for r in rows))
    reader, records = _read_all(path)
    assert reader.format == "zeek-json" and reader.rows_read == 300 and reader.rows_skipped == 0
    assert all(_same_flow(a, b) for a, b in zip(rows, records))
    assert all(r.label is None for r in records)
    assert records[5].line == 6


def test_zeek_json_labels_are_read(tmp_path):
    lines = [
        json.dumps({"ts": 1.5, "id.orig_h": "10.0.0.1", "id.orig_p": 1, "id.resp_h": "10.0.0.2", "id.resp_p": 23,
                    "proto": "tcp", "conn_state": "S0", "label": "Malicious", "detailed-label": "C&C"}),
        json.dumps({"ts": 2.5, "id.orig_h": "10.0.0.1", "id.orig_p": 2, "id.resp_h": "10.0.0.2", "id.resp_p": 23,
                    "proto": "tcp", "conn_state": "S0", "label": "benign"}),
        json.dumps({"ts": 3.5, "id.orig_h": "10.0.0.1", "id.orig_p": "x", "id.resp_h": "10.0.0.2",
                    "id.resp_p": 23, "proto": "tcp", "conn_state": "S0"}),
        "[1, 2]",
    ]
    path = tmp_path / "labeled.json"
    path.write_text("\n".join(lines) + "\n")
    reader, records = _read_all(path, family="Mirai")
    assert [(r.label, r.detailed_label, r.family) for r in records] == [(MALICIOUS, "C&C", "Mirai"), (BENIGN, None, None)]
    assert reader.rows_skipped == 2 and reader.skipped_reasons == {"bad id.orig_p": 1, "invalid JSON": 1}
    assert [line for line, _ in reader.skipped_examples] == [3, 4]


def test_plain_unlabeled_zeek_tsv(tmp_path):
    """A conn.log as Zeek writes it (no label columns), derived from the real 34-1 rows."""
    text = _plain_bytes(IOT23_34).decode()
    out = []
    for line in text.splitlines()[:400]:
        parts = line.split("\t")
        if line.startswith("#fields") or line.startswith("#types") or not line.startswith("#"):
            parts = parts[:-2]
        out.append("\t".join(parts))
    path = tmp_path / "conn.log"
    path.write_text("\n".join(out) + "\n#close\t2019-03-15-14-50-54\n")
    reader, records = _read_all(path)
    _, labeled = _read_all(IOT23_34)
    assert reader.format == "zeek-tsv" and reader.rows_read == 392 and reader.rows_skipped == 0
    assert all(r.label is None and r.family is None and r.detailed_label is None for r in records)
    assert all(_same_flow(a, b) for a, b in zip(labeled, records))
    assert reader.scenario == "conn"


@pytest.mark.parametrize("compress, name", [
    (gzip.compress, "a.log.gz"),
    (gzip.compress, "gzip-named-as.xz"),  # magic bytes decide, not the name
    (bz2.compress, "a.log.bz2"),
    (lambda data: data, "plain.log.gz"),
])
def test_compression_is_transparent(tmp_path, compress, name):
    plain = _plain_bytes(IOT23_4)
    path = tmp_path / name
    path.write_bytes(compress(plain))
    reader, records = _read_all(path)
    _, reference = _read_all(IOT23_4)
    assert reader.rows_read == 452 and reader.format == "iot23-labeled"
    assert [(r.uid, r.ts, r.label) for r in records] == [(r.uid, r.ts, r.label) for r in reference]


def test_crlf_line_ends(tmp_path):
    path = tmp_path / "CTU-Honeypot-Capture-4-1.conn.log.labeled"
    path.write_bytes(_plain_bytes(IOT23_4).replace(b"\n", b"\r\n"))
    reader, records = _read_all(path)
    _, reference = _read_all(IOT23_4)
    assert reader.rows_read == 452 and reader.rows_skipped == 0
    assert records[0].detailed_label is None and records[0].label == BENIGN
    assert [r.history for r in records] == [r.history for r in reference]


def test_malformed_row_is_counted_with_its_line(tmp_path, caplog):
    lines = _plain_bytes(IOT23_4).decode().split("\n")
    lines.insert(20, "1540469302.5\tCxyz\t192.168.1.132\tnot-a-port")  # becomes line 21
    lines.insert(30, lines[30].replace("\tudp\t", "\tudp\t").replace("1540", "x540", 1))  # bad ts, line 31
    path = tmp_path / "broken.conn.log.labeled"
    path.write_text("\n".join(lines))
    with caplog.at_level(logging.WARNING, logger="edgebot.readers"):
        reader, records = _read_all(path)
    assert reader.rows_read == 452 and reader.rows_skipped == 2 and reader.data_rows == 454
    assert reader.skipped_reasons == {"wrong number of fields": 1, "bad ts": 1}
    assert [line for line, _ in reader.skipped_examples] == [21, 31]
    assert "4 fields, expected 21" in reader.skipped_examples[0][1]
    assert f"{path}:21:" in caplog.text and f"{path}:31:" in caplog.text
    with pytest.raises(DataFormatError, match=rf"^{re.escape(str(path))}:21: 4 fields, expected 21"):
        list(open_flows(path, strict=True))


def test_rows_skipped_logging_is_rate_limited(tmp_path, caplog):
    text = _plain_bytes(IOT23_4).decode() + "garbage\n" * 50
    path = tmp_path / "noisy.log"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="edgebot.readers"):
        reader, _ = _read_all(path)
    assert reader.rows_skipped == 50 and len(reader.skipped_examples) == 20
    assert len(caplog.records) < 10  # 5 rows, one "no longer logged", one summary


def test_overlong_line_is_skipped_not_loaded(tmp_path):
    lines = _plain_bytes(IOT23_4).decode().split("\n")
    lines.insert(10, "1" * (3 << 20))
    path = tmp_path / "long.log"
    path.write_text("\n".join(lines))
    reader, _ = _read_all(path)
    assert reader.rows_read == 452 and reader.skipped_reasons == {"line too long": 1}
    assert reader.skipped_examples[0][0] == 11


def test_concatenated_logs_switch_layout(tmp_path):
    path = tmp_path / "two.log"
    path.write_bytes(_plain_bytes(IOT23_34) + _plain_bytes(IOT23_4))
    reader, records = _read_all(path)
    assert reader.rows_read == 23145 + 452 and reader.rows_skipped == 0


def test_truncated_xz_raises_clear_error(tmp_path):
    path = tmp_path / "cut.log.xz"
    data = IOT23_34.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    reader = open_flows(path)
    with pytest.raises(DataFormatError, match="corrupt or truncated after line"):
        list(reader)
    assert reader.rows_read > 1000 and not reader.done


def _png_bytes() -> bytes:
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


NOT_FLOW_FILES = [
    ("image.png", _png_bytes(), "it is a PNG image"),
    ("notes.txt", b"Dear diary,\nthe gateway was quiet today.\n", "first line 'Dear diary,'"),
    ("empty.log", b"", "the file is empty"),
    ("dns.log", b"#separator \\x09\n#path\tdns\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tquery\n", "a Zeek 'dns' log"),
    ("half.log", b"#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tproto\n1\tC\t1.2.3.4\ttcp\n", "#fields has no id.orig_p"),
    ("flows.json", b'{"src_ip": "1.2.3.4", "dest_ip": "5.6.7.8"}\n', "without the conn log keys"),
    ("table.csv", b"a,b,c\n1,2,3\n", "first line 'a,b,c'"),
    ("binary.bin", b"\x01\x02\x00\x03" * 100, "binary data"),
]


@pytest.mark.parametrize("name, content, why", NOT_FLOW_FILES, ids=[n for n, _, _ in NOT_FLOW_FILES])
def test_not_a_flow_file(tmp_path, name, content, why):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as info:
        open_flows(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a Zeek conn log or CICFlowMeter CSV (")
    assert why in message and message.endswith(")") and "\n" not in message


@pytest.mark.parametrize("path", sorted(DATA.rglob("*.pcap*")) + sorted(DATA.rglob("*.md")), ids=lambda p: p.name)
def test_other_files_in_data_are_rejected(path):
    with pytest.raises(DataFormatError, match=r": not a Zeek conn log or CICFlowMeter CSV \("):
        open_flows(path)


def test_pcap_error_says_what_to_do():
    pcap = DATA / "pcaps" / "zeek_traces" / "zeek_mqtt.pcap"
    with pytest.raises(DataFormatError, match="pcap capture; meter it with edgebot run --pcap"):
        open_flows(pcap)


def test_missing_file_is_an_edgebot_error(tmp_path):
    with pytest.raises(EdgebotError, match="cannot open"):
        open_flows(tmp_path / "nope.log")


def test_scenario_family_from_names():
    assert scenario_family("x/CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz") == ("34-1", "Mirai")
    assert scenario_family("CTU-IoT-Malware-Capture-8-1conn.log.labeled.csv") == ("8-1", "Hakai")
    assert scenario_family("CTU-IoT-Malware-Capture-44-1/bro/conn.log.labeled") == ("44-1", "Mirai")
    assert scenario_family("CTU-IoT-Malware-Capture-7-1.log") == ("7-1", "Mirai")  # Linux.Mirai
    assert scenario_family("CTU-Honeypot-Capture-7-1.log") == ("7-1", None)  # benign Somfy
    assert scenario_family("CTU-IoT-Malware-Capture-60-1.log")[1] == "Gafgyt"
    assert scenario_family("008-zeek-mixed.conn.log.labeled.xz") == ("008-zeek-mixed", None)
    assert scenario_family("slips-test18-ctu-sme-11-win.conn.log.labeled") == ("slips-test18-ctu-sme-11-win", None)
    assert scenario_family("Friday.pcap_ISCX.csv.gz") == ("Friday.pcap_ISCX", None)
    assert len([s for s in IOT23_SCENARIOS.values() if s.family]) == 20
    assert len(IOT23_SCENARIOS) == 23


def test_family_override_only_touches_malicious_rows():
    reader, records = _read_all(IOT23_34, family="MiraiVariantX")
    assert Counter(r.family for r in records) == {"MiraiVariantX": 21222, None: 1923}


def test_read_flows_with_family_map_and_no_mixing():
    records, readers = read_flows([IOT23_44_CSV, IOT23_4], families={IOT23_44_CSV.name: "Other"})
    assert len(records) == 237 + 452 and [r.rows_read for r in readers] == [237, 452]
    assert Counter(r.family for r in records if r.family) == {"Other": 26}
    with pytest.raises(DataError, match="cannot mix CICFlowMeter CSVs"):
        read_flows([IOT23_44_CSV, CIC_WESTERN])


def test_each_pass_rereads_and_resets_counters():
    reader = open_flows(IOT23_44_CSV)
    assert len(list(reader)) == 237
    assert len(list(reader)) == 237 and reader.rows_read == 237


def test_format_names_are_the_documented_ones():
    assert {entry[1] for entry in EXPECTED} < set(FORMATS)


def test_readers_import_no_heavy_libraries():
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'sklearn', 'pandas'): sys.modules[name] = None\n"
        "import edgebot.readers\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn', 'pandas') and sys.modules[m] is not None]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reading_streams_in_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "big.log"
    path.write_bytes(_plain_bytes(IOT23_34) * 2)  # 5.9 MB, two concatenated logs
    reader = open_flows(path)
    tracemalloc.start()
    try:
        rows = sum(1 for _ in reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 2 * 23145
    assert peak < 1_000_000  # bytes: a few lines at a time, never the file


def test_parse_line_for_followers():
    from edgebot.readers import MalformedRow

    reader = open_flows(IOT23_4)
    lines = _plain_bytes(IOT23_4).decode().split("\n")
    assert all(reader.parse_line(line, n) is None for n, line in enumerate(lines[:8], 1))
    record = reader.parse_line(lines[8], 9)
    assert record.orig_h == "192.168.1.132" and record.line == 9 and record.label == BENIGN
    with pytest.raises(MalformedRow) as info:
        reader.parse_line("1.0\tC\t1.2.3.4", 10)
    assert info.value.reason == "wrong number of fields"
