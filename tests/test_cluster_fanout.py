"""Socket.IO across hub nodes (issue 11): two hubs on one private Redis server
(``CLOUDCOUNTER_SOCKETIO_MANAGER=redis``); an emit on either reaches a client on the other,
through the hub's JSON-only manager; after a Redis restart the fan-out comes back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from cloudcounter.signaling.fanout import HubRedisManager
from cloudcounter.signaling.namespaces import agent_room, customer_room
from cloudcounter.sim.client import Connection
from tests.conftest import Hub, wait_until
from tests.redislab import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


async def two_nodes(hub_factory: Any, redis_server: RedisServer, tmp_path: Path
                    ) -> tuple[Hub, Hub]:
    common = dict(socketio_manager="redis", redis_url=redis_server.url,
                  database_url=f"sqlite+aiosqlite:///{tmp_path}/shared.db")
    a = await hub_factory(node_id="node-a", **common)
    b = await hub_factory(node_id="node-b", **common)
    for hub in (a, b):
        assert isinstance(hub.ctx.sio.manager, HubRedisManager)
        await wait_until(lambda h=hub: _subscribed(h), 10, "the node listening on Redis")
    return a, b


def _subscribed(hub: Hub) -> bool:
    pubsub = getattr(hub.ctx.sio.manager, "pubsub", None)
    return bool(pubsub is not None and pubsub.subscribed)


async def received(conn: Connection, event: str, timeout: float = 10) -> dict[str, Any]:
    name, data = await conn.expect(event, timeout=timeout)
    assert name == event
    return data  # type: ignore[no-any-return]


async def test_an_emit_on_one_node_reaches_a_client_on_the_other(
        hub_factory: Any, redis_server: RedisServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = await two_nodes(hub_factory, redis_server, tmp_path)
    customer = Connection(a.url, "/customer", a.customer_token("cus_demo_joe"))
    agent = Connection(b.url, "/agent", await b.agent_token("alice"))
    try:
        await customer.connect()
        await agent.connect()
        await received(agent, "agent:state")
        # the JSON-only path: the manager scans no payload for binary data on the way
        from socketio import async_pubsub_manager, packet

        class Scanned(packet.Packet):
            @classmethod
            def data_is_binary(cls, data: Any) -> bool:
                raise AssertionError("the manager scanned a payload for binary data")
        monkeypatch.setattr(async_pubsub_manager, "Packet", Scanned)
        await b.ctx.sio.emit("call:position", {"call_id": "call_x", "position": 3,
                                               "estimated_wait_s": None},
                             to=customer_room("cus_demo_joe"), namespace="/customer")
        assert (await received(customer, "call:position"))["position"] == 3
        uid = next(a_.agent_id for a_ in await b.ctx.dispatcher.store.agents()
                   if a_.username == "alice")
        await a.ctx.sio.emit("queue:stats", {"services": []}, to=agent_room(uid),
                             namespace="/agent")
        assert await received(agent, "queue:stats") == {"services": []}
    finally:
        await customer.close()
        await agent.close()
        await asyncio.sleep(0)


async def test_the_fan_out_comes_back_after_redis_restarts(
        hub_factory: Any, redis_server: RedisServer, tmp_path: Path) -> None:
    a, b = await two_nodes(hub_factory, redis_server, tmp_path)
    customer = Connection(a.url, "/customer", a.customer_token("cus_demo_joe"))
    try:
        await customer.connect()
        redis_server.restart()  # everything it held is gone, subscriptions included
        n = 0

        async def arrives() -> bool:
            nonlocal n
            n += 1
            await b.ctx.sio.emit("call:position", {"call_id": "call_x", "position": n,
                                                   "estimated_wait_s": None},
                                 to=customer_room("cus_demo_joe"), namespace="/customer")
            try:
                await customer.expect("call:position", timeout=0.5)
            except (asyncio.TimeoutError, AssertionError):
                return False
            return True
        # the listener retries with a capped back-off (1 s, 2 s, 4 s ...): within 60 s
        await wait_until(arrives, 60, "an emit from node B at node A after the restart")
    finally:
        await customer.close()
        await asyncio.sleep(0)
