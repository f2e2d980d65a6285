"""The EVE sink (``--eve FILE``): Suricata-EVE ``alert`` records, checked against Suricata's own schema.

The schema below is written from Suricata's EVE schema (``etc/schema.json`` in OISF/suricata, read at
commit 0035673208e7d3a1d73bd2f18e03a69e78fbc4ba): the types of the top-level fields an alert record
carries, the timestamp pattern, the ``alert`` object (closed: ``additionalProperties: false``) and its
``metadata``. Suricata's schema is closed at the top level too; edgebot's records add exactly one key,
``edgebot``, so a record without it must pass the closed schema as it is.

Incidents come from the real tracker over the first flows of the bundled Mirai 34-1 Zeek log, scored
by their own labels (``tests/incident_samples.py``: the format is under test here, not the model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import pytest

from edgebot.edge.config import load_config
from edgebot.edge.sinks.base import sinks_from_config
from edgebot.edge.sinks.eve import SIGNATURES, EveSink, eve_flow_id, eve_record
from edgebot.errors import SinkError

from fixtures_core import PCAP_MIRAI
from incident_samples import real_incidents

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (edgebot[dev])")

_STR = {"type": "string"}
_INT = {"type": "integer"}
_STRS = {"type": "array", "items": _STR}

#: Suricata's own schema for the fields of an alert record (closed, as upstream).
SURICATA_ALERT = {
    "type": "object",
    "required": ["timestamp", "event_type"],  # the two `"optional": false` keys upstream
    "properties": {
        "timestamp": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+[+\-]\d+$"},
        "flow_id": _INT, "event_type": _STR, "community_id": _STR, "src_ip": _STR, "src_port": _INT,
        "dest_ip": _STR, "dest_port": _INT, "proto": _STR, "app_proto": _STR, "pcap_cnt": _INT, "tx_id": _INT,
        "alert": {
            "type": "object",
            "properties": {
                "action": _STR, "category": _STR, "gid": _INT, "rev": _INT, "rule": _STR, "severity": _INT,
                "signature": _STR, "signature_id": _INT, "xff": _STR,
                "metadata": {"type": "object", "additionalProperties": False, "properties": {
                    k: _STRS for k in ("affected_product", "attack_target", "created_at", "deployment",
                                       "signature_severity", "tag", "updated_at")}},
                "source": {"type": "object", "properties": {"ip": _STR}, "additionalProperties": False},
                "target": {"type": "object", "properties": {"ip": _STR}, "additionalProperties": False},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

#: What edgebot promises on top: the fields SIEM recipes rely on, and the incident under "edgebot".
EDGEBOT_ALERT = {
    "allOf": [{**SURICATA_ALERT, "properties": {**SURICATA_ALERT["properties"], "edgebot": {"type": "object"}}}],
    "required": ["timestamp", "flow_id", "event_type", "src_ip", "alert", "edgebot"],
    "properties": {
        "event_type": {"const": "alert"},
        "flow_id": {"type": "integer", "minimum": 1, "maximum": 2**51 - 1},
        "alert": {"required": ["action", "gid", "signature", "signature_id", "rev", "category", "severity"],
                  "properties": {"severity": {"minimum": 1, "maximum": 3},
                                 "signature_id": {"minimum": 1000000, "maximum": 1999999}}},
        "edgebot": {"required": ["incident_id", "type", "host", "score", "severity", "first_seen", "last_seen",
                                 "flows", "rules", "peers", "gateway_id"],
                    "properties": {"type": {"enum": ["new", "update"]}}},
    },
}


_SURICATA = jsonschema.Draft202012Validator(SURICATA_ALERT)
_EDGEBOT = jsonschema.Draft202012Validator(EDGEBOT_ALERT)


def test_the_schemas_are_valid_json_schemas():
    for schema in (SURICATA_ALERT, EDGEBOT_ALERT):
        jsonschema.Draft202012Validator.check_schema(schema)


def _check(record: dict) -> None:
    _EDGEBOT.validate(record)
    _SURICATA.validate({k: v for k, v in record.items() if k != "edgebot"})


@pytest.fixture(scope="module")
def incidents() -> list[dict]:
    found = real_incidents()
    assert {m["type"] for m in found} >= {"new", "update", "end"}, "the capture must give every message type"
    return found


def test_records_of_real_incidents_pass_the_suricata_schema(incidents, tmp_path):
    path = tmp_path / "eve.json"
    with EveSink(path, fsync=False) as sink:  # fsync per record is slow on shared disks; one test below keeps it
        for message in incidents:
            sink.publish_incident(message)
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    wanted = [m for m in incidents if m["type"] in ("new", "update")]
    assert len(records) == len(wanted) and sink.stats()["skipped"] == len(incidents) - len(wanted)
    for record, message in zip(records, wanted):
        _check(record)
        assert record["edgebot"] == json.loads(json.dumps(message))
        assert record["src_ip"] == message["host"] and record["flow_id"] == eve_flow_id(message["incident_id"])
        assert record["alert"]["signature_id"] in {sid for sid, _, _ in SIGNATURES.values()}
    # real flows give a real Community ID and a peer with port and protocol
    assert all(r["community_id"].startswith("1:") for r in records)
    assert all(r["proto"] in ("TCP", "UDP", "ICMP") and 0 <= r["dest_port"] <= 65535 for r in records)
    # one incident, one flow_id across its new and updates
    by_incident: dict[str, set[int]] = {}
    for r in records:
        by_incident.setdefault(r["edgebot"]["incident_id"], set()).add(r["flow_id"])
    assert all(len(ids) == 1 for ids in by_incident.values())
    assert len({next(iter(ids)) for ids in by_incident.values()}) == len(by_incident)


def test_the_schema_check_can_fail(incidents):
    """The checks catch what Suricata's schema forbids (else passing them would mean nothing)."""
    good = eve_record(next(m for m in incidents if m["type"] == "new"))
    _check(good)
    broken = [
        {**good, "timestamp": "2018-12-21 15:51:02"},              # not Suricata's timestamp format
        {**good, "flow_id": "123"},                                # a string
        {**good, "dest_port": "6667"},
        {**good, "alert": {**good["alert"], "severity": "high"}},  # severity is an integer
        {**good, "alert": {**good["alert"], "score": 0.9}},        # alert is closed
        {**good, "score": 0.9},                                    # the top level is closed
    ]
    for record in broken:
        with pytest.raises(jsonschema.ValidationError):
            _check(record)


