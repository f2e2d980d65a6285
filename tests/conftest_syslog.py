"""A real rsyslog (Debian's ``rsyslog``, ``rsyslog-gnutls`` for TLS) on free loopback ports, for the syslog sink.

Import the fixtures you need from your test module (``from conftest_syslog import rsyslog``):

- ``rsyslog_factory(tls=None, tcp_port=None)``: start an rsyslogd with its own config, work dir and output file in
  the test's temporary directory: UDP and TCP inputs (``imudp``/``imtcp``), or with ``tls`` (a
  :class:`conftest.TlsFiles`) a TLS input only (``gtls``, certificates not asked of clients);
- ``rsyslog``: one plain (UDP + TCP) server.

Every message is written as one line of its RFC 5424 fields as rsyslog parsed them, separated by
``|`` (PRI, version, timestamp, hostname, app-name, procid, msgid, structured data, message), so a
test sees what the server understood, not only what was sent. Skips when rsyslogd is missing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from brokers import TlsFiles, find_tool, free_port, wait_for_port

FIELDS = ("pri", "version", "timestamp", "hostname", "app_name", "procid", "msgid", "sd", "msg")
_TEMPLATE = "|".join(f"%{p}%" for p in ("pri", "protocol-version", "timereported:::date-rfc3339", "hostname",
                                          "app-name", "procid", "msgid", "structured-data", "msg"))


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RsyslogServer:
    """One rsyslogd process; ``lines()`` are the parsed messages it wrote so far."""

    workdir: Path
    tcp_port: int
    udp_port: Optional[int]
    tls: Optional[TlsFiles]
    process: Any = None

    host = "127.0.0.1"

    @property
    def output(self) -> Path:
        return self.workdir / "received.log"

    def url(self, scheme: str) -> str:
        port = self.udp_port if scheme == "udp" else self.tcp_port
        host = "localhost" if scheme == "tls" else self.host
        return f"{scheme}://{host}:{port}"

    def lines(self) -> list[dict[str, str]]:
        if not self.output.exists():
            return []
        rows = []
        for line in self.output.read_text(errors="replace").splitlines():
            parts = line.split("|", len(FIELDS) - 1)
            if len(parts) == len(FIELDS):
                rows.append(dict(zip(FIELDS, parts)))
        return rows

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.lines()
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def log(self) -> str:
        path = self.workdir / "rsyslogd.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _config(server: RsyslogServer) -> str:
    work = server.workdir / "work"
    work.mkdir(parents=True, exist_ok=True)
    lines = [f'global(workDirectory="{work}" maxMessageSize="64k")']
    if server.tls is not None:
        lines += [f'global(defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{server.tls.ca_file}" '
                  f'defaultNetstreamDriverCertFile="{server.tls.certfile}" '
                  f'defaultNetstreamDriverKeyFile="{server.tls.keyfile}")',
                  'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")',
                  f'input(type="imtcp" address="127.0.0.1" port="{server.tcp_port}")']
    else:
        lines += ['module(load="imudp")', 'module(load="imtcp")',
                  f'input(type="imudp" address="127.0.0.1" port="{server.udp_port}")',
                  f'input(type="imtcp" address="127.0.0.1" port="{server.tcp_port}")']
    lines += [f'template(name="fields" type="string" string="{_TEMPLATE}\\n")',
              f'*.* action(type="omfile" file="{server.output}" template="fields")']
    return "\n".join(lines) + "\n"


@pytest.fixture
def rsyslog_factory(tmp_path: Path) -> Iterator[Callable[..., RsyslogServer]]:
    binary = find_tool("rsyslogd")
    if binary is None:
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)")
    servers: list[RsyslogServer] = []

    def make(tls: Optional[TlsFiles] = None, tcp_port: Optional[int] = None) -> RsyslogServer:
        workdir = tmp_path / f"rsyslog-{len(servers)}"
        workdir.mkdir()
        server = RsyslogServer(workdir, tcp_port or free_port(), None if tls else _free_udp_port(), tls)
        conf = workdir / "rsyslog.conf"
        conf.write_text(_config(server))
        err = open(workdir / "rsyslogd.err", "wb")  # noqa: SIM115 - closed with the process
        server.process = subprocess.Popen([binary, "-n", "-f", str(conf), "-i", str(workdir / "rsyslogd.pid")],
                                          stdout=err, stderr=subprocess.STDOUT)
        servers.append(server)
        if not wait_for_port(server.host, server.tcp_port, timeout=15):
            server.stop()
            raise RuntimeError(f"rsyslogd did not start on port {server.tcp_port}:\n{server.log()}")
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def rsyslog(rsyslog_factory: Callable[..., RsyslogServer]) -> RsyslogServer:
    """An rsyslogd with a UDP and a TCP input on free loopback ports."""
    return rsyslog_factory()
