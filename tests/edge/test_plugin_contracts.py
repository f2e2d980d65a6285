"""The contract every registered source and sink passes, in the manner of scikit-learn's ``check_estimator``.

Each check is parametrized over the registries (``SOURCES.classes()``, ``SINKS.classes()``), so a new
plug-in file is checked as soon as it exists. What a check cannot know generically, how to give a
plug-in real input, is in ``SOURCE_CASES`` / ``SINK_CASES``; a registered type without a case fails
``test_every_registered_plugin_has_a_contract_case``. The last test proves that a new sink or source
is one new file: it drops one into the packages' search path and sees the config, the CLI and the
agent's sink factory pick it up.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import math
import subprocess
import sys
import textwrap
import threading
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
from click.testing import CliRunner

from edgebot.cli import main
from edgebot.edge.config import AgentConfig, all_paths, load_config
from edgebot.edge.plugins import Sink as SinkProtocol
from edgebot.edge.plugins import Source as SourceProtocol
from edgebot.edge.plugins import bounds_problems
from edgebot.edge.sinks.base import SINKS, sinks_from_config
from edgebot.edge.sources import SOURCES, build_source
from edgebot.errors import EdgebotError, SinkError, SourceError
from edgebot.flow import FlowRecord

from fixtures_core import HONEYPOT_4_1
from frames import udp_frame, write_pcap

GW = "contract"
SUPPORTED = {bool, int, float, str}


# -- how to give each plug-in real input ------------------------------------------------------
def _zeek_log(path: Path, rows: int = 20) -> Path:
    """A real Zeek conn.log: the header and the first ``rows`` rows of the bundled honeypot capture."""
    lines = lzma.decompress(HONEYPOT_4_1.read_bytes()).decode().splitlines()
    header = [ln for ln in lines if ln.startswith("#") and not ln.startswith("#close")]
    body = [ln for ln in lines if ln and not ln.startswith("#")][:rows]
    path.write_text("\n".join(header + body) + "\n")
    return path


def _pcap(path: Path) -> Path:
    """Three UDP flows (crafted frames), each with a request and an answer."""
    packets = []
    for i in range(3):
        packets.append((1_700_000_000.0 + i, udp_frame("192.168.1.7", 40000 + i, "203.0.113.9", 53)))
        packets.append((1_700_000_000.2 + i, udp_frame("203.0.113.9", 53, "192.168.1.7", 40000 + i)))
    return write_pcap(path, packets)


@dataclass
class SourceCase:
    good: Callable[[Path], dict[str, Any]]     # overrides that select the source with real input
    bad: Callable[[Path], dict[str, Any]]      # overrides whose input it must refuse
    missing: Callable[[Path], str]             # a location --check-config must flag
    flows: bool = True                         # the good input yields flows by itself
    endless: bool = False                      # iteration runs until stop()


SOURCE_CASES: dict[str, SourceCase] = {
    "pcap": SourceCase(good=lambda d: {"source.pcap": str(_pcap(d / "c.pcap"))},
                       bad=lambda d: {"source.pcap": _write(d / "junk.pcap", b"not a capture at all\n")},
                       missing=lambda d: str(d / "none.pcap")),
    "iface": SourceCase(good=lambda d: {"source.iface": "lo"}, bad=lambda d: {"source.iface": "edgebot-nope0"},
                        missing=lambda d: "edgebot-nope0", flows=False, endless=True),
    "zeek-log": SourceCase(good=lambda d: {"source.zeek_log": str(_zeek_log(d / "conn.log")), "source.follow": False},
                           bad=lambda d: {"source.zeek_log": _write(d / "x.log", b"hello\nworld\n"),
                                          "source.follow": False},
                           missing=lambda d: str(d / "no" / "dir" / "conn.log")),
    "csv": SourceCase(good=lambda d: {"source.csv": str(_zeek_log(d / "flows.log"))},
                      bad=lambda d: {"source.csv": _write(d / "notes.txt", b"hello\nworld\n")},
                      missing=lambda d: str(d / "none.csv")),
}


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@dataclass
class SinkCase:
    good: Callable[[Path, Any], dict[str, Any]]          # (tmp dir, broker or None) -> overrides
    read_back: Optional[Callable[[Any], list[dict]]]     # what arrived at the destination (None: nowhere)
    bad: Optional[Callable[[Path], dict[str, Any]]]      # overrides it must refuse (None: no settings)
    broker: bool = False
    server: Optional[str] = None                         # another destination's fixture (e.g. "rsyslog")


SINK_CASES: dict[str, SinkCase] = {
    "null": SinkCase(good=lambda d, b: {}, read_back=None, bad=None),
    "jsonl": SinkCase(good=lambda d, b: {"jsonl.path": str(d / "out.jsonl")},
                      read_back=lambda ctx: [json.loads(ln) for ln in Path(ctx).read_text().splitlines()],
                      bad=lambda d: {"jsonl.path": str(d / "missing" / "out.jsonl")}),
    "eve": SinkCase(good=lambda d, b: {"eve.path": str(d / "eve.json")},
                    read_back=lambda ctx: [json.loads(ln)["edgebot"] for ln in Path(ctx).read_text().splitlines()],
                    bad=lambda d: {"eve.path": str(d / "missing" / "eve.json")}),
    "syslog": SinkCase(good=lambda d, s: {"syslog.url": s.url("tcp"), "syslog.queue_path": str(d / "s.sqlite")},
                       read_back=lambda ctx: [json.loads(line["msg"]) for line in ctx.wait_for(1)],
                       bad=lambda d: {"syslog.url": "syslog://127.0.0.1"}, server="rsyslog"),
    "mqtt": SinkCase(good=lambda d, b: {"mqtt.url": b.url, "mqtt.queue_path": str(d / "q.sqlite")},
                     read_back=lambda ctx: [m.json() for m in ctx.wait_for(f"edgebot/{GW}/incidents")],
                     bad=lambda d: {"mqtt.url": "http://broker"}, broker=True),
}


def _ids(cls: type) -> str:
    return cls.type


def _config(overrides: dict[str, Any]) -> AgentConfig:
    return load_config(None, {"gateway_id": GW, **overrides})


# -- declarations (both kinds) ----------------------------------------------------------------
def test_every_registered_plugin_has_a_contract_case():
    assert set(SOURCE_CASES) == set(SOURCES.names())
    assert set(SINK_CASES) == set(SINKS.names())


@pytest.mark.parametrize("cls", SOURCES.classes() + SINKS.classes(), ids=_ids)
def test_declaration(cls):
    registry = SOURCES if cls in SOURCES.classes() else SINKS
    assert registry.get(cls.type) is cls and cls.__doc__
    assert isinstance(cls.order, int)
    paths = set(all_paths())
    if cls.Settings is not None:
        hints = typing.get_type_hints(cls.Settings)
        for spec in dataclasses.fields(cls.Settings):
            assert spec.default is not dataclasses.MISSING or spec.default_factory is not dataclasses.MISSING, spec.name
            base = next((a for a in typing.get_args(hints[spec.name]) if a is not type(None)), hints[spec.name])
            assert base in SUPPORTED, f"{cls.type}: {spec.name} has a type the loader cannot read: {base}"
        prefix = "source." if registry is SOURCES else cls.type.replace("-", "_") + "."
        assert bounds_problems(cls.Settings(), prefix) == []  # the defaults pass their own bounds
    for flag in cls.flags:
        assert flag.name.startswith("--") and flag.help and flag.key in paths
    if registry is SOURCES:
        assert cls.flags and cls.flags[0].name == f"--{cls.type}" and cls.flags[0].key == f"source.{cls.key()}"
        assert f"source.{cls.key()}" in paths and cls.profiles and cls.location_doc
    elif cls.Settings is not None:
        assert cls.type.replace("-", "_") in paths
        assert all(flag.key.startswith(cls.type.replace("-", "_") + ".") for flag in cls.flags)


@pytest.mark.parametrize("cls", SOURCES.classes() + SINKS.classes(), ids=_ids)
def test_the_section_round_trips_through_a_toml_file(cls, tmp_path):
    """The defaults written as TOML load back unchanged (and ``edgebot run --help`` lists the flags)."""
    if cls.Settings is None and cls in SINKS.classes():
        pytest.skip(f"the {cls.type} sink has no section")
    section = "source" if cls in SOURCES.classes() else cls.type.replace("-", "_")
    defaults = dataclasses.asdict(cls.Settings()) if cls.Settings is not None else {}
    lines = [f"[{section}]"] + [f"{k} = {json.dumps(v)}" for k, v in defaults.items() if v is not None]
    (tmp_path / "edgebot.toml").write_text("\n".join(lines) + "\n")
    loaded = getattr(load_config(tmp_path / "edgebot.toml"), section)
    assert {k: getattr(loaded, k) for k in defaults} == defaults
    helptext = CliRunner().invoke(main, ["run", "--help"]).output
    assert all(flag.name.split("/")[0] in helptext for flag in cls.flags)


# -- sources ----------------------------------------------------------------------------------
def _drain(source: Any, endless: bool, timeout: float = 20.0) -> list:
    """Iterate ``source`` in a thread; an endless source is stopped after its first item (a flow or a
    tick) or two seconds, and must then end."""
    items: list = []
    errors: list = []
    first = threading.Event()

    def consume() -> None:
        try:
            for item in source:
                items.append(item)
                first.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    if endless:
        first.wait(2.0)
        source.stop()
    thread.join(timeout)
    assert not thread.is_alive(), "iteration did not end"
    if errors:
        raise errors[0]
    return items


def _build(cls: type, overrides: dict[str, Any], profile: Optional[str] = None) -> Any:
    try:
        return build_source(_config(overrides), profile=profile)
    except SourceError as exc:
        if cls.type == "iface" and "permission" in str(exc):
            pytest.skip(f"no capture permission here: {exc}")
        raise


@pytest.mark.parametrize("cls", SOURCES.classes(), ids=_ids)
def test_source_from_its_config_section_yields_flows_and_counts(cls, tmp_path):
    case = SOURCE_CASES[cls.type]
    source = _build(cls, case.good(tmp_path))
    assert type(source) is cls and isinstance(source, SourceProtocol)
    assert isinstance(source.description, str) and source.description
    before = source.stats()
    items = _drain(source, case.endless)
    assert all(item is None or isinstance(item, FlowRecord) for item in items)
    if case.flows:
        assert any(isinstance(item, FlowRecord) for item in items)
    after = source.stats()
    for stats in (before, after):
        assert isinstance(stats, dict) and stats["type"] == cls.type
        assert all(isinstance(k, str) for k in stats)
        json.dumps(stats)  # plain JSON: the agent publishes it
    assert set(before) <= set(after)
    source.close()
    source.close()  # idempotent
    source.stats()  # still answers after close


@pytest.mark.parametrize("cls", SOURCES.classes(), ids=_ids)
def test_source_is_a_context_manager(cls, tmp_path):
    with _build(cls, SOURCE_CASES[cls.type].good(tmp_path)) as source:
        assert isinstance(source, cls)
    source.close()


@pytest.mark.parametrize("cls", SOURCES.classes(), ids=_ids)
def test_source_refuses_bad_input_with_a_project_error(cls, tmp_path):
    case = SOURCE_CASES[cls.type]
    with pytest.raises(EdgebotError):
        source = build_source(_config(case.bad(tmp_path)))
        try:
            _drain(source, endless=False)
        finally:
            source.close()
    problems = cls.location_problems(case.missing(tmp_path))
    assert problems and all(p.startswith(f"source.{cls.key()}: ") for p in problems)


@pytest.mark.parametrize("cls", SOURCES.classes(), ids=_ids)
def test_source_refuses_a_bundle_profile_it_cannot_feed(cls, tmp_path):
    config = _config(SOURCE_CASES[cls.type].good(tmp_path))
    for profile in ("zeek", "cicflowmeter"):
        if profile in cls.profiles:
            if profile == "zeek":  # the test input is a Zeek log: a profile it can feed builds
                _build(cls, SOURCE_CASES[cls.type].good(tmp_path), profile=profile).close()
            continue
        with pytest.raises(SourceError, match=f"{profile} profile"):
            build_source(config, profile=profile)


# -- sinks ------------------------------------------------------------------------------------
@pytest.fixture
def sink_setup(request, tmp_path):
    """``(cls, config, read-back context)`` for one registered sink with a real destination."""
    cls = request.param
    case = SINK_CASES[cls.type]
    broker = request.getfixturevalue("mosquitto") if case.broker else None
    server = request.getfixturevalue(case.server) if case.server else None
    config = _config(case.good(tmp_path, broker or server))
    ctx: Any = server
    if cls.type in ("jsonl", "eve"):
        ctx = getattr(config, cls.type).path
    elif case.broker:
        ctx = request.getfixturevalue("mqtt_collector")(broker, [f"edgebot/{GW}/#"])
    return cls, config, ctx


def _incident(i: int) -> dict:
    return {"type": "new", "incident_id": f"inc-{i}", "gateway_id": GW, "host": "192.168.1.7",
            "first_seen": 1_700_000_000.0, "last_seen": 1_700_000_010.0, "flows": np.int64(12),
            "malicious_flows": 3, "score": np.float32(0.75), "threshold": float("nan"), "severity": "high",
            "model": "bundle-abc", "peers": ["203.0.113.9:23"], "community_id": None}


@pytest.mark.parametrize("sink_setup", SINKS.classes(), ids=_ids, indirect=True)
def test_sink_from_its_config_section_round_trips_a_message(sink_setup):
    cls, config, ctx = sink_setup
    case = SINK_CASES[cls.type]
    assert cls.wanted(config) == (cls.Settings is not None)
    if cls.wanted(config):
        assert cls.type in config.sink_types()
    sink = cls.from_config(config)
    assert type(sink) is cls and isinstance(sink, SinkProtocol)
    try:
        sink.start()
        sink.start()  # idempotent
        sink.publish_incident(_incident(1))
        sink.publish_stats({"flows": np.int64(5), "rss_mb": 12.5})
        assert sink.flush(10.0)
        sink.check()
        assert sink.wait_ready(5.0) in (True, False)
        stats = sink.stats()
        json.dumps(stats)
        assert stats["type"] == cls.type and stats["published"] == 1 and stats["dropped"] == 0
        for key in ("published", "stats_published", "queued", "dropped", "errors"):
            assert isinstance(stats[key], int) and stats[key] >= 0, key
        if case.read_back is not None:
            got = [m for m in case.read_back(ctx) if m.get("incident_id") == "inc-1"]
            assert len(got) == 1
            assert got[0]["flows"] == 12 and math.isclose(got[0]["score"], 0.75) and got[0]["threshold"] is None
            assert got[0]["peers"] == ["203.0.113.9:23"] and got[0]["host"] == "192.168.1.7"
    finally:
        sink.close(timeout=2.0)
    sink.close(timeout=2.0)  # idempotent
    with pytest.raises(SinkError):
        sink.publish_incident(_incident(2))
    sink.stats()  # still answers after close


@pytest.mark.parametrize("cls", SINKS.classes(), ids=_ids)
def test_sink_refuses_a_bad_section_with_a_project_error(cls, tmp_path):
    case = SINK_CASES[cls.type]
    if case.bad is None:
        pytest.skip(f"the {cls.type} sink has no settings to get wrong")
    config = _config(case.bad(tmp_path))
    section = cls.type.replace("-", "_")
    assert any(p.startswith(f"{section}.") for p in config.problems())
    with pytest.raises(EdgebotError):
        sink = cls.from_config(config)
        try:
            sink.start()
        finally:
            sink.close(timeout=1.0)


def test_the_configured_sinks_are_built_in_sink_order(tmp_path):
    config = _config({"jsonl.path": str(tmp_path / "o.jsonl"), "mqtt.url": "mqtt://127.0.0.1:1",
                      "mqtt.queue_path": str(tmp_path / "q.sqlite")})
    orders = [SINKS.get(t).order for t in config.sink_types()]
    assert orders == sorted(orders) and len(orders) == 2
    sinks_from_config(config).close(timeout=0.5)


# -- adding a plug-in is one new file ---------------------------------------------------------
NEW_SINK = '''
    """A sink that exists only in this file: one line per incident."""
    from __future__ import annotations

    from dataclasses import dataclass
    from pathlib import Path

    from edgebot.edge.plugins import Flag, setting
    from edgebot.edge.sinks.base import SINKS, Sink


    @dataclass
    class LineFileConfig:
        """[linefile]: one line per incident."""

        path: str | None = setting(None, path=True)
        max_lines: int = setting(100, low=1, high=1000)


    @SINKS.register
    class LineFileSink(Sink):
        """Writes ``<host> <type>`` per incident to a file."""

        type = "linefile"
        order = 30
        Settings = LineFileConfig
        flags = (Flag("--linefile", "linefile.path", "Write one line per incident here.", path=True),)

        @classmethod
        def wanted(cls, config):
            return config.linefile.path is not None

        @classmethod
        def from_config(cls, config):
            return cls(config.linefile.path)

        def __init__(self, path):
            super().__init__()
            self.path = Path(path)

        def publish_incident(self, incident):
            self._require_open()
            with open(self.path, "a") as fh:
                fh.write(f"{incident['host']} {incident['type']}\\n")
            self._count("published")

        def publish_stats(self, stats):
            self._count("stats_published")
'''

NEW_SOURCE = '''
    """A source that exists only in this file: a Zeek log read once, under a type of its own."""
    from __future__ import annotations

    from edgebot.edge.plugins import Flag
    from edgebot.edge.sources.base import SOURCES
    from edgebot.edge.sources.zeeklog import FlowFileSource


    @SOURCES.register
    class ConnOnceSource(FlowFileSource):
        """A Zeek log read once."""

        type = "conn-once"
        order = 50
        flags = (Flag("--conn-once", "source.conn_once", "Read this Zeek log once.", path=True),)

        @classmethod
        def from_config(cls, config, *, profile=None):
            return cls(config.source.conn_once, profile=profile)
'''

PROBE = '''
import json, sys
import edgebot.edge.sinks, edgebot.edge.sources
edgebot.edge.sinks.__path__.append(sys.argv[1])     # the new file sits in a folder the package searches
edgebot.edge.sources.__path__.append(sys.argv[2])
from click.testing import CliRunner
from edgebot.cli import main
from edgebot.edge.config import all_paths, check_config, load_config
from edgebot.edge.sinks import build_sinks
from edgebot.edge.sources import build_source

cfg = load_config(sys.argv[3])
sink = build_sinks(cfg)
sink.start()
sink.publish_incident({"host": "192.168.1.7", "type": "new"})
sink.close()
print(json.dumps({
    "paths": [p for p in all_paths() if p.startswith(("linefile", "source.conn"))],
    "sinks": cfg.sink_types(), "source": type(build_source(cfg)).__name__,
    "help": CliRunner().invoke(main, ["run", "--help"]).output,
    "problems": check_config(sys.argv[3], {"linefile.max_lines": "0"}),
}))
'''


def test_a_new_sink_or_source_is_one_new_file(tmp_path):
    for folder, text in (("sinks", NEW_SINK), ("sources", NEW_SOURCE)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"extra_{folder}.py").write_text(textwrap.dedent(text))
    log = _zeek_log(tmp_path / "conn.log")
    (tmp_path / "edgebot.toml").write_text(
        f'[source]\nconn_once = "{log}"\n[linefile]\npath = "{tmp_path / "lines.txt"}"\n')
    res = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "sinks"), str(tmp_path / "sources"),
                          str(tmp_path / "edgebot.toml")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["paths"] == ["source.conn_once", "linefile", "linefile.path", "linefile.max_lines"]
    assert out["sinks"] == ["linefile"] and out["source"] == "ConnOnceSource"
    assert "--linefile PATH" in out["help"] and "--conn-once PATH" in out["help"]
    assert "linefile.max_lines: must be in [1, 1000], got 0" in out["problems"]
    assert (tmp_path / "lines.txt").read_text() == "192.168.1.7 new\n"
