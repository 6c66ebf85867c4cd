"""Presence comes back by itself: Redis restarted (its hashes gone) or a lapsed node's
entries removed, the node that still holds the connections writes them back within a lease
period, without taking an entry another node wrote since (issue 11)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudcounter.cluster.presence import RedisPresence
from cloudcounter.sim.client import Connection
from tests.conftest import wait_until
from tests import redislab
from tests.redislab import RedisServer

redis_server = redislab.redis_server  # a private Redis per test (the fixture)

pytestmark = pytest.mark.integration


async def test_presence_is_written_back_after_redis_loses_it(
        hub_factory: Any, redis_server: RedisServer) -> None:
    a = await hub_factory(node_id="node-a", socketio_manager="redis",
                          redis_url=redis_server.url, node_lease_s=1.0)
    presence = a.ctx.cluster.presence
    joe = Connection(a.url, "/customer", a.customer_token("cus_demo_joe"))
    barack = Connection(a.url, "/customer", a.customer_token("cus_demo_barack"))
    try:
        await joe.connect()
        await barack.connect()
        assert await presence.where("customer", "cus_demo_joe") == "node-a"

        redis_server.restart()  # every hash gone

        async def where(ident: str) -> Any:
            try:
                return await presence.where("customer", ident)
            except Exception:  # noqa: BLE001 - the client reconnecting
                return None
        await wait_until(lambda: _is(where("cus_demo_joe"), "node-a"), 60,
                         "joe's presence written back")
        await wait_until(lambda: _is(where("cus_demo_barack"), "node-a"), 60,
                         "barack's presence written back")

        # removed as if node A had lapsed, while barack reconnected to node B meanwhile
        await presence.drop_node("node-a")
        await RedisPresence(a.ctx.cluster.redis, "node-b").connected("customer",
                                                                     "cus_demo_barack")
        await wait_until(lambda: _is(where("cus_demo_joe"), "node-a"), 30,
                         "joe's presence written back after the lapse")
        assert await presence.where("customer", "cus_demo_barack") == "node-b"  # not taken

        await joe.close()  # a closed connection is not written back
        await wait_until(lambda: _is(where("cus_demo_joe"), None), 30, "joe gone")
        assert "cus_demo_joe" not in presence._held["customer"]
    finally:
        await joe.close()
        await barack.close()
        await asyncio.sleep(0)


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
