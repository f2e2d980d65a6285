"""Every setting of the edge agent: the TOML schema as dataclasses, loading, overrides and checks.

The annotated example is ``examples/edgebot.toml``. Precedence, highest first: command-line
overrides, the config file, the defaults below. MQTT credentials come from the URL's
``user:pass@``, else ``mqtt.username``/``mqtt.password``, else the environment variables
``EDGEBOT_MQTT_USERNAME``/``EDGEBOT_MQTT_PASSWORD`` (so that a secret can stay out of the file).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import socket
import stat
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import unquote

from edgebot.errors import ConfigError
from edgebot.incidents import EvidenceRule
from edgebot.site import SiteSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 uses the tomli backport (the edge extra installs it)
    import tomli as tomllib

__all__ = [
    "AgentConfig",
    "SourceConfig",
    "ScoringConfig",
    "LimitsConfig",
    "IncidentsConfig",
    "SiteConfig",
    "MqttConfig",
    "JsonlConfig",
    "MqttUrl",
    "load_config",
    "check_config",
    "parse_mqtt_url",
    "default_gateway_id",
    "default_state_dir",
    "ENV_MQTT_USERNAME",
    "ENV_MQTT_PASSWORD",
]

ENV_MQTT_USERNAME = "EDGEBOT_MQTT_USERNAME"
ENV_MQTT_PASSWORD = "EDGEBOT_MQTT_PASSWORD"

_YEAR_S = 366 * 86400.0
_GATEWAY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _path(default: str | None = None) -> Any:
    """A setting that holds a file path: relative paths in a file are relative to that file."""
    return field(default=default, metadata={"path": True})


def default_gateway_id() -> str:
    """The short host name, with characters that MQTT topics cannot hold replaced by ``-``."""
    name = socket.gethostname().split(".")[0] or "gateway"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name).strip("-.") or "gateway"
    return name[:64]


def default_state_dir() -> Path:
    """Where the agent keeps state: systemd's ``$STATE_DIRECTORY``, else XDG state home."""
    systemd_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd_dir:
        return Path(systemd_dir)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "edgebot"


# -- the schema ---------------------------------------------------------------------------
@dataclass
class SourceConfig:
    """``[source]``: where flows come from; exactly one key must be set."""

    KINDS: ClassVar[tuple[str, ...]] = ("pcap", "iface", "zeek_log", "csv")

    pcap: str | None = _path()
    """A pcap/pcapng file replayed as fast as the CPU allows."""
    iface: str | None = None
    """A live network interface (needs CAP_NET_RAW)."""
    zeek_log: str | None = _path()
    """A Zeek ``conn.log`` followed as it grows and is rotated."""
    csv: str | None = _path()
    """A CSV of flows (CICFlowMeter or Zeek columns)."""
    follow: bool = True
    """With zeek_log: keep following the log after its current end (false: read it once)."""

    @property
    def kind(self) -> str | None:
        """The one source key that is set (None if none or several are)."""
        chosen = [k for k in self.KINDS if getattr(self, k) is not None]
        return chosen[0] if len(chosen) == 1 else None

    @property
    def location(self) -> str | None:
        """The value of the chosen source (a path or an interface name)."""
        return getattr(self, self.kind) if self.kind else None


@dataclass
class ScoringConfig:
    """``[scoring]``: micro-batching and the decision threshold."""

    batch_size: int = 256
    max_batch_delay_s: float = 0.2
    threshold: float | None = None
    """Overrides the bundle's threshold when set."""


@dataclass
class LimitsConfig:
    """``[limits]``: memory bounds; what is evicted is counted in the stats."""

    max_hosts: int = 2048
    max_active_flows: int = 20_000


_RULE = EvidenceRule()
_SITE = SiteSettings()


