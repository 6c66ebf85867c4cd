"""Requests between processes: one contract for the in-process and the Redis transport,
then what only Redis has (a restarted server, several processes)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest
from redis.exceptions import RedisError

from cloudcounter.cluster.redis_client import make_redis
from cloudcounter.cluster.requests import LocalRequests, RedisRequests, RemoteError, \
    Requests, RequestTimeout
from cloudcounter.errors import InvalidState
from tests.redislab import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


async def handler(method: str, payload: dict[str, Any]) -> dict[str, Any]:
    if method == "echo":
        return {"echo": payload}
    if method == "refuse":
        raise InvalidState("not now", code="no_media")
    if method == "slow":
        await asyncio.sleep(float(payload["s"]))
        return {"slept": payload["s"]}
    raise RuntimeError("boom")  # a bug on the far side


@pytest.fixture(params=["local", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Requests, Requests]]:
    """(asker, answerer): in one object for the local transport; two clients (as two
    processes would have) on Redis."""
    if request.param == "local":
        local = LocalRequests()
        await local.serve("worker-1", handler)
        yield local, local
        await local.close()
        return
    server = request.getfixturevalue("redis_server")
    clients = [make_redis(server.url) for _ in range(2)]
    await clients[0].flushdb()
    asker, answerer = RedisRequests(clients[0], "node-a"), RedisRequests(clients[1], "worker-1")
    await answerer.serve("worker-1", handler)
    yield asker, answerer
    await asker.close()
    await answerer.close()
    for c in clients:
        await c.aclose()


async def test_answers_and_errors_keep_their_codes(pair: tuple[Requests, Requests]) -> None:
    asker, _ = pair
    assert await asker.request("worker-1", "echo", {"sdp": "v=0"}, 5) == {"echo": {"sdp": "v=0"}}
    with pytest.raises(RemoteError) as refused:
        await asker.request("worker-1", "refuse", {}, 5)
    assert (refused.value.code, refused.value.message, refused.value.http_status) == \
        ("no_media", "not now", 409)
    with pytest.raises(RemoteError) as failed:
        await asker.request("worker-1", "crash", {}, 5)
    assert failed.value.code == "remote_failed"
    assert await asker.request("worker-1", "echo", {"n": 1}, 5) == {"echo": {"n": 1}}


async def test_nobody_answering_times_out(pair: tuple[Requests, Requests]) -> None:
    asker, _ = pair
    with pytest.raises(RequestTimeout):
        await asker.request("worker-9", "echo", {}, 0.3)
    with pytest.raises(RequestTimeout):
        await asker.request("worker-1", "slow", {"s": 2}, 0.2)


async def test_many_requests_in_flight_each_get_their_own_answer(
        pair: tuple[Requests, Requests]) -> None:
    asker, _ = pair
    answers = await asyncio.gather(*(asker.request("worker-1", "echo", {"i": i}, 10)
                                     for i in range(200)))
    assert answers == [{"echo": {"i": i}} for i in range(200)]


async def test_answering_resumes_after_redis_restarts(redis_server: RedisServer) -> None:
    clients = [make_redis(redis_server.url) for _ in range(2)]
    asker, answerer = RedisRequests(clients[0], "node-a"), RedisRequests(clients[1], "worker-1")
    await answerer.serve("worker-1", handler)
    try:
        assert await asker.request("worker-1", "echo", {}, 5) == {"echo": {}}
        redis_server.restart()
        for _ in range(100):  # the first requests after a restart may meet dead connections
            try:
                assert await asker.request("worker-1", "echo", {"x": 1}, 1) == \
                    {"echo": {"x": 1}}
                break
            except (RequestTimeout, RedisError):
                await asyncio.sleep(0.1)
        else:
            pytest.fail("no answer within 100 attempts after Redis restarted")
    finally:
        await asker.close()
        await answerer.close()
        for c in clients:
            await c.aclose()
