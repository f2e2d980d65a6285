"""The MQTT sink's broker: its URL (parsing and redaction: no message ever shows a password), TLS files, topic names."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

from edgebot.errors import ConfigError

__all__ = ["MqttUrl", "parse_mqtt_url", "redact_url", "broker_problems", "topic_part_problem",
           "ENV_MQTT_USERNAME", "ENV_MQTT_PASSWORD"]

#: Where the credentials come from when neither the URL nor ``[mqtt]`` has them.
ENV_MQTT_USERNAME = "EDGEBOT_MQTT_USERNAME"
ENV_MQTT_PASSWORD = "EDGEBOT_MQTT_PASSWORD"


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



def topic_part_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be a level of MQTT topics (``mqtt.topic_prefix``), or None."""
    if not value or value != value.strip("/") or any(c in value for c in "+#\0"):
        return (f"{name}: {value!r} is not usable in an MQTT topic "
                "(no '+', '#', and no leading or trailing '/')")
    return None


def broker_problems(url: str | None, ca_file: str | None, certfile: str | None, keyfile: str | None) -> list[str]:
    """What start-up would find wrong with the broker URL and the TLS files (loaded with ``ssl``)."""
    import ssl
    from pathlib import Path

    problems = []
    if url is not None:
        try:
            parsed = parse_mqtt_url(url)
        except ConfigError as exc:
            problems.append(str(exc))
        else:
            if not parsed.tls and (ca_file or certfile):
                problems.append("mqtt.url: TLS files are set but the URL is mqtt://; use mqtts://")
    for name, value in (("ca_file", ca_file), ("certfile", certfile), ("keyfile", keyfile)):
        if value is not None and not Path(value).is_file():
            problems.append(f"mqtt.{name}: no such file: {value}")
    if keyfile and not certfile:
        problems.append("mqtt.keyfile: set mqtt.certfile too (the client certificate)")
    if ca_file and Path(ca_file).is_file():
        try:
            ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"mqtt.ca_file: {ca_file} is not a PEM CA certificate ({_ssl_reason(exc)})")
    if certfile and Path(certfile).is_file() and (keyfile is None or Path(keyfile).is_file()):
        try:
            ssl.create_default_context().load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"mqtt.certfile: cannot load the client certificate {certfile} with its key "
                            f"({_ssl_reason(exc)})")
    return problems


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc.__class__.__name__
    return str(reason).replace("\n", " ")[:120]
