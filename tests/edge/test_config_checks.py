"""--check-config does what start-up does: ranges with key paths, TLS files, queue path, bundle; secrets never shown; fuzzing."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers import make_tls_files
from conftest_bundle import edit_manifest, write_fake_bundle
from edgebot.edge.config import all_paths as _all_paths
from edgebot.edge.config import check_config, load_config
from edgebot.edge.sinks.mqtt import MqttConfig
from edgebot.edge.sinks.mqtt_url import parse_mqtt_url, redact_url
from edgebot.errors import ConfigError, EdgebotError
from hypothesis_profiles import examples


@pytest.fixture
def base(tmp_path: Path) -> str:
    """The lines of a config that passes --check-config (a placeholder-model bundle, a pcap)."""
    write_fake_bundle(tmp_path / "bundle")
    (tmp_path / "cap.pcap").write_bytes(b"")
    return f'gateway_id = "gw-1"\nbundle = "{tmp_path / "bundle"}"\n[source]\npcap = "{tmp_path / "cap.pcap"}"\n'


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "edgebot.toml"
    path.write_text(text)
    return check_config(path)


def test_the_base_config_passes(tmp_path, base):
    assert _problems(tmp_path, base) == []


@pytest.mark.parametrize("section,key,value,message", [
    ("scoring", "threshold", "2.0", "scoring.threshold: must be in (0, 1], got 2"),
    ("scoring", "threshold", "-1.0", "scoring.threshold: must be in (0, 1], got -1"),
    ("scoring", "threshold", "0", "scoring.threshold: must be in (0, 1], got 0"),
    ("scoring", "batch_size", "0", "scoring.batch_size: must be in [1, 65536], got 0"),
    ("scoring", "max_batch_delay_s", "-0.1", "scoring.max_batch_delay_s: must be in [0, 3600], got -0.1"),
    ("limits", "max_hosts", "0", "limits.max_hosts: must be in [1, 1e+07], got 0"),
    ("limits", "max_active_flows", "-5", "limits.max_active_flows: must be in [1, 1e+07], got -5"),
    ("incidents", "update_interval_s", "0", "incidents.update_interval_s: must be in (0, "),
    ("incidents", "quiet_period_s", "-1", "incidents.quiet_period_s: must be in (0, "),
    ("incidents", "confident_flows", "0", "incidents.confident_flows: must be a positive number, got 0"),
    ("incidents", "window_s", "-1", "incidents.window_s: must be a positive number, got -1"),
    ("incidents", "confident_fraction", "1.5", "incidents.confident_fraction: must be below 1"),
    ("site", "learn_s", "-1", "site.learn_s: must be at least 0"),
    ("site", "quantile", "2", "site.quantile: must be in [0.5, 1], got 2"),
    ("site", "max_devices", "0", "site.max_devices: must be at least 1, got 0"),
    ("incidents", "max_peers", "-1", "incidents.max_peers: must be in [0, 1000], got -1"),
    ("mqtt", "stats_interval_s", "0", "mqtt.stats_interval_s: must be in (0, "),
    ("mqtt", "queue_max_messages", "0", "mqtt.queue_max_messages: must be in [1, 1e+07], got 0"),
    ("mqtt", "keepalive", "-1", "mqtt.keepalive: must be in [0, 65535], got -1"),
])
def test_every_number_is_range_checked_with_its_key_path(tmp_path, base, section, key, value, message):
    problems = _problems(tmp_path, base + f"[{section}]\n{key} = {value}\n")
    assert any(p.startswith(message) for p in problems), problems
    with pytest.raises(ConfigError, match=key):
        load_config(tmp_path / "edgebot.toml").validate()


def test_check_config_cli_exits_1_on_a_threshold_of_2(tmp_path, base):
    (tmp_path / "edgebot.toml").write_text(base + "[scoring]\nthreshold = 2.0\n")
    res = subprocess.run([sys.executable, "-m", "edgebot.cli", "run", "--config", str(tmp_path / "edgebot.toml"),
                          "--check-config"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "scoring.threshold: must be in (0, 1], got 2" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_ca_file_that_is_no_certificate_fails_the_check(tmp_path, base):
    (tmp_path / "ca.crt").write_text("this is not a certificate\n")
    problems = _problems(tmp_path, base + f'[mqtt]\nurl = "mqtts://broker"\nca_file = "{tmp_path / "ca.crt"}"\n'
                         f'queue_path = "{tmp_path / "q.sqlite"}"\n')
    assert len(problems) == 1 and problems[0].startswith(f"mqtt.ca_file: {tmp_path / 'ca.crt'} is not a PEM CA")


def test_real_tls_files_pass_and_a_mismatched_key_fails(tmp_path, base):
    tls = make_tls_files(tmp_path)
    other = make_tls_files(tmp_path, "other")
    mqtt = f'[mqtt]\nurl = "mqtts://broker"\nca_file = "{tls.ca_file}"\nqueue_path = "{tmp_path / "q.sqlite"}"\n'
    assert _problems(tmp_path, base + mqtt + f'certfile = "{tls.certfile}"\nkeyfile = "{tls.keyfile}"\n') == []
    problems = _problems(tmp_path, base + mqtt + f'certfile = "{tls.certfile}"\nkeyfile = "{other.keyfile}"\n')
    assert len(problems) == 1 and problems[0].startswith("mqtt.certfile: cannot load the client certificate")


@pytest.mark.parametrize("queue,message", [
    ("{tmp}", "is a directory"),
    ("/dev/null", "is not a regular file"),
    ("{tmp}/notes.txt", "is not an SQLite queue file"),
    ("{tmp}/cap.pcap/q.sqlite", "is not a directory, so"),
])
def test_a_queue_path_start_up_could_not_open_fails_the_check(tmp_path, base, queue, message):
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "cap.pcap").write_bytes(b"x")
    queue = queue.format(tmp=tmp_path)
    problems = _problems(tmp_path, base + f'[mqtt]\nurl = "mqtt://broker"\nqueue_path = "{queue}"\n')
    assert len(problems) == 1 and problems[0].startswith("mqtt.queue_path: ") and message in problems[0], problems


def test_a_queue_path_in_a_missing_directory_is_fine(tmp_path, base):
    problems = _problems(tmp_path, base + f'[mqtt]\nurl = "mqtt://broker"\nqueue_path = "{tmp_path}/a/b/q.sqlite"\n')
    assert problems == []


def test_the_check_reads_the_bundle_like_start_up(tmp_path, base):
    edit_manifest(tmp_path / "bundle", lambda m: m["thresholds"].update(fused=2.0), reseal=False)
    problems = _problems(tmp_path, base)
    assert len(problems) == 1 and problems[0].startswith("bundle: ") and "does not match its bundle_id" in problems[0]


def test_trust_key_must_exist_and_be_a_public_key(tmp_path, base):
    text = base.replace('[source]', f'trust_key = "{tmp_path / "none.pub"}"\n[source]')
    assert _problems(tmp_path, text) == [f"trust_key: no such file: {tmp_path / 'none.pub'}"]
    (tmp_path / "junk.pub").write_text("junk")
    text = base.replace('[source]', f'trust_key = "{tmp_path / "junk.pub"}"\n[source]')
    problems = _problems(tmp_path, text)
    assert len(problems) == 1 and problems[0].startswith("bundle: ") and "not an ed25519 public key" in problems[0]


# --------------------------------------------------------------------------------- passwords

_password = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24).map(
    lambda t: "A7SECRETa" + t + "Z7SECRETz")
_url_shapes = [
    "mqtt://u:{pw}@host:1883", "mqtt://u:{pw}@host:99999", "mqtt://u:{pw}@host:abc", "mqttx://u:{pw}@host",
    "mqtt://u:{pw}@host/path", "mqtt://u:{pw}@", "u:{pw}@host:1883", "mqtt://u:{pw}@[::1", "mqtts://u:{pw}@h:0",
    "mqtt://u:{pw}", " mqtt://u:{pw}@host ",
]


def _leaks(text: str, pw: str) -> bool:
    return pw in text or "A7SECRETa" in text or "Z7SECRETz" in text


@examples(200)
@given(pw=_password, shape=st.sampled_from(_url_shapes))
def test_no_error_repr_or_log_line_shows_a_password(pw, shape):
    """Issue 12 item 8: 'Sl/ashSECRET' and 'p@ssSECRET' leaked through 'bad port ...' and the redaction."""
    if shape == "mqtt://u:{pw}" and "@" in pw:
        return  # 'u:a@b' without a host IS user u, password a, host b: nothing to hide after that '@'
    url = shape.format(pw=pw)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger("edgebot")
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    seen = [redact_url(url)]
    try:
        try:
            parsed = parse_mqtt_url(url)
            seen.append(parsed.display())
            if "@host" in url and ":1883" in url:
                assert parsed.password is not None and parsed.host == "host"
        except ConfigError as exc:
            seen.append(str(exc))
        config = load_config(None, {"mqtt.url": url, "mqtt.password": pw, "gateway_id": "gw"})
        seen += [repr(config), repr(config.mqtt), str(config.as_dict()), repr(MqttConfig(url=url, password=pw))]
        seen += config.problems()
        try:
            load_config(None, {"mqtt.url": url, "mqtt.password": pw, "mqtt.keepalive": "x"})
        except ConfigError as exc:
            seen.append(str(exc))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    seen += [r.getMessage() for r in records]
    leaked = [s for s in seen if _leaks(s, pw)]
    assert not leaked, leaked


def test_a_password_of_the_wrong_type_is_not_shown(tmp_path):
    (tmp_path / "edgebot.toml").write_text("[mqtt]\npassword = 31337424242\n")
    problems = check_config(tmp_path / "edgebot.toml")
    assert problems[0].endswith("mqtt.password: expected a string, got an integer (not shown: it may hold a password)")
    assert not any("31337424242" in p for p in problems)


# ----------------------------------------------------------------------------------- fuzzing

_toml_leaf = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=12),
    st.sampled_from(["~nouser_xyz/q", "~", "/dev/null", "\x00", ".", "..", "/", "mqtt://a:b@c:1", "-"]),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 1, 1)), st.dates(),
)
_toml_value = st.recursive(_toml_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                               st.dictionaries(st.text("abcxyz_", min_size=1,
                                                                                       max_size=5), inner, max_size=3)),
                           max_leaves=6)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (int,)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


_KEYS = [p for p in _all_paths() if "." in p] + [p for p in _all_paths() if "." not in p]


@examples(300)
@given(entries=st.lists(st.tuples(st.sampled_from(_KEYS + ["mqtt.nope", "extra", "source.pcap.x"]), _toml_value),
                        max_size=8), junk=st.one_of(st.none(), st.binary(max_size=40)))
def test_fuzz_config_documents_only_raise_config_errors(tmp_path_factory, entries, junk):
    """Random values of every type for every key (and unknown keys, and raw bytes): check_config returns
    problems and load_config raises ConfigError, never anything else."""
    top = [(k, v) for k, v in entries if "." not in k]
    lines = [f"{json.dumps(k)} = {_toml(v)}" for k, v in top]
    tables: dict[str, list[str]] = {}
    for key, value in entries:
        if "." in key:
            section, leaf = key.split(".", 1)
            tables.setdefault(section, []).append(f"{json.dumps(leaf)} = {_toml(value)}")
    for section, body in tables.items():
        lines.append(f"[{section}]")
        lines.extend(body)
    path = tmp_path_factory.mktemp("cfg") / "edgebot.toml"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n" + (junk or b""))
    problems = check_config(path)
    assert isinstance(problems, list) and all(isinstance(p, str) and "\n" not in p for p in problems)
    try:
        load_config(path).validate()
    except EdgebotError as exc:
        assert isinstance(exc, ConfigError)
    overrides = {k: (v if isinstance(v, (str, int, float, bool)) else str(v)) for k, v in entries}
    try:
        load_config(None, overrides).validate()
    except ConfigError:
        pass
