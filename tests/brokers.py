"""Broker and TLS helpers for the tests (fixtures registered by tests/conftest.py): a real Mosquitto broker on a free port, TLS material, an MQTT collector.

Broker fixtures (all skip with a clear reason when ``mosquitto`` is not installed):

- ``mosquitto``: an anonymous broker, started for one test and killed afterwards.
- ``mosquitto_auth``: a broker that only accepts ``edgebot`` / ``s3cret`` (``.users``).
- ``mosquitto_factory(**options)``: make more brokers (same port restarts, TLS, auth...).
- ``tls_certs``: a throwaway CA plus a server certificate for 127.0.0.1/localhost.
- ``mqtt_collector(broker, topics)``: a QoS 1 subscriber with a persistent session.
- ``tiny_tmpfs``: a real 512 KiB filesystem to fill up (root only; skips otherwise).

Every broker runs with ``max_queued_messages 0`` (Mosquitto's default of 1000 queued
messages per client silently drops QoS 1 messages under load) and persistence in the
test's temporary directory, so retained messages and persistent sessions survive
``broker.restart()``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


# Debian installs the broker in sbin, which is not on every user's PATH.
_SBIN = os.pathsep.join(["/usr/sbin", "/usr/local/sbin"])


def find_tool(name: str) -> str | None:
    """A command on PATH or in the sbin directories; ``EDGEBOT_<NAME>`` overrides."""
    override = os.environ.get(f"EDGEBOT_{name.upper()}")
    if override:
        return override
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """Poll until ``host:port`` accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class TlsFiles:
    """A throwaway CA and a server certificate valid for 127.0.0.1 and localhost."""

    ca_file: Path
    certfile: Path
    keyfile: Path
    ca_key: Path


class MosquittoBroker:
    """One Mosquitto process with its own config, persistence and log in ``workdir``.

    ``start()`` waits until the port accepts connections; ``stop()`` is a clean shutdown
    (SIGTERM: the broker saves its persistence file); ``kill()`` is SIGKILL; ``restart()``
    comes back on the SAME port.
    """

    host = "127.0.0.1"

    def __init__(self, binary: str, workdir: Path, port: int | None = None, *,
                 users: dict[str, str] | None = None, tls: TlsFiles | None = None,
                 extra_config: str = "") -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.users = dict(users or {})
        self.tls = tls
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        (workdir / "persistence").mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>`` or ``mqtts://localhost:<port>`` with TLS."""
        if self.tls:
            return f"mqtts://localhost:{self.port}"
        return f"mqtt://{self.host}:{self.port}"

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "max_queued_messages 0",
            "persistence true",
            f"persistence_location {self.workdir / 'persistence'}{os.sep}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # do not drop to 'mosquitto', which cannot read tmp_path
        if self.users:
            password_file = self.workdir / "passwords"
            passwd = find_tool("mosquitto_passwd")
            if passwd is None:
                pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
            password_file.unlink(missing_ok=True)
            for i, (user, password) in enumerate(self.users.items()):
                flags = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run([passwd, *flags, str(password_file), user, password],
                               check=True, capture_output=True)
            lines.append(f"password_file {password_file}")
        if self.tls:
            lines += [f"cafile {self.tls.ca_file}", f"certfile {self.tls.certfile}",
                      f"keyfile {self.tls.keyfile}"]
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra_config)

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return self
        self._write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process writes to it
        try:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config_path)],
                                            stdout=log, stderr=log)
        finally:
            log.close()
        if not wait_for_port(self.host, self.port, timeout):
            self.kill()
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{self.log()}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Clean shutdown (SIGTERM); persistence is saved."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no persistence saved since the last autosave."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None

    def restart(self) -> MosquittoBroker:
        """Stop cleanly and start again on the same port."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"MosquittoBroker({self.url}, running={self.running})"


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """``make(port=None, users=None, tls=None, start=True, extra_config="")`` -> broker."""
    binary = find_tool("mosquitto")
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients; "
                    "the Makefile's CI target installs it)")
    brokers: list[MosquittoBroker] = []

    def make(port: int | None = None, *, users: dict[str, str] | None = None,
             tls: TlsFiles | None = None, start: bool = True,
             extra_config: str = "") -> MosquittoBroker:
        workdir = tmp_path / f"mosquitto-{len(brokers)}"
        workdir.mkdir()
        broker = MosquittoBroker(binary, workdir, port, users=users, tls=tls,
                                 extra_config=extra_config)
        brokers.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A running anonymous broker on a free port."""
    return mosquitto_factory()


