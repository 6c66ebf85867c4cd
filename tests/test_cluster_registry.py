"""The member registry's contract (hub nodes and media workers with leases), run against
both backends: in memory (one process) and Redis (a server of the test's own)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from cloudcounter.cluster.redis_client import make_redis
from cloudcounter.cluster.registry import LapseWatcher, LeaseKeeper, MemoryRegistry, \
    RedisRegistry, Registry
from tests.conftest import wait_until
from tests.redislab import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Registry, Any]]:
    """A registry and a way to let time pass: the memory one's clock is stepped; Redis
    leases expire on Redis's own clock, so they are short and waited for."""
    if request.param == "memory":
        clock = Clock()

        async def elapse(seconds: float) -> None:
            clock.now += seconds
        yield MemoryRegistry(clock), elapse
        return
    server = request.getfixturevalue("redis_server")
    client = make_redis(server.url)
    await client.flushdb()

    async def wait(seconds: float) -> None:
        await asyncio.sleep(seconds)
    yield RedisRegistry(client), wait
    await client.aclose()


# Redis leases expire on Redis's clock: a member meant to stay alive holds a long lease (no
# pause of the test process can outlast it), one meant to lapse a short one, waited out.
LIVE = 60.0
LAPSE = 0.3


async def test_members_join_renew_and_leave(registry: tuple[Registry, Any]) -> None:
    reg, elapse = registry
    await reg.heartbeat("node", "n1", {"port": 1}, LIVE)
    await reg.heartbeat("node", "n2", {"port": 2}, LIVE)
    await reg.heartbeat("media", "w1", {"calls": 0}, LIVE)
    assert [(m.member_id, m.info, m.alive) for m in await reg.members("node")] == \
        [("n1", {"port": 1}, True), ("n2", {"port": 2}, True)]
    await reg.heartbeat("node", "n1", {"port": 1, "calls": 3}, LIVE)  # info is replaced
    assert (await reg.members("node"))[0].info == {"port": 1, "calls": 3}
    await reg.leave("node", "n2")  # a clean exit is never a lapse
    assert [m.member_id for m in await reg.members("node")] == ["n1"]
    assert [m.member_id for m in await reg.alive("media")] == ["w1"]


async def test_a_lapsed_member_is_claimed_once_then_forgotten(
        registry: tuple[Registry, Any]) -> None:
    reg, elapse = registry
    await reg.heartbeat("node", "dead", {}, LAPSE)
    await reg.heartbeat("node", "live", {}, LIVE)
    assert not await reg.claim_lapsed("node", "live", "dead", 10)  # alive: nothing to claim
    await elapse(LAPSE * 2)
    assert [(m.member_id, m.alive) for m in await reg.members("node")] == \
        [("dead", False), ("live", True)]
    assert await reg.alive("node") == [m for m in await reg.members("node") if m.alive]
    claims = await asyncio.gather(*(reg.claim_lapsed("node", "dead", f"c{i}", 10)
                                    for i in range(8)))
    assert sum(claims) == 1
    assert not await reg.claim_lapsed("node", "live", "c0", 10)
    await reg.forget("node", "live")  # a live member is never forgotten
    await reg.forget("node", "dead")
    assert [m.member_id for m in await reg.members("node")] == ["live"]


async def test_a_claim_expires_so_another_survivor_takes_over(
        registry: tuple[Registry, Any]) -> None:
    reg, elapse = registry
    await reg.heartbeat("node", "dead", {}, LAPSE)
    await elapse(LAPSE * 2)
    assert await reg.claim_lapsed("node", "dead", "first", LAPSE)
    assert not await reg.claim_lapsed("node", "dead", "second", LIVE)
    await elapse(LAPSE * 2)  # the first claimant died before it forgot the member
    assert await reg.claim_lapsed("node", "dead", "second", LIVE)


async def test_a_member_back_before_anyone_forgot_it_is_alive_again(
        registry: tuple[Registry, Any]) -> None:
    reg, elapse = registry
    await reg.heartbeat("node", "n1", {}, LAPSE)
    await elapse(LAPSE * 2)
    await reg.heartbeat("node", "n1", {}, LIVE)  # it was only paused
    assert [m.alive for m in await reg.members("node")] == [True]
    assert not await reg.claim_lapsed("node", "n1", "other", 10)


async def test_keeper_and_watcher(tmp_path: Path, redis_server: RedisServer) -> None:
    """Real tasks on Redis: a keeper keeps its member alive; when it stops without leaving
    (a crash), one of two watchers handles the lapse, once."""
    client = make_redis(redis_server.url)
    await client.flushdb()
    reg = RedisRegistry(client)
    calls = {"n": 0}
    lease = 6.0  # renewed every 2 s: only a pause of 4 s would let it lapse while kept
    keeper = LeaseKeeper(reg, "node", "n1", lambda: {"calls": calls["n"]}, lease)
    await keeper.start()
    handled: list[tuple[str, str]] = []

    def on_lapsed(watcher: str) -> Any:
        async def handle(member_id: str) -> None:
            handled.append((watcher, member_id))
        return handle
    watchers = [LapseWatcher(reg, "node", name, on_lapsed(name), 0.1)
                for name in ("a", "b")]
    for w in watchers:
        w.start()
    try:
        calls["n"] = 7
        await keeper.beat()
        assert (await reg.members("node"))[0].info == {"calls": 7}
        await asyncio.sleep(2.5)  # at least one renewal meanwhile: nothing lapses
        assert handled == [] and [m.alive for m in await reg.members("node")] == [True]
        await keeper.stop(leave=False)  # as if killed
        await wait_until(lambda: handled, 30, "a watcher to handle the lapse")
        await wait_until(lambda: _empty(reg), 30, "the lapsed member to be forgotten")
        assert [m for _, m in handled] == ["n1"]
    finally:
        for w in watchers:
            await w.stop()
        await keeper.stop()
        await client.aclose()


async def _empty(reg: Registry) -> bool:
    return not await reg.members("node")