def test_end_messages_and_stats_are_not_written(incidents, tmp_path):
    path = tmp_path / "eve.json"
    with EveSink(path) as sink:  # fsync on (the default)
        sink.publish_incident({"type": "end", "incident_id": "ab", "host": "10.0.0.1"})
        sink.publish_stats({"flows": 3})
        assert path.read_text() == ""
        sink.publish_incident(incidents[0])
        assert json.loads(path.read_text())["edgebot"]["incident_id"] == incidents[0]["incident_id"]
        stats = sink.stats()
    assert stats["skipped"] == 1 and stats["stats_skipped"] == 1 and stats["published"] == 1


def test_peers_in_every_form_give_valid_fields():
    base = {"type": "new", "incident_id": "00ff", "host": "fe80::1", "last_seen": 1.5, "severity": "low"}
    ipv6 = eve_record({**base, "peers": ["fe80::2:5353/udp"]})
    assert (ipv6["dest_ip"], ipv6["dest_port"], ipv6["proto"]) == ("fe80::2", 5353, "UDP")
    assert ipv6["alert"]["severity"] == 3 and ipv6["timestamp"] == "1970-01-01T00:00:01.500000+0000"
    for peers in ([], None, ["not-an-address:80/tcp"], ["1.2.3.4:99999/tcp"]):
        record = eve_record({**base, "peers": peers})
        _SURICATA.validate({k: v for k, v in record.items() if k != "edgebot"})
        assert "dest_port" not in record
    assert eve_record({**base, "type": "end"}) is None and eve_record({**base, "type": "state"}) is None


def test_the_file_is_appended_and_rotated_at_its_size_bound(incidents, tmp_path):
    path = tmp_path / "eve.json"
    path.write_text('{"event_type":"stats"}\n')  # an earlier line stays: append, never truncate
    new = [m for m in incidents if m["type"] in ("new", "update")]
    with EveSink(path, max_bytes=4096, backups=2, fsync=False) as sink:
        for message in new * 4:
            sink.publish_incident(message)
        stats = sink.stats()
    files = sorted(tmp_path.glob("eve.json*"))
    assert [f.name for f in files] == ["eve.json", "eve.json.1", "eve.json.2"]
    assert all(f.stat().st_size <= 4096 for f in files)
    assert stats["rotations"] >= 2 and stats["published"] == len(new) * 4
    kept = sum(len(f.read_text().splitlines()) for f in files)
    assert 0 < kept < len(new) * 4  # the oldest rotated files were removed: the size is bounded


def test_from_the_config_file_and_its_checks(tmp_path):
    toml = tmp_path / "edgebot.toml"
    toml.write_text('[eve]\npath = "alerts/eve.json"\nfsync = false\nmax_bytes = 8192\n')
    (tmp_path / "alerts").mkdir()
    config = load_config(toml)
    assert config.sink_types() == ["eve"], "an EVE file alone: no JSON lines on stdout"
    sink = sinks_from_config(config)
    assert isinstance(sink, EveSink) and sink.path == tmp_path / "alerts" / "eve.json" and not sink.fsync
    sink.close()
    bad = load_config(None, {"eve.path": str(tmp_path / "missing" / "eve.json"), "eve.max_bytes": 10})
    problems = bad.problems()
    assert any(p.startswith("eve.path: no such directory") for p in problems)
    assert any(p.startswith("eve.max_bytes: must be in [4096") for p in problems)
    with pytest.raises(SinkError, match="cannot open the EVE file"):
        EveSink(tmp_path / "missing" / "eve.json").start()


def test_a_bad_eve_path_is_a_one_line_error_exit_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(tmp_path), "--pcap",
                          str(tmp_path / "x.pcap"), "--eve", str(tmp_path / "no" / "eve.json"), "--check-config"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert any(line.startswith("Error: eve.path: no such directory") for line in res.stderr.splitlines())


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.timeout(900)  # the session's int8 bundle may be built here
def test_edgebot_run_writes_an_eve_record_per_new_and_update(int8_bundle, tmp_path):  # noqa: F811
    """The agent end to end: ``edgebot run --eve`` beside ``--jsonl`` on the bundled Mirai pcap."""
    eve, jsonl = tmp_path / "eve.json", tmp_path / "incidents.jsonl"
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--bundle", str(int8_bundle), "--pcap",
                          str(PCAP_MIRAI), "--eve", str(eve), "--jsonl", str(jsonl), "--gateway-id", "eve-gw"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    incidents = [json.loads(line) for line in jsonl.read_text().splitlines()]
    wanted = [m for m in incidents if m["kind"] == "incident" and m["type"] in ("new", "update")]
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    assert wanted and len(records) == len(wanted)
    for record, message in zip(records, wanted):
        _check(record)
        assert record["edgebot"]["incident_id"] == message["incident_id"] and record["src_ip"] == message["host"]
