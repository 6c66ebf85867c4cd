"""Two hub nodes as two real processes (different ports, one private Redis server of the
test's own, ``CLOUDCOUNTER_SOCKETIO_MANAGER=redis``): what one node emits reaches a client
held by the other, both ways, and the fan-out comes back after that Redis server restarts.

Each node has its own SQLite file (the queue is per node until the shared queue exists), so
the emits crossing nodes here are the ones a node sends to a room whose member sits on the
other node: a customer's ``call:ended`` (its room, ``customer_room``) and an agent's
``agent:state`` (``agent_room``), the same customer and the same agent being connected to
both nodes (the demo seed gives both databases the same ids).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from cloudcounter.sim.client import Connection, demo_customer_token, login
from tests.conftest import FACES_DIR, wait_until
from tests import redislab
from tests.redislab import RedisServer, free_port

redis_server = redislab.redis_server  # a private Redis per test (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = Path(sys.executable).parent / "cloudcounter"


class NodeProcess:
    """``cloudcounter serve`` on a free port, its own database and recordings."""

    def __init__(self, tmp: Path, redis_url: str, node_id: str) -> None:
        self.node_id, self.port = node_id, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"{node_id}.log"
        self.env = {
            **os.environ, "CLOUDCOUNTER_DEMO": "1",
            "CLOUDCOUNTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/{node_id}.db",
            "CLOUDCOUNTER_RECORDINGS_DIR": str(tmp / f"rec-{node_id}"),
            "CLOUDCOUNTER_CUSTOMER_PHOTOS_DIR": str(tmp / f"photos-{node_id}"),
            "CLOUDCOUNTER_SOCKETIO_MANAGER": "redis", "CLOUDCOUNTER_REDIS_URL": redis_url,
            "CLOUDCOUNTER_NODE_ID": node_id, "CLOUDCOUNTER_VISION_PRESTART": "0",
            "CLOUDCOUNTER_FACES_DIR": str(FACES_DIR), "CLOUDCOUNTER_LOG_LEVEL": "WARNING"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "NodeProcess":
        for command in (["db", "upgrade"], ["demo", "seed"]):  # the same ids on every node
            done = subprocess.run([str(CLI), *command], env=self.env, capture_output=True,
                                  timeout=120)
            assert done.returncode == 0, done.stderr
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    async def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"node {self.node_id} exited: "
                                 f"{self.log_path.read_text(errors='replace')[-2000:]}")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(self.url + "/healthz",
                                    timeout=aiohttp.ClientTimeout(total=2)) as r:
                    return r.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer
                ) -> AsyncIterator[tuple[NodeProcess, NodeProcess]]:
    a = NodeProcess(tmp_path, redis_server.url, "node-a")
    b = NodeProcess(tmp_path, redis_server.url, "node-b")
    try:
        a.start()
        b.start()
        for node in (a, b):
            await wait_until(node.ready, 120, f"{node.node_id} serving")
        yield a, b
    finally:
        a.stop()
        b.stop()


async def next_event(conn: Connection, event: str, timeout: float) -> dict[str, Any]:
    name, data = await conn.expect(event, timeout=timeout)
    assert name == event, (name, data)
    return data


async def state_heard(conn: Connection, state: str, timeout: float = 1.0) -> bool:
    """An ``agent:state`` saying ``state`` arrives within ``timeout`` (others are skipped:
    a node's own sign-in of the agent says ``away``); lost ones are tried again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            data = await next_event(conn, "agent:state", left)
        except asyncio.TimeoutError:
            return False
        if data.get("state") == state:
            return True
    return False


async def agent_on(node: NodeProcess, username: str = "alice") -> Connection:
    from cloudcounter.hub.demo import DEMO_USERS
    password = next(p for u, p, *_ in DEMO_USERS if u == username)
    conn = Connection(node.url, "/agent", await login(node.url, username, password))
    await conn.connect()
    await next_event(conn, "agent:state", 30)  # its own node's greeting
    return conn


async def subscribed(node: NodeProcess, redis_url: str) -> bool:
    """Both nodes' listeners are on the channel (``PUBSUB NUMSUB``)."""
    import redis.asyncio as aredis
    client = aredis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        (_, count), = await client.pubsub_numsub("cloudcounter")
        return int(count) >= 2
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        await client.aclose()


async def test_two_node_processes_reach_each_others_clients_and_survive_a_redis_restart(
        nodes: tuple[NodeProcess, NodeProcess], redis_server: RedisServer) -> None:
    a, b = nodes
    await wait_until(lambda: subscribed(a, redis_server.url), 60, "both nodes listening")
    token = await demo_customer_token(a.url, "cus_demo_joe")
    joe_a = Connection(a.url, "/customer", token)  # the same customer on both nodes
    joe_b = Connection(b.url, "/customer", token)
    alice_a = alice_b = None
    try:
        await joe_a.connect()
        await joe_b.connect()
        # node B ends the call it queued; node A's connection of that customer hears of it
        reply = await joe_b.call("call:request", {"service": "card_loss"})
        await joe_b.sio.emit("call:hangup", {"call_id": reply["call_id"]},
                             namespace="/customer")
        ended = await next_event(joe_a, "call:ended", 30)
        assert ended == {"call_id": reply["call_id"], "reason": "abandoned", "by": "customer"}

        # node A changes an agent's state; the agent's console on node B hears of it
        alice_a, alice_b = await agent_on(a), await agent_on(b)
        assert (await alice_a.call("agent:status", {"status": "available"}))["state"] == \
            "available"
        # (node B only ever signs alice in as away: "available" can only come from node A)
        await wait_until(lambda: state_heard(alice_b, "available"), 30,  # type: ignore[arg-type]
                         "node A's agent:state at node B")

        # Redis restarted (subscriptions and all): node B's emits reach node A again
        redis_server.restart()
        while not alice_a.events.empty():  # heard before the restart
            alice_a.events.get_nowait()
        statuses = iter(["away", "available"] * 1000)

        async def crosses() -> bool:
            status = next(statuses)
            await alice_b.call("agent:status", {"status": status})  # type: ignore[union-attr]
            return await state_heard(alice_a, status, 1.0)  # type: ignore[arg-type]
        # the stock listener retries with a back-off (1 s doubling, capped at 60 s)
        await wait_until(crosses, 120, "an emit of node B at node A after the restart")
    finally:
        for conn in (joe_a, joe_b, alice_a, alice_b):
            if conn is not None:
                await conn.close()
        await asyncio.sleep(0)
