"""Tests of the agent configuration: TOML loading, key-path errors, overrides, secrets, checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgebot.edge.config import (
    AgentConfig,
    check_config,
    default_gateway_id,
    load_config,
)
from edgebot.edge.sinks.mqtt import MqttConfig
from edgebot.edge.sinks.mqtt_url import parse_mqtt_url
from conftest_bundle import write_fake_bundle
from edgebot.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "edgebot.toml"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tmp_path so that messages name the file as the user typed it: 'edgebot.toml'."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "edgebot.toml") -> Path:
    (tmp_path / name).write_text(text)
    return Path(name)


@pytest.fixture
def runnable(tmp_path: Path) -> Path:
    """A config that passes check_config(): a (placeholder-model) bundle and a pcap that exist."""
    write_fake_bundle(tmp_path / "bundle")
    (tmp_path / "cap.pcap").write_bytes(b"")
    return write(tmp_path, 'gateway_id = "gw-1"\nbundle = "bundle"\n[source]\npcap = "cap.pcap"\n')


def test_defaults_without_a_file():
    config = load_config(None)
    assert config.scoring.batch_size == 256
    assert config.scoring.max_batch_delay_s == pytest.approx(0.2)
    assert config.scoring.threshold is None
    assert config.limits.max_hosts == 2048
    assert config.limits.max_active_flows == 20_000
    assert config.incidents.max_peers == 5
    assert config.mqtt.topic_prefix == "edgebot"
    assert config.mqtt.keepalive == 60
    assert config.mqtt.queue_max_messages == 10_000
    assert config.gateway_id == default_gateway_id()
    assert config.sink_types() == ["jsonl"]


def test_values_and_relative_paths_from_the_file(runnable: Path):
    config = load_config(runnable)
    assert config.gateway_id == "gw-1"
    assert Path(config.bundle) == Path.cwd() / "bundle"          # relative to the file
    assert Path(config.source.pcap) == Path.cwd() / "cap.pcap"
    assert config.source.kind == "pcap"
    assert config.validate() is config
    assert check_config(runnable) == []


def test_unknown_key_names_the_path_and_suggests(tmp_path: Path):
    path = write(tmp_path, '[mqtt]\nulr = "mqtt://x"\n')
    with pytest.raises(ConfigError, match=r"^edgebot\.toml: unknown key 'mqtt\.ulr' "
                                          r"\(did you mean 'mqtt\.url'\?\)") as info:
        load_config(path)
    assert info.value.problems == [str(info.value)]


def test_unknown_section_and_key_in_the_wrong_section(tmp_path: Path):
    path = write(tmp_path, '[mqqt]\nurl = "x"\n[mqtt]\nbatch_size = 3\n')
    problems = check_config(path)
    assert "edgebot.toml: unknown key 'mqqt' (did you mean 'mqtt'?)" in problems
    assert "edgebot.toml: unknown key 'mqtt.batch_size' (did you mean 'scoring.batch_size'?)" in problems


@pytest.mark.parametrize("text, message", [
    ('[mqtt]\nkeepalive = "abc"\n', "edgebot.toml: mqtt.keepalive: expected an integer, got 'abc'"),
    ('[mqtt]\nkeepalive = true\n', "edgebot.toml: mqtt.keepalive: expected an integer, got True"),
    ('[mqtt]\nhomeassistant = "yes"\n', "edgebot.toml: mqtt.homeassistant: expected true or false, got 'yes'"),
    ('[scoring]\nthreshold = "high"\n', "edgebot.toml: scoring.threshold: expected a number, got 'high'"),
    ('gateway_id = 7\n', "edgebot.toml: gateway_id: expected a string, got 7"),
    ('mqtt = "broker"\n', "edgebot.toml: mqtt: expected a table ([mqtt]), got 'broker'"),
    ('[bundle]\nx = 1\n', "edgebot.toml: bundle: expected a string, got a table"),
])
def test_wrong_types_name_the_key(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value) == message


def test_an_integer_is_accepted_where_a_number_is_expected(tmp_path: Path):
    config = load_config(write(tmp_path, "[scoring]\nmax_batch_delay_s = 1\n"))
    assert config.scoring.max_batch_delay_s == 1.0
    assert isinstance(config.scoring.max_batch_delay_s, float)


def test_all_problems_are_collected(tmp_path: Path):
    path = write(tmp_path, '[mqtt]\nhots = "x"\nkeepalive = "abc"\n[limits]\nmax_hosts = 0\n')
    with pytest.raises(ConfigError, match=r"and 1 more problem"):
        load_config(path)
    problems = check_config(path)
    assert problems[0].startswith("edgebot.toml: unknown key 'mqtt.hots'")
    assert problems[1] == "edgebot.toml: mqtt.keepalive: expected an integer, got 'abc'"
    assert any(p.startswith("limits.max_hosts: must be in [1, ") for p in problems)
    assert not any(p.startswith("bundle: not set") for p in problems)  # the shipped default bundle
    assert Path(load_config(None).bundle).name == "default_bundle"
    assert any(p.startswith("source: set exactly one") for p in problems)


def test_invalid_toml_and_missing_file_are_reported_alone(tmp_path: Path):
    bad = write(tmp_path, "[mqtt\nurl = 1\n")
    problems = check_config(bad)
    assert len(problems) == 1 and problems[0].startswith("edgebot.toml: invalid TOML: ")
    assert "line 1" in problems[0]
    missing = check_config("nope.toml")
    assert missing == ["nope.toml: config file not found (start from examples/edgebot.toml)"]
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.toml")


def test_overrides_win_and_text_is_converted(runnable: Path):
    config = load_config(runnable, {
        "gateway_id": "gw-2",
        "mqtt.url": "mqtt://broker:1884",
        "mqtt.keepalive": "30",
        "mqtt.homeassistant": "true",
        "scoring.threshold": "0.75",
        "scoring.batch_size": None,         # an unset CLI flag changes nothing
    })
    assert config.gateway_id == "gw-2"
    assert config.mqtt.keepalive == 30
    assert config.mqtt.homeassistant is True
    assert config.scoring.threshold == 0.75
    assert config.scoring.batch_size == 256
    assert config.sink_types() == ["mqtt"]


def test_bad_override_values_and_keys(runnable: Path):
    with pytest.raises(ConfigError) as info:
        load_config(runnable, {"mqtt.keepalive": "abc"})
    assert str(info.value) == "mqtt.keepalive: expected an integer, got 'abc'"
    with pytest.raises(ConfigError, match=r"unknown setting 'mqtt\.hots'"):
        load_config(runnable, {"mqtt.hots": "x"})
    with pytest.raises(ConfigError, match=r"mqtt: is a table"):
        load_config(runnable, {"mqtt": "x"})


def test_a_source_override_replaces_the_file_source(runnable: Path, tmp_path: Path):
    config = load_config(runnable, {"source.iface": "lo"})
    assert config.source.kind == "iface"
    assert config.source.pcap is None
    assert not any(p.startswith("source:") for p in config.problems())
    # an option of the source is not a source: the file's pcap stays
    config = load_config(runnable, {"source.follow": False})
    assert config.source.kind == "pcap" and config.source.follow is False
    write(tmp_path, '[source]\nzeek_log = "conn.log"\nfollow = false\n', "z.toml")
    config = load_config("z.toml", {"source.zeek_log": "other.log"})
    assert (config.source.zeek_log, config.source.follow) == ("other.log", False)


def test_exactly_one_source(tmp_path: Path):
    (tmp_path / "b").mkdir()
    two = write(tmp_path, 'bundle = "b"\n[source]\niface = "lo"\ncsv = "x.csv"\n')
    problems = check_config(two)
    assert "source: set exactly one of pcap, iface, zeek_log, csv (got source.iface, source.csv)" in problems
    assert any(p.startswith("source.csv: no such file") for p in problems)


def test_semantic_checks(tmp_path: Path):
    (tmp_path / "b").mkdir()
    path = write(tmp_path, '\n'.join([
        'gateway_id = "bad/id"', 'bundle = "b"', '[source]', 'iface = "no-such-if0"',
        '[mqtt]', 'url = "mqtt://broker"', 'ca_file = "ca.crt"', 'topic_prefix = "a/#"',
        'keepalive = 70000', '[scoring]', 'batch_size = 0']) + "\n")
    problems = check_config(path)
    text = "\n".join(problems)
    assert "gateway_id: 'bad/id' must be" in text
    assert "mqtt.url: TLS files are set but the URL is mqtt://; use mqtts://" in problems
    assert any(p.startswith("mqtt.ca_file: no such file") for p in problems)
    assert any(p.startswith("mqtt.topic_prefix:") for p in problems)
    assert "mqtt.keepalive: must be in [0, 65535], got 70000" in problems
    assert "scoring.batch_size: must be in [1, 65536], got 0" in problems
    if Path("/sys/class/net").is_dir():
        assert any(p.startswith("source.iface: no network interface named 'no-such-if0'") for p in problems)
    assert "bundle: " + str(tmp_path / "b") + " has no manifest.json" in text  # --check-config reads the bundle
    with pytest.raises(ConfigError) as info:
        load_config(path).validate()
    assert info.value.problems == [p for p in problems if not p.startswith("bundle: ")]


@pytest.mark.parametrize("url, expected", [
    ("mqtt://broker", ("mqtt", "broker", 1883, None, None)),
    ("mqtts://broker", ("mqtts", "broker", 8883, None, None)),
    ("mqtt://u:p%40ss@10.0.0.2:1884", ("mqtt", "10.0.0.2", 1884, "u", "p@ss")),
    ("mqtts://[::1]:8884", ("mqtts", "::1", 8884, None, None)),
])
def test_parse_mqtt_url(url: str, expected: tuple):
    assert tuple(parse_mqtt_url(url)) == expected


@pytest.mark.parametrize("url, match", [
    ("http://broker", "expected mqtt://"),
    ("mqtt://", "no host"),
    ("mqtt://broker:99999", "bad port"),
    ("mqtt://broker/topic", "no path"),
])
def test_bad_mqtt_urls(url: str, match: str):
    with pytest.raises(ConfigError, match=match):
        parse_mqtt_url(url)


def test_url_password_is_never_shown(runnable: Path):
    config = load_config(runnable, {"mqtt.url": "mqtt://bob:hunter2@broker"})
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.as_dict())
    with pytest.raises(ConfigError) as info:
        parse_mqtt_url("http://bob:hunter2@broker")
    assert "hunter2" not in str(info.value)
    config = load_config(runnable, {"mqtt.password": "hunter2"})
    assert "hunter2" not in repr(config) and config.as_dict()["mqtt"]["password"] == "***"


def test_credentials_order_url_then_keys_then_environment():
    env = {"EDGEBOT_MQTT_USERNAME": "env-user", "EDGEBOT_MQTT_PASSWORD": "env-pass"}
    assert MqttConfig(url="mqtt://broker").credentials(env) == ("env-user", "env-pass")
    assert MqttConfig(url="mqtt://broker", username="k", password="kp").credentials(env) == ("k", "kp")
    assert MqttConfig(url="mqtt://u:up@broker", username="k").credentials(env) == ("u", "up")
    assert MqttConfig(url="mqtt://broker").credentials({}) == (None, None)


def test_queue_path_default_follows_systemd_state_directory(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = AgentConfig(gateway_id="gw")
    assert config.mqtt_queue_path() == tmp_path / "state" / "mqtt-queue-gw.sqlite"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert config.mqtt_queue_path() == tmp_path / "xdg" / "edgebot" / "mqtt-queue-gw.sqlite"
    assert config.mqtt_client_id() == "edgebot-gw"


def test_sink_types():
    assert AgentConfig().sink_types() == ["jsonl"]
    with_mqtt = AgentConfig(mqtt=MqttConfig(url="mqtt://b"))
    assert with_mqtt.sink_types() == ["mqtt"]
    with_mqtt.jsonl.path = "-"
    assert with_mqtt.sink_types() == ["mqtt", "jsonl"]


def test_example_file_loads_and_documents_every_setting():
    config = load_config(EXAMPLE)
    assert config.source.kind == "iface"
    assert config.mqtt.url.startswith("mqtts://")
    problems = check_config(EXAMPLE)
    assert not any("unknown key" in p or "expected" in p for p in problems), problems
    # every setting appears in the example, as a value or as a commented-out line
    documented, section = set(), ""
    for line in EXAMPLE.read_text().splitlines():
        header = re.match(r"^\s*#?\s*\[(\w+)\]", line)
        if header:
            section = header.group(1) + "."
            continue
        key = re.match(r"^\s*#?\s*(\w+)\s*=", line)
        if key:
            documented.add(section + key.group(1))
    from edgebot.edge.config import all_paths as _all_paths  # the schema's own list of key paths
    settings = {p for p in _all_paths() if p not in set(config.sections())}  # key paths, not section names
    assert settings <= documented, sorted(settings - documented)


def test_a_key_whose_name_looks_like_a_location_is_an_unknown_key(tmp_path: Path):
    """msgspec's messages end in '- at `$.mqtt`': a key named like that still gets its own path."""
    path = write(tmp_path, '"a - at `$.mqtt" = 1\n[mqtt]\n"x - at `$.scoring" = 2\nkeepalive = "k"\nurl = "mqtt://b"\n')
    problems = check_config(path)
    assert problems[:3] == ["edgebot.toml: unknown key 'a - at `$.mqtt' (did you mean 'mqtt'?)",
                            "edgebot.toml: unknown key 'mqtt.x - at `$.scoring' (did you mean 'scoring'?)",
                            "edgebot.toml: mqtt.keepalive: expected an integer, got 'k'"]
    with pytest.raises(ConfigError):
        load_config(path)
    assert load_config(write(tmp_path, '[mqtt]\nurl = "mqtt://b"\n')).mqtt.url == "mqtt://b"


def test_without_the_config_library_the_agent_says_what_to_install(runnable: Path):
    code = ("import sys; sys.modules['msgspec'] = None\n"  # as if it were not installed
            "from edgebot.cli import main\nmain(['run', '--config', sys.argv[1], '--check-config'])\n")
    res = subprocess.run([sys.executable, "-c", code, str(runnable)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "Error: reading the config needs msgspec, which is not installed; pip install 'edgebot[edge]'"]