@dataclass
class IncidentsConfig:
    """``[incidents]``: the evidence rule that turns flagged flows into new/update/end incidents per host.

    The defaults are :class:`edgebot.incidents.EvidenceRule`'s (one default per setting).
    """

    update_interval_s: float = 30.0
    quiet_period_s: float = 300.0
    max_peers: int = 5
    """Example peer addresses carried in each message."""
    window_s: float = _RULE.window_s
    confident_fraction: float = _RULE.confident_fraction
    confident_flows: int = _RULE.confident_flows
    confident_share: float = _RULE.confident_share
    confident_per_peer: bool = _RULE.confident_per_peer
    scan_destinations: int = _RULE.scan_destinations
    scan_ports: int = _RULE.scan_ports
    scan_failed_share: float = _RULE.scan_failed_share
    flood_rate: float = _RULE.flood_rate
    flood_burst: float = _RULE.flood_burst
    retry_rate: float = _RULE.retry_rate
    retry_burst: float = _RULE.retry_burst
    beacon_flows: int = _RULE.beacon_flows
    beacon_jitter: float = _RULE.beacon_jitter
    beacon_min_excess: float = _RULE.beacon_min_excess
    high_confidence: float = _RULE.high_confidence
    max_pending_hosts: int = _RULE.max_pending_hosts
    max_open_incidents: int = _RULE.max_open_incidents
    max_peers_tracked: int = _RULE.max_peers_tracked

    def rule(self) -> EvidenceRule:
        """The :class:`EvidenceRule` these settings describe."""
        return EvidenceRule.from_config(self)


@dataclass
class SiteConfig:
    """``[site]``: site learning (per-device baselines and thresholds) and where its profile lives.

    The defaults are :class:`edgebot.site.SiteSettings`'s (one default per setting).
    """

    learn_s: float = _SITE.learn_s
    """Learning period of the site from its first flow; 0 disables site learning."""
    device_learn_s: float = _SITE.device_learn_s
    """Learning period of a device first seen after the site's."""
    quantile: float = _SITE.quantile
    min_support: int = _SITE.min_support
    min_learned_flows: int = _SITE.min_learned_flows
    max_threshold: float = _SITE.max_threshold
    max_devices: int = _SITE.max_devices
    max_peers: int = _SITE.max_peers
    save_interval_s: float = _SITE.save_interval_s
    persist: str = "auto"
    """``auto`` (keep the profile in the state dir for live sources, not for file replays), ``yes`` or ``no``."""

    def settings(self) -> SiteSettings:
        """The :class:`SiteSettings` these settings describe."""
        return SiteSettings.from_config(self)