@pytest.fixture
def mosquitto_auth(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A running broker that accepts only user ``edgebot`` with password ``s3cret``."""
    return mosquitto_factory(users={"edgebot": "s3cret"})


def make_tls_files(directory: Path, name: str = "tls") -> TlsFiles:
    """Create a CA and a server certificate (127.0.0.1, localhost) with the openssl CLI."""
    openssl = find_tool("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    out = directory / name
    out.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=out)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", f"/CN=edgebot test CA {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (out / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    return TlsFiles(out / "ca.crt", out / "server.crt", out / "server.key", out / "ca.key")


@pytest.fixture
def tls_certs(tmp_path: Path) -> TlsFiles:
    """A throwaway CA and server certificate for 127.0.0.1 / localhost."""
    return make_tls_files(tmp_path)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB filesystem to fill up, when this process may mount one (root in CI)."""
    mount, umount = find_tool("mount"), find_tool("umount")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    if mount is None or umount is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (a max_page_count test covers the same logic)")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run([umount, str(mountpoint)], capture_output=True)


def fill_disk(directory: Path) -> Path:
    """Write a file in ``directory`` until the filesystem is full; return its path."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@dataclass
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        """The payload as UTF-8 text."""
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


@dataclass
class MqttCollector:
    """A QoS 1 subscriber that collects every message per topic (thread-safe).

    It uses a persistent session (``clean_session=False``, a fixed client id), so messages
    published while it is disconnected (e.g. during a broker restart) are kept for it by
    the broker and delivered when it comes back.
    """

    broker: MosquittoBroker
    topics: list[str]
    client_id: str = field(default_factory=lambda: f"collector-{uuid.uuid4().hex[:8]}")
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=paho.MQTTv311, clean_session=False)
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.broker.tls:
            self.client.tls_set(ca_certs=str(self.broker.tls.ca_file))
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> MqttCollector:
        """Connect, subscribe to every topic at QoS 1 and wait for the SUBACK."""
        self.client.connect_async(self.broker.host if not self.broker.tls else "localhost",
                                  self.broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError(f"collector could not subscribe at {self.broker}:\n{self.broker.log()}")
        return self

    def stop(self) -> None:
        """Disconnect (the persistent session stays on the broker)."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload),
                                          bool(message.retain), int(message.qos)))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        """Messages received on ``topic`` so far, in arrival order."""
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout: float = 10.0,
                 predicate: Callable[[list[Received]], bool] | None = None) -> list[Received]:
        """Wait until ``count`` messages (or ``predicate`` holds) on ``topic``; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages if m.topic == topic]
                done = predicate(got) if predicate else len(got) >= count
                remaining = deadline - time.monotonic()
                if done or remaining <= 0:
                    return got
                self._cond.wait(min(remaining, 0.2))


@pytest.fixture
def mqtt_collector() -> Iterator[Callable[..., MqttCollector]]:
    """``collect(broker, topics, **kwargs)`` -> a started MqttCollector, stopped at teardown."""
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (edgebot[edge])")
    collectors: list[MqttCollector] = []

    def collect(broker: MosquittoBroker, topics: list[str], **kwargs: Any) -> MqttCollector:
        collector = MqttCollector(broker, topics, **kwargs)
        collectors.append(collector)
        return collector.start()

    yield collect
    for collector in collectors:
        try:
            collector.stop()
        except Exception:  # noqa: BLE001 - teardown must not mask the test's own failure
            pass
