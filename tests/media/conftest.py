"""Fixtures for the media tests: real aiortc peers on loopback, no hub, no STUN."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from cloudcounter.media.call import CallMedia, Role
from cloudcounter.media.client import ClientPeer

HERE = Path(__file__).parent
LOOPBACK = ["127.0.0.1"]


@pytest.fixture(scope="session")
def vp8_clip(face_clip: Path) -> Path:
    """A 6 s 640x480 VP8/Opus WebM made from a shared clip (see ``face_clip``)."""
    return face_clip


def _threads() -> set[threading.Thread]:
    # The default executor's workers outlive a test by design (aiortc uses it too).
    return {
        t for t in threading.enumerate()
        if t.is_alive() and not t.name.startswith(("asyncio_", "ThreadPoolExecutor"))
    }


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Fail a test that leaves a task or a thread (decoder, recorder, tap) behind."""
    threads_before = _threads()
    yield
    current = asyncio.current_task()
    deadline = time.monotonic() + 3.0
    while True:
        tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        threads = _threads() - threads_before
        if (not tasks and not threads) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert not tasks, f"leaked tasks: {tasks}"
    assert not threads, f"leaked threads: {[t.name for t in threads]}"


Connect = Callable[[CallMedia, Role, ClientPeer], Awaitable[None]]


async def connect(call: CallMedia, role: Role, peer: ClientPeer) -> None:
    answer = await call.answer(role, await peer.offer())
    await peer.accept(answer)


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate()``; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
async def make_call() -> AsyncIterator[Callable[..., CallMedia]]:
    calls: list[CallMedia] = []

    def factory(**kwargs: object) -> CallMedia:
        kwargs.setdefault("call_id", f"call{len(calls)}")
        kwargs.setdefault("ice_servers", [])
        kwargs.setdefault("host_addresses", LOOPBACK)
        call = CallMedia(**kwargs)  # type: ignore[arg-type]
        calls.append(call)
        return call

    yield factory
    for call in calls:
        await call.close()


@pytest.fixture
async def make_peer() -> AsyncIterator[Callable[..., ClientPeer]]:
    peers: list[ClientPeer] = []

    def factory(**kwargs: object) -> ClientPeer:
        kwargs.setdefault("ice_servers", [])
        kwargs.setdefault("host_addresses", LOOPBACK)
        peer = ClientPeer(**kwargs)  # type: ignore[arg-type]
        peers.append(peer)
        return peer

    yield factory
    for peer in peers:
        await peer.close()
