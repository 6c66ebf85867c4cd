"""Hub nodes on one private Redis server (issue 11, ``CLOUDCOUNTER_SOCKETIO_MANAGER=redis``):
an emit on either node reaches a client on the other through the hub's JSON-only manager,
and comes back after a Redis restart; nodes hold leases, and a frozen node lapses (its
presence removed) and comes back when it thaws."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cloudcounter.signaling.fanout import HubRedisManager
from cloudcounter.signaling.namespaces import agent_room, customer_room
from cloudcounter.sim.client import Connection
from tests.conftest import Hub, wait_until
from tests import redislab
from tests.redislab import RedisServer, free_port

redis_server = redislab.redis_server  # a private Redis per test (the fixture)

pytestmark = pytest.mark.integration


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
        # presence: every node sees which node holds each connection
        assert await b.ctx.cluster.presence.where("customer", "cus_demo_joe") == "node-a"
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
        await customer.close()
        await wait_until(lambda: _gone(b, "customer", "cus_demo_joe"), 10, "presence cleared")
    finally:
        await customer.close()
        await agent.close()
        await asyncio.sleep(0)


async def _gone(hub: Hub, kind: str, ident: str) -> bool:
    return await hub.ctx.cluster.presence.where(kind, ident) is None


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


def start_node_process(tmp: Path, redis_url: str, node_id: str, lease_s: float
                       ) -> subprocess.Popen[bytes]:
    """A second hub node as its own process (its own SQLite file; the queue is per node)."""
    cli = Path(sys.executable).parent / "cloudcounter"
    env = {**os.environ, "CLOUDCOUNTER_DEMO": "1",
           "CLOUDCOUNTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/{node_id}.db",
           "CLOUDCOUNTER_RECORDINGS_DIR": str(tmp / f"rec-{node_id}"),
           "CLOUDCOUNTER_SOCKETIO_MANAGER": "redis", "CLOUDCOUNTER_REDIS_URL": redis_url,
           "CLOUDCOUNTER_NODE_ID": node_id, "CLOUDCOUNTER_NODE_LEASE_S": str(lease_s),
           "CLOUDCOUNTER_VISION_PRESTART": "0", "CLOUDCOUNTER_LOG_LEVEL": "WARNING"}
    done = subprocess.run([str(cli), "db", "upgrade"], env=env, capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with (tmp / f"{node_id}.log").open("wb") as log:
        return subprocess.Popen([str(cli), "serve", "--port", str(free_port())], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


async def test_a_frozen_node_lapses_and_comes_back(
        hub_factory: Any, redis_server: RedisServer, tmp_path: Path) -> None:
    """Node B (a process) is frozen with SIGSTOP past its lease: node A sees it lapse, counts
    it and removes its presence; thawed, B renews its lease and is alive again."""
    a = await hub_factory(node_id="node-a", socketio_manager="redis",
                          redis_url=redis_server.url, node_lease_s=2.0)
    proc = start_node_process(tmp_path, redis_server.url, "node-b", 2.0)
    try:
        cluster = a.ctx.cluster
        await wait_until(lambda: _alive(cluster, {"node-a", "node-b"}), 60, "both nodes alive")
        # an agent held by B, as B would have written it
        from cloudcounter.cluster.presence import RedisPresence
        await RedisPresence(cluster.redis, "node-b").connected("agent", "42")
        assert await cluster.presence.where("agent", "42") == "node-b"
        proc.send_signal(signal.SIGSTOP)
        await wait_until(lambda: "node-b" in cluster.lapsed, 30, "node B seen lapsed")
        assert await cluster.presence.where("agent", "42") is None
        assert a.ctx.metrics.node_lapses._value.get() == 1
        assert await cluster.alive_nodes() == ["node-a"]
        proc.send_signal(signal.SIGCONT)
        await wait_until(lambda: _alive(cluster, {"node-a", "node-b"}), 30, "node B back")
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=20)


async def _alive(cluster: Any, expected: set[str]) -> bool:
    return set(await cluster.alive_nodes()) == expected
