"""Shared fixtures: hub settings, an in-process hub on a free loopback port, leak checks."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.migrate import upgrade_engine
from cloudcounter.hub.api import CTX
from cloudcounter.hub.app import create_app
from cloudcounter.hub.auth import mint_customer_token
from cloudcounter.hub.context import HubContext
from cloudcounter.hub.demo import seed
from cloudcounter.hub.settings import Settings
from cloudcounter.sim.client import login

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() == "true"
FACES_DIR = Path(os.environ.get("CLOUDCOUNTER_FACES_DIR", ROOT.parent / "shared/data/faces"))

# ------------------------------------------------------------------ peer connection registry
_PEERS: "weakref.WeakSet[Any]" = weakref.WeakSet()


def pytest_configure(config: pytest.Config) -> None:
    try:
        from aiortc import RTCPeerConnection
    except ImportError:  # pragma: no cover
        return
    original = RTCPeerConnection.__init__
    if getattr(original, "_cc_tracked", False):
        return

    def tracked(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _PEERS.add(self)
    tracked._cc_tracked = True  # type: ignore[attr-defined]
    RTCPeerConnection.__init__ = tracked  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
async def no_leaked_tasks_or_peers() -> AsyncIterator[None]:
    """Every test must leave no running task and no open aiortc peer connection."""
    yield
    current = asyncio.current_task()
    deadline = time.monotonic() + 3.0
    while True:
        tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        peers = [p for p in list(_PEERS) if p.connectionState != "closed"]
        if (not tasks and not peers) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert not tasks, f"leaked tasks: {[t.get_name() + ' ' + repr(t.get_coro()) for t in tasks]}"
    assert not peers, f"unclosed peer connections: {len(peers)}"


@pytest.fixture(scope="session")
def faces() -> Path:
    """The shared face data set, verified against its SHA256SUMS; skipped with a visible
    reason when absent, except under CI=true where absence is a failure."""
    from cloudcounter.vision.data import faces_dir, verify_checksums

    directory = faces_dir()
    if not (directory / "SHA256SUMS").is_file():
        reason = (f"face data set not found at {directory}; set CLOUDCOUNTER_FACES_DIR "
                  "(docs/vision.md lists where each file comes from)")
        if CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    problems = verify_checksums(directory)
    if problems:
        pytest.fail("face data set is corrupt: " + "; ".join(problems))
    return directory


@pytest.fixture(scope="session")
def face_clip(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s VP8/Opus WebM of a real face clip (made once per run, never committed)."""
    from cloudcounter.media.sources import prepare_vp8_webm

    target = tmp_path_factory.mktemp("clips") / "talking.webm"
    return prepare_vp8_webm(faces / "video/talking.mp4", target, seconds=6, gop=30)


async def _holds(predicate: Any) -> bool:
    value = predicate()
    if inspect.isawaitable(value):
        value = await value
    return bool(value)


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate()`` (a plain or an async callable) until it holds; fail after
    ``timeout`` seconds saying ``what``."""
    deadline = time.monotonic() + timeout
    while not await _holds(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ settings and hub
def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db", demo=True, port=0,
        recordings_dir=tmp_path / "recordings", customer_photos_dir=tmp_path / "photos",
        ice_servers=[], media_host_addresses=["127.0.0.1"],
        offer_timeout_s=5.0, wrap_up_s=5.0, customer_grace_s=3.0, position_interval_s=0.2,
        vision_prestart=False,  # most tests need no vision worker: it starts with a call
        media_workers=0,  # media in the test hub process (test_media_workers*.py: workers)
        faces_dir=FACES_DIR, web_dir=ROOT / "clients/web", node_modules_dir=ROOT / "node_modules")
    base.update(overrides)
    return Settings(**base).checked()


@dataclass
class Hub:
    url: str
    settings: Settings
    app: web.Application

    @property
    def ctx(self) -> HubContext:
        return self.app[CTX]

    def customer_token(self, customer_id: str = "cus_demo_barack", **kw: Any) -> str:
        return mint_customer_token(self.settings.customer_token_secret, customer_id, 600, **kw)

    async def get(self, path: str, user: str = "audrey",
                  **kw: Any) -> tuple[int, Any, dict[str, str]]:
        """GET as a staff user (the auditor by default): status, body (JSON decoded when
        it is JSON, bytes otherwise) and headers."""
        token = await self.agent_token(user)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as h:
            async with h.get(self.url + path, **kw) as r:
                body = await (r.json() if r.content_type == "application/json" else r.read())
                return r.status, body, dict(r.headers)

    async def call_detail(self, call_id: str) -> dict[str, Any]:
        """The auditor's view of a call (call, timeline, recordings), journal flushed first."""
        await self.ctx.journal.flush()
        status, body, _ = await self.get(f"/api/calls/{call_id}")
        assert status == 200, body
        return dict(body)

    async def agent_token(self, username: str = "alice") -> str:
        from cloudcounter.hub.demo import DEMO_USERS
        password = next(p for u, p, *_ in DEMO_USERS if u == username)
        return await login(self.url, username, password)


async def prepare_database(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    try:
        await upgrade_engine(engine)
        await seed(make_sessionmaker(engine), settings.faces_dir)
    finally:
        await engine.dispose()


@pytest.fixture
async def hub_factory(tmp_path: Path) -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> Hub:
        settings = make_settings(tmp_path, **overrides)
        await prepare_database(settings)
        app = create_app(settings)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Hub(f"http://127.0.0.1:{port}", settings, app)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def hub(hub_factory: Any) -> Hub:
    return await hub_factory()
