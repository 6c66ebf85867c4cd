"""Real networks for tests: a coturn TURN server on loopback, network namespaces with veth
pairs, and link impairments. Everything is created by the test and removed in ``finally``;
nothing reaches an outside address.

coturn is Debian's (``apt-get install coturn``, the Makefile's ``system-packages`` step);
namespaces need root and ``ip netns``. Tests skip with the reason when either is missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cloudcounter.hub.app import create_app
from tests.conftest import Hub, make_settings, prepare_database


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ coturn
@dataclass
class TurnServer:
    """A coturn process on ``host:port`` with the REST-API shared secret ``secret``."""

    host: str
    port: int
    secret: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def turnserver_binary() -> str:
    path = shutil.which("turnserver") or ("/usr/bin/turnserver"
                                          if os.path.exists("/usr/bin/turnserver") else None)
    if path is None:
        pytest.skip("coturn is not installed (Debian: apt-get install coturn; "
                    "`make system-packages` installs it)")
    return path


@contextmanager
def coturn(directory: Path, host: str = "127.0.0.1",
           relay_ports: tuple[int, int] = (49152, 65535)) -> Iterator[TurnServer]:
    """Start coturn with a temporary configuration: listening and relaying on ``host`` only
    (loopback peers allowed, since the hub is on loopback too), shared-secret
    authentication, no TLS, no CLI, no database outside ``directory``."""
    binary = turnserver_binary()
    directory.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    port = free_udp_port(host)
    log = directory / "turnserver.log"
    conf = directory / "turnserver.conf"
    conf.write_text("\n".join([
        f"listening-ip={host}", f"relay-ip={host}", f"listening-port={port}",
        f"min-port={relay_ports[0]}", f"max-port={relay_ports[1]}",
        "use-auth-secret", f"static-auth-secret={secret}", "realm=cloudcounter.test",
        "fingerprint", "allow-loopback-peers", "no-multicast-peers", "no-tls", "no-dtls",
        "no-cli", "no-software-attribute", f"userdb={directory / 'turndb'}",
        f"pidfile={directory / 'turnserver.pid'}", f"log-file={log}", "simple-log",
        "no-stdout-log", "verbose", ""]))
    process = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=directory)
    server = TurnServer(host, port, secret, log, process)
    try:
        deadline = time.monotonic() + 20
        while not _listening(server):
            if process.poll() is not None:
                raise RuntimeError(f"turnserver exited ({process.returncode}):\n"
                                   + server.log_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError("turnserver did not answer STUN within 20 s:\n"
                                   + server.log_text()[-2000:])
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(server: TurnServer) -> bool:
    """A STUN binding request answered (RFC 5389: magic cookie, random transaction id)."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(request, (server.host, server.port))
            reply = s.recv(2048)
        except OSError:
            return False
    return reply[:2] == b"\x01\x01" and reply[8:20] == request[8:20]


# ------------------------------------------------------------------ namespaces and veth
def require_netns() -> None:
    """Skip unless root with a working ``ip netns`` (and veth)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (run as root, or the test is skipped)")
    if shutil.which("ip") is None:
        pytest.skip("`ip` (iproute2) is not installed")
    name = f"ccprobe{os.getpid()}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"`ip netns` is unavailable here: {probe.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result


@dataclass
class Link:
    """A veth pair: ``outer`` in the root namespace (``outer_ip``), ``inner`` in the
    namespace (``inner_ip``), a /30 of a private range."""

    outer: str
    inner: str
    outer_ip: str
    inner_ip: str


@dataclass
class Namespace:
    name: str
    links: dict[str, Link] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return ip(*args, ns=self.name, check=check)

    def up(self, link: str) -> None:
        """Bring ``link`` up (and its address), as a phone joining a network."""
        lk = self.links[link]
        self.run("ip", "addr", "replace", f"{lk.inner_ip}/30", "dev", lk.inner)
        self.run("ip", "link", "set", lk.inner, "up")

    def down(self, link: str) -> None:
        """Take ``link`` down and its address away, as a phone leaving a network."""
        lk = self.links[link]
        self.run("ip", "link", "set", lk.inner, "down")
        self.run("ip", "addr", "flush", "dev", lk.inner)


@contextmanager
def namespace(prefix: str, links: dict[str, int]) -> Iterator[Namespace]:
    """A namespace ``<prefix><pid>`` with one veth pair per ``links`` entry (name →
    subnet number n: 10.231.n.0/30, 10.231.n.1 outside and 10.231.n.2 inside). The
    inner ends start down; :meth:`Namespace.up` brings one up. Removed on exit."""
    require_netns()
    tag = f"{os.getpid() % 100000}"
    ns = Namespace(f"{prefix}{tag}")
    created: list[str] = []
    try:
        ip("ip", "netns", "add", ns.name)
        ns.run("ip", "link", "set", "lo", "up")
        for name, n in links.items():
            outer, inner = f"{prefix[:4]}{n}o{tag}"[:15], f"{prefix[:4]}{n}i{tag}"[:15]
            ip("ip", "link", "add", outer, "type", "veth", "peer", "name", inner,
               "netns", ns.name)
            created.append(outer)
            lk = Link(outer, inner, f"10.231.{n}.1", f"10.231.{n}.2")
            ip("ip", "addr", "add", f"{lk.outer_ip}/30", "dev", outer)
            ip("ip", "link", "set", outer, "up")
            ns.links[name] = lk
        yield ns
    finally:
        for outer in created:
            ip("ip", "link", "del", outer, check=False)
        ip("ip", "netns", "del", ns.name, check=False)


# ------------------------------------------------------------------ a hub on more addresses
@asynccontextmanager
async def hub_on(tmp_path: Path, addresses: Sequence[str],
                 **overrides: Any) -> AsyncIterator[Hub]:
    """The in-process test hub (``tests.conftest``) listening on 127.0.0.1 and on
    ``addresses`` (the root-namespace ends of veth pairs), all on one port."""
    settings = make_settings(tmp_path, **overrides)
    await prepare_database(settings)
    app = create_app(settings)
    # a connection left on a network that went away ends only at its ping timeout: do not
    # wait for it when the test is over
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        for address in addresses:
            await web.TCPSite(runner, address, port).start()
        yield Hub(f"http://127.0.0.1:{port}", settings, app)
    finally:
        await runner.cleanup()


def url_on(hub: Hub, address: str) -> str:
    return hub.url.replace("127.0.0.1", address)