@dataclass(repr=False)
class MqttConfig:
    """``[mqtt]``: the broker, credentials, TLS, topics and the on-disk queue."""

    url: str | None = field(default=None, metadata={"secret": True})
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; unset = no MQTT."""
    username: str | None = None
    password: str | None = field(default=None, repr=False, metadata={"secret": True})
    ca_file: str | None = _path()
    certfile: str | None = _path()
    keyfile: str | None = _path()
    tls_insecure: bool = False
    """Skip the check that the certificate matches the host name (never on by default)."""
    client_id: str | None = None
    """Default ``edgebot-<gateway_id>``."""
    topic_prefix: str = "edgebot"
    keepalive: int = 60
    stats_interval_s: float = 60.0
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"
    queue_path: str | None = _path()
    """Default ``<state dir>/mqtt-queue-<gateway_id>.sqlite``."""
    queue_max_messages: int = 10_000

    def __repr__(self) -> str:
        shown = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name == "password":
                value = None if value is None else "***"
            elif spec.name == "url" and value:
                value = redact_url(value)
            shown.append(f"{spec.name}={value!r}")
        return f"MqttConfig({', '.join(shown)})"

    def credentials(self, environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
        """The username and password to use: URL, else these keys, else the environment."""
        env = os.environ if environ is None else environ
        url_user = url_password = None
        if self.url:
            try:
                parsed = parse_mqtt_url(self.url)
                url_user, url_password = parsed.username, parsed.password
            except ConfigError:
                pass
        if url_user is not None:
            return url_user, url_password
        if self.username is not None:
            return self.username, self.password
        return env.get(ENV_MQTT_USERNAME) or None, env.get(ENV_MQTT_PASSWORD) or None


@dataclass
class JsonlConfig:
    """``[jsonl]``: JSON lines output; ``"-"`` is standard output."""

    path: str | None = _path()
    """Unset: standard output when no MQTT url is set, else no JSON lines."""


@dataclass
class AgentConfig:
    """The whole configuration of ``edgebot run``."""

    gateway_id: str = field(default_factory=default_gateway_id)
    bundle: str | None = _path()
    trust_key: str | None = _path()
    """Public key file (``edgebot keygen``): refuse a bundle not signed by it. Unset: no check."""
    source: SourceConfig = field(default_factory=SourceConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    incidents: IncidentsConfig = field(default_factory=IncidentsConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    state_dir: str | None = _path()
    """Where the site profile, allow rules and MQTT queue live; default ``$STATE_DIRECTORY`` or XDG state."""
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    jsonl: JsonlConfig = field(default_factory=JsonlConfig)
    config_path: str | None = field(default=None, metadata={"internal": True})
    """The file this was loaded from (not a setting)."""

    def sink_types(self) -> list[str]:
        """The sinks to build: ``mqtt`` if a URL is set; ``jsonl`` if a path is set or no MQTT."""
        types = []
        if self.mqtt.url:
            types.append("mqtt")
        if self.jsonl.path is not None or not self.mqtt.url:
            types.append("jsonl")
        return types

    def mqtt_client_id(self) -> str:
        """``mqtt.client_id`` or ``edgebot-<gateway_id>``."""
        return self.mqtt.client_id or f"edgebot-{self.gateway_id}"

    def state_path(self) -> Path:
        """``state_dir`` or :func:`default_state_dir`."""
        return Path(self.state_dir) if self.state_dir else default_state_dir()

    def persist_site(self) -> bool:
        """Whether the site profile is kept in the state dir (``site.persist``; ``auto``: live sources only)."""
        if self.site.persist == "auto":
            return self.source.kind in ("iface", "zeek_log")
        return self.site.persist == "yes"

    def mqtt_queue_path(self) -> Path:
        """``mqtt.queue_path`` or ``<state dir>/mqtt-queue-<gateway_id>.sqlite``."""
        if self.mqtt.queue_path:
            return Path(self.mqtt.queue_path)
        return self.state_path() / f"mqtt-queue-{self.gateway_id}.sqlite"

    def problems(self) -> list[str]:
        """Every semantic problem (missing source, bad numbers, files that do not exist...)."""
        return _problems(self)

    def validate(self) -> AgentConfig:
        """Raise ``ConfigError`` naming the first problem (all are in ``.problems``); return self."""
        found = self.problems()
        if found:
            raise _config_error(found)
        return self

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        """The settings as nested dicts (the password replaced by ``"***"`` when ``redact``)."""
        data = dataclasses.asdict(self)
        data.pop("config_path", None)
        if redact:
            if data["mqtt"]["password"] is not None:
                data["mqtt"]["password"] = "***"
            if data["mqtt"]["url"]:
                data["mqtt"]["url"] = redact_url(data["mqtt"]["url"])
        return data


# -- MQTT URLs ----------------------------------------------------------------------------
class MqttUrl(NamedTuple):
    """A parsed broker URL."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @property
    def tls(self) -> bool:
        """True for ``mqtts://``."""
        return self.scheme == "mqtts"

    def display(self) -> str:
        """``scheme://host:port`` without credentials, for log messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


def _split_url(url: str) -> tuple[str, str | None, str]:
    """``(scheme, userinfo or None, host part)``: the userinfo ends at the LAST ``@``.

    A broker URL has no path, so every ``@``, ``/``, ``:``, ``?`` or ``#`` before the last
    ``@`` belongs to the credentials (a password may hold any of them unencoded). Without a
    well-formed ``scheme://``, the scheme is ``""`` and the whole text is split.
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or not _SCHEME.match(scheme):
        scheme, rest = "", text
    if "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        return scheme, userinfo, hostpart
    return scheme, None, rest


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (whatever characters the password holds).

    Without an ``@``, anything after a ``:`` that is not a port number is masked too (it may be
    a password whose ``@host`` was forgotten).
    """
    scheme, userinfo, hostpart = _split_url(url)
    prefix = f"{scheme}://" if scheme else ""
    if userinfo is None:
        if hostpart.startswith("["):
            return prefix + hostpart
        host, colon, after = hostpart.partition(":")
        port = re.split(r"[/?#]", after, maxsplit=1)[0]
        if colon and not (port.isascii() and port.isdigit() and after[len(port):] in ("", "/")):
            return f"{prefix}{host}:***"
        return prefix + hostpart
    user, colon, _ = userinfo.partition(":")
    return f"{prefix}{user}{':***' if colon else ''}@{hostpart}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse ``mqtt[s]://[user[:password]@]host[:port]`` (user and password percent-decoded).

    The password may hold any character, also ``/``, ``@``, ``:``, ``?``, ``#`` unencoded; no
    error message ever contains it (:func:`redact_url`).

    Raises
    ------
    ConfigError
        The URL has another scheme, no host, a bad port or a path.
    """
    shown = redact_url(url)
    scheme, userinfo, hostpart = _split_url(url)
    if scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], got {shown!r}")
    cut = min([i for i in (hostpart.find(c) for c in "/?#") if i >= 0], default=len(hostpart))
    hostport, tail = hostpart[:cut], hostpart[cut:]
    if tail not in ("", "/"):
        raise ConfigError(f"mqtt.url: a broker URL has no path or query, got {shown!r}; "
                          "topics are set with mqtt.topic_prefix")
    port_text = ""
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ConfigError(f"mqtt.url: bad IPv6 address in {shown!r} (write it as [addr]:port)")
        port_text = after[1:] if after else ""
        has_port = bool(after)
    else:
        host, has_port_sep, port_text = hostport.partition(":")
        has_port = bool(has_port_sep)
        if ":" in port_text:
            raise ConfigError(f"mqtt.url: bad port in {shown!r} (an IPv6 address goes in brackets)")
    if not host:
        raise ConfigError(f"mqtt.url: no host in {shown!r}")
    if any(c.isspace() for c in host) or "@" in host:
        raise ConfigError(f"mqtt.url: bad host in {shown!r}")
    default_port = 8883 if scheme == "mqtts" else 1883
    port = default_port
    if has_port and port_text:
        if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"mqtt.url: bad port in {shown!r} (1-65535)")
        port = int(port_text)
    username = password = None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user)
        password = unquote(secret) if colon else None
    return MqttUrl(scheme=scheme, host=host.lower() if not hostport.startswith("[") else host, port=port,
                   username=username, password=password)


