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
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import unquote, urlsplit

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

    max_hosts: int = 4096
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

    url: str | None = None
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; unset = no MQTT."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
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


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse ``mqtt[s]://[user[:password]@]host[:port]`` (user and password percent-decoded).

    Raises
    ------
    ConfigError
        The URL has another scheme, no host, a bad port or a path.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"mqtt.url: expected mqtt://host[:port] or mqtts://host[:port], "
                          f"got {redact_url(url)!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"mqtt.url: bad port in {redact_url(url)!r}") from None
    if not parts.hostname:
        raise ConfigError(f"mqtt.url: no host in {redact_url(url)!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"mqtt.url: a broker URL has no path or query, got {redact_url(url)!r}; "
                          "topics are set with mqtt.topic_prefix")
    default_port = 8883 if parts.scheme == "mqtts" else 1883
    return MqttUrl(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or default_port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


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
    expanded = Path(value).expanduser()
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
            errors.append(f"{where}{path}: expected {_DESCRIPTIONS[_base(tp)]}, got {value!r}")
            continue
        if spec.metadata.get("path") and isinstance(converted, str):
            converted = _resolve_path(converted, base_dir)
        setattr(section, key, converted)


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
        tp, _ = fields[key]
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
            errors.append(f"{dotted}: expected {_DESCRIPTIONS[_base(tp)]}, got {value!r}")
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
    """All problems of a configuration, for ``--check-config``; an empty list means it is fine."""
    errors: list[str] = []
    config, read_ok = _load(path, overrides, errors)
    if not read_ok:  # the rest would only be noise about defaults
        return errors
    return errors + config.problems()


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

    def at_least(name: str, value: float, low: float) -> None:
        if value < low:
            problems.append(f"{name}: must be at least {low:g}, got {value:g}")

    at_least("scoring.batch_size", config.scoring.batch_size, 1)
    at_least("scoring.max_batch_delay_s", config.scoring.max_batch_delay_s, 0)
    at_least("limits.max_hosts", config.limits.max_hosts, 1)
    at_least("limits.max_active_flows", config.limits.max_active_flows, 1)
    at_least("incidents.update_interval_s", config.incidents.update_interval_s, 0.001)
    at_least("incidents.quiet_period_s", config.incidents.quiet_period_s, 0.001)
    at_least("incidents.max_peers", config.incidents.max_peers, 0)
    try:
        config.incidents.rule()
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
    if not 0 <= mqtt.keepalive <= 65535:
        problems.append(f"mqtt.keepalive: must be 0-65535 seconds, got {mqtt.keepalive}")
    at_least("mqtt.stats_interval_s", mqtt.stats_interval_s, 0.001)
    at_least("mqtt.queue_max_messages", mqtt.queue_max_messages, 1)
    _check_topic_part("mqtt.topic_prefix", mqtt.topic_prefix, problems)
    _check_topic_part("mqtt.discovery_prefix", mqtt.discovery_prefix, problems)
    if mqtt.client_id is not None and not mqtt.client_id:
        problems.append("mqtt.client_id: must not be empty (leave it unset for the default)")

    if config.jsonl.path not in (None, "-") and not Path(config.jsonl.path).parent.is_dir():
        problems.append(f"jsonl.path: no such directory: {Path(config.jsonl.path).parent}")
    return problems