# -- loading ------------------------------------------------------------------------------
def _config_error(problems: list[str]) -> ConfigError:
    more = f" (and {len(problems) - 1} more problem(s); --check-config lists them all)" \
        if len(problems) > 1 else ""
    error = ConfigError(problems[0] + more)
    error.problems = list(problems)  # type: ignore[attr-defined]
    return error


def _settings(cls: type) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """The settable fields of a section dataclass: name -> (resolved type, Field)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)
            if not f.metadata.get("internal")}


def _all_paths(cls: type = AgentConfig, prefix: str = "") -> list[str]:
    paths = []
    for name, (tp, _) in _settings(cls).items():
        paths.append(prefix + name)
        if dataclasses.is_dataclass(tp):
            paths.extend(_all_paths(tp, f"{prefix}{name}."))
    return paths


def _unknown_key(path: str, siblings: list[str]) -> str:
    """``unknown key 'mqtt.hots' (did you mean 'mqtt.host'?)``, looking wide if needed."""
    leaf = path.rsplit(".", 1)[-1]
    close = [p for p in _all_paths() if p.rsplit(".", 1)[-1] == leaf][:1]  # wrong section
    close = close or difflib.get_close_matches(path, siblings, n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(path, _all_paths(), n=1, cutoff=0.75)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{path}'{hint}"


_DESCRIPTIONS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert(value: Any, tp: Any, from_text: bool) -> tuple[bool, Any]:
    """Check (and for command-line text, convert) one value. Returns (ok, value)."""
    args = typing.get_args(tp)
    if type(None) in args:
        tp = next(a for a in args if a is not type(None))
    if from_text and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if tp is bool:
        if isinstance(value, bool):
            return True, value
        if from_text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return True, value.strip().lower() in _TRUE
        return False, value
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if from_text and isinstance(value, str):
            try:
                return True, int(value.strip())
            except ValueError:
                return False, value
        return False, value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.isfinite(value), float(value)
        if from_text and isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return False, value
            return math.isfinite(number), number
        return False, value
    if tp is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported setting type {tp!r}")  # a bug in the schema, not user input


def _resolve_path(value: str, base_dir: Path | None) -> str:
    if value == "-" or base_dir is None:
        return value
    expanded = Path(os.path.expanduser(value))  # leaves an unknown ~user as it is (Path.expanduser raises)
    return str(expanded if expanded.is_absolute() else base_dir / expanded)


def _apply_table(section: Any, data: Mapping[str, Any], prefix: str, errors: list[str],
                 where: str, base_dir: Path | None) -> None:
    """Copy a TOML table into a section dataclass, collecting every error."""
    fields = _settings(type(section))
    siblings = [prefix + name for name in fields]
    for key, value in data.items():
        path = prefix + key
        if key not in fields:
            errors.append(where + _unknown_key(path, siblings))
            continue
        tp, spec = fields[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                errors.append(f"{where}{path}: expected a table ([{path}]), got {value!r}")
            else:
                _apply_table(getattr(section, key), value, path + ".", errors, where, base_dir)
            continue
        if isinstance(value, dict):
            errors.append(f"{where}{path}: expected {_DESCRIPTIONS.get(_base(tp), 'a value')}, "
                          f"got a table")
            continue
        ok, converted = _convert(value, tp, from_text=False)
        if not ok:
            errors.append(f"{where}{path}: expected {_DESCRIPTIONS[_base(tp)]}, got {_shown(value, spec)}")
            continue
        if spec.metadata.get("path") and isinstance(converted, str):
            converted = _resolve_path(converted, base_dir)
        setattr(section, key, converted)


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "a table"}


def _shown(value: Any, spec: dataclasses.Field[Any]) -> str:
    """``repr(value)`` for error messages, or only its kind for a setting that holds a secret."""
    if spec.metadata.get("secret"):
        kind = next((name for tp, name in _TYPE_NAMES.items() if type(value) is tp), "a value")
        return f"{kind} (not shown: it may hold a password)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _base(tp: Any) -> Any:
    args = typing.get_args(tp)
    return next((a for a in args if a is not type(None)), tp) if args else tp


def _apply_override(config: AgentConfig, dotted: str, value: Any, errors: list[str]) -> None:
    section: Any = config
    parts = dotted.split(".")
    for depth, key in enumerate(parts):
        fields = _settings(type(section))
        prefix = ".".join(parts[:depth])
        path = ".".join(parts[:depth + 1])
        if key not in fields:
            siblings = [f"{prefix}.{n}" if prefix else n for n in fields]
            errors.append(_unknown_key(path, siblings).replace("unknown key", "unknown setting", 1))
            return
        tp, spec = fields[key]
        if depth < len(parts) - 1:
            if not dataclasses.is_dataclass(tp):
                errors.append(f"unknown setting '{dotted}' ('{path}' is not a table)")
                return
            section = getattr(section, key)
            continue
        if dataclasses.is_dataclass(tp):
            errors.append(f"{dotted}: is a table; override its keys, e.g. '{dotted}.<key>'")
            return
        ok, converted = _convert(value, tp, from_text=True)
        if not ok:
            errors.append(f"{dotted}: expected {_DESCRIPTIONS[_base(tp)]}, got {_shown(value, spec)}")
            return
        setattr(section, key, converted)


def _read_file(path: str | os.PathLike[str], errors: list[str]) -> dict[str, Any]:
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        errors.append(f"{name}: config file not found (start from examples/edgebot.toml)")
    except IsADirectoryError:
        errors.append(f"{name}: is a directory, expected a TOML file")
    except OSError as exc:
        errors.append(f"{name}: cannot read the config file: {exc.strerror}")
    except tomllib.TOMLDecodeError as exc:
        errors.append(f"{name}: invalid TOML: {exc}")
    except UnicodeDecodeError:
        errors.append(f"{name}: not a UTF-8 text file")
    return {}


def _load(path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None,
          errors: list[str]) -> tuple[AgentConfig, bool]:
    """Build the config, appending problems to ``errors``; returns (config, file_was_read)."""
    config = AgentConfig()
    read_ok = True
    if path is not None:
        name = os.fspath(path)
        n_before = len(errors)
        data = _read_file(name, errors)
        read_ok = len(errors) == n_before
        config.config_path = name
        base_dir = Path(name).expanduser().resolve().parent
        _apply_table(config, data, "", errors, f"{name}: ", base_dir)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if any(key in {f"source.{kind}" for kind in SourceConfig.KINDS} for key in overrides):
        follow = config.source.follow
        config.source = SourceConfig(follow=follow)  # a source flag replaces the file's source
    for dotted, value in overrides.items():
        _apply_override(config, dotted, value, errors)
    return config, read_ok


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Read the TOML file (if any), then apply command-line overrides.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The TOML file; None means defaults plus overrides only. Relative paths inside the
        file are taken relative to the file's directory.
    overrides : Mapping, optional
        Dotted keys to values, e.g. ``{"mqtt.url": "mqtt://broker", "source.pcap": "x.pcap"}``.
        None values are ignored (an unset CLI flag); text values are converted to the
        setting's type (``"60"`` -> 60). Overriding a source kind (``source.pcap``,
        ``source.iface``, ``source.zeek_log``, ``source.csv``) replaces the file's source.

    Returns
    -------
    AgentConfig
        Type-checked, but not validated: call ``validate()`` before running.

    Raises
    ------
    ConfigError
        Unreadable file, invalid TOML, unknown keys or wrong types; the message names the
        first problem and the key path, ``error.problems`` holds all of them.
    """
    errors: list[str] = []
    config, _ = _load(path, overrides, errors)
    if errors:
        raise _config_error(errors)
    return config


def check_config(path: str | os.PathLike[str] | None,
                 overrides: Mapping[str, Any] | None = None) -> list[str]:
    """All problems of a configuration, for ``--check-config``; an empty list means it is fine.

    Beyond :meth:`AgentConfig.problems` (types, ranges, files, TLS files parsed with ``ssl``, a
    queue path that can be created), it checks the bundle as start-up does before loading the
    models: manifest integrity and fields, file hashes, featurizer, and the signature under
    ``trust_key``.
    """
    errors: list[str] = []
    config, read_ok = _load(path, overrides, errors)
    if not read_ok:  # the rest would only be noise about defaults
        return errors
    problems = errors + config.problems()
    _check_bundle(config, problems)  # what start-up checks next: the bundle's manifest, files, signature
    return problems


# -- semantic checks ----------------------------------------------------------------------
def _check_topic_part(name: str, value: str, problems: list[str]) -> None:
    if not value or value != value.strip("/") or any(c in value for c in "+#\0"):
        problems.append(f"{name}: {value!r} is not usable in an MQTT topic "
                        "(no '+', '#', and no leading or trailing '/')")


def _check_file(name: str, value: str | None, problems: list[str], what: str = "file") -> None:
    if value is not None and not Path(value).is_file():
        problems.append(f"{name}: no such {what}: {value}")


def _problems(config: AgentConfig) -> list[str]:
    problems: list[str] = []
    if not _GATEWAY_ID.match(config.gateway_id or ""):
        problems.append(f"gateway_id: {config.gateway_id!r} must be 1-64 letters, digits, '_', '.' "
                        "or '-' (it is part of MQTT topics)")

    if config.bundle is None:
        problems.append("bundle: not set; add bundle = \"path/to/bundle\" to the config file "
                        "or pass --bundle")
    elif not Path(config.bundle).is_dir():
        problems.append(f"bundle: no such directory: {config.bundle} "
                        "(copy the output of 'edgebot convert' there)")

    source = config.source
    chosen = [k for k in SourceConfig.KINDS if getattr(source, k) is not None]
    if len(chosen) != 1:
        got = ", ".join(f"source.{k}" for k in chosen) if chosen else "none"
        problems.append(f"source: set exactly one of pcap, iface, zeek_log, csv (got {got})")
    _check_file("source.pcap", source.pcap, problems)
    _check_file("source.csv", source.csv, problems)
    if source.zeek_log is not None and not Path(source.zeek_log).parent.is_dir():
        problems.append(f"source.zeek_log: no such directory: {Path(source.zeek_log).parent}")
    if source.iface is not None:
        net = Path("/sys/class/net")
        if not source.iface:
            problems.append("source.iface: empty interface name")
        elif net.is_dir() and not (net / source.iface).exists():
            known = ", ".join(sorted(p.name for p in net.iterdir()))
            problems.append(f"source.iface: no network interface named {source.iface!r} "
                            f"(this machine has: {known})")

    def in_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
        if (value <= low if low_open else value < low) or value > high:
            bracket = "(" if low_open else "["
            problems.append(f"{name}: must be in {bracket}{low:g}, {high:g}], got {value:g}")

    scoring, limits, incidents = config.scoring, config.limits, config.incidents
    in_range("scoring.batch_size", scoring.batch_size, 1, 65_536)
    in_range("scoring.max_batch_delay_s", scoring.max_batch_delay_s, 0, 3600)
    if scoring.threshold is not None:
        in_range("scoring.threshold", scoring.threshold, 0, 1, low_open=True)
    in_range("limits.max_hosts", limits.max_hosts, 1, 10_000_000)
    in_range("limits.max_active_flows", limits.max_active_flows, 1, 10_000_000)
    in_range("incidents.update_interval_s", incidents.update_interval_s, 0, _YEAR_S, low_open=True)
    in_range("incidents.quiet_period_s", incidents.quiet_period_s, 0, _YEAR_S, low_open=True)
    in_range("incidents.max_peers", incidents.max_peers, 0, 1000)
    try:
        incidents.rule()
    except ValueError as exc:
        problems.append(str(exc))
    try:
        config.site.settings()
    except ValueError as exc:
        problems.append(str(exc))
    if config.site.persist not in ("auto", "yes", "no"):
        problems.append(f"site.persist: must be auto, yes or no, got {config.site.persist!r}")

    mqtt = config.mqtt
    if mqtt.url is not None:
        try:
            url = parse_mqtt_url(mqtt.url)
        except ConfigError as exc:
            problems.append(str(exc))
            url = None
        if url is not None and not url.tls and (mqtt.ca_file or mqtt.certfile):
            problems.append("mqtt.url: TLS files are set but the URL is mqtt://; use mqtts://")
    _check_file("mqtt.ca_file", mqtt.ca_file, problems)
    _check_file("mqtt.certfile", mqtt.certfile, problems)
    _check_file("mqtt.keyfile", mqtt.keyfile, problems)
    if mqtt.keyfile and not mqtt.certfile:
        problems.append("mqtt.keyfile: set mqtt.certfile too (the client certificate)")
    _check_tls_files(mqtt, problems)
    in_range("mqtt.keepalive", mqtt.keepalive, 0, 65535)
    in_range("mqtt.stats_interval_s", mqtt.stats_interval_s, 0, _YEAR_S, low_open=True)
    in_range("mqtt.queue_max_messages", mqtt.queue_max_messages, 1, 10_000_000)
    _check_topic_part("mqtt.topic_prefix", mqtt.topic_prefix, problems)
    _check_topic_part("mqtt.discovery_prefix", mqtt.discovery_prefix, problems)
    if mqtt.client_id is not None and not mqtt.client_id:
        problems.append("mqtt.client_id: must not be empty (leave it unset for the default)")
    if mqtt.url is not None:
        name = "mqtt.queue_path" if mqtt.queue_path else "mqtt.queue_path (default)"
        why = writable_file_problem(config.mqtt_queue_path(), sqlite=True)
        if why:
            problems.append(f"{name}: {why}")

    if config.jsonl.path not in (None, "-"):
        why = writable_file_problem(Path(config.jsonl.path), create_dirs=False, devices_ok=True)
        if why:
            problems.append(f"jsonl.path: {why}")
    return problems


def writable_file_problem(path: Path, *, sqlite: bool = False, create_dirs: bool = True,
                          devices_ok: bool = False) -> str | None:
    """Why ``path`` could not be opened for writing as a regular file at start-up, or None.

    Parameters
    ----------
    path
        The file.
    sqlite
        An existing non-empty file must be an SQLite database.
    create_dirs
        Missing directories would be created (the nearest existing one must be writable).
    devices_ok
        Accept a character device such as ``/dev/null`` or ``/dev/stdout`` (JSON lines).
    """
    try:
        if path.exists() or path.is_symlink():
            st = path.stat()
            if stat.S_ISDIR(st.st_mode):
                return f"{path} is a directory; give a file path"
            if not stat.S_ISREG(st.st_mode) and not (devices_ok and stat.S_ISCHR(st.st_mode)):
                return f"{path} is not a regular file (a device or a pipe); give a file path"
            if not os.access(path, os.W_OK):
                return f"{path} is not writable by this user"
            if sqlite and st.st_size:
                with open(path, "rb") as fh:
                    if fh.read(16) != b"SQLite format 3\x00":
                        return f"{path} exists and is not an SQLite queue file; remove it or choose another path"
            return None
        parent = path.parent
        if not create_dirs:
            if not parent.is_dir():
                return f"no such directory: {parent}"
        else:
            while not parent.exists() and parent.parent != parent:
                parent = parent.parent
            if not parent.is_dir():
                return f"{parent} is not a directory, so {path} cannot be created"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot create {path}: {parent} is not writable by this user"
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        return f"cannot use {path!s:.200}: {getattr(exc, 'strerror', None) or exc}"
    return None


def _check_tls_files(mqtt: MqttConfig, problems: list[str]) -> None:
    """Load the CA and client certificate the way start-up does, so a bad file fails the check."""
    import ssl

    if mqtt.ca_file and Path(mqtt.ca_file).is_file():
        try:
            ssl.create_default_context(cafile=mqtt.ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"mqtt.ca_file: {mqtt.ca_file} is not a PEM CA certificate ({_ssl_reason(exc)})")
    if mqtt.certfile and Path(mqtt.certfile).is_file() and (mqtt.keyfile is None or Path(mqtt.keyfile).is_file()):
        try:
            ssl.create_default_context().load_cert_chain(mqtt.certfile, mqtt.keyfile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"mqtt.certfile: cannot load the client certificate {mqtt.certfile} with its key "
                            f"({_ssl_reason(exc)})")


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc.__class__.__name__
    return str(reason).replace("\n", " ")[:120]


def _check_bundle(config: AgentConfig, problems: list[str]) -> None:
    """What start-up checks of the bundle before it loads the models: manifest, files, signature."""
    if config.trust_key is not None and not Path(config.trust_key).is_file():
        problems.append(f"trust_key: no such file: {config.trust_key}")
        return
    if config.bundle is None or not Path(config.bundle).is_dir():
        return
    from edgebot.bundle import check_featurizer, load_manifest, verify_files
    from edgebot.errors import EdgebotError

    try:
        manifest = load_manifest(config.bundle, trust=config.trust_key)
        verify_files(config.bundle, manifest)
        check_featurizer(manifest)
    except EdgebotError as exc:
        problems.append(f"bundle: {exc}")
