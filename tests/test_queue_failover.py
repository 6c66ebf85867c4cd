"""A lapsed node's loss applied to the shared queue (cloudcounter.queue.failover): its
agents go offline (an offer withdrawn without penalty, a call in progress back to its
place), its customers' calls fall under the grace rules; retried on conflicts, refusals
counted. On the memory store, and with the node's entries read from a real Redis."""

from __future__ import annotations

from typing import Any

import pytest

from cloudcounter.errors import Conflict
from cloudcounter.queue.failover import fail_over, fail_over_presence
from cloudcounter.queue.model import AgentState, CallState
from cloudcounter.queue.rules import RulesConfig
from cloudcounter.queue.stores.memory import MemoryTransitions
from tests import redislab
from tests.redislab import RedisServer

redis_server = redislab.redis_server  # a private Redis per test (the fixture)
CONFIG = RulesConfig(offer_timeout_s=600, customer_grace_s=600, wrap_up_s=600)


async def centre() -> tuple[MemoryTransitions, list[str]]:
    """Agents 1 (offered call a), 2 (in call b), 3 (on another node, in call c); call d
    waiting, its customer on the lapsed node; e waiting, its customer elsewhere."""
    store = MemoryTransitions(CONFIG)
    ids = []
    for n, (call, customer) in enumerate((("a", "x/1"), ("b", "y/2"), ("c", "x/3"),
                                          ("d", "x/4"), ("e", "y/5")), start=1):
        await store.enqueue(call_id=call, customer_id=customer, service="card_loss",
                            skill="cards")
        ids.append(call)
        if n <= 3:
            await store.agent_online(n, f"agent{n}", frozenset({"cards"}))
            await store.set_agent_status(n, AgentState.AVAILABLE)
            await store.offer(call, n)
            if n >= 2:
                await store.accept(n, call)
    return store, ids


async def test_a_lapsed_nodes_agents_go_offline_and_its_customers_fall_under_grace(
) -> None:
    store, _ = await centre()
    report = await fail_over(store, [1, 2], lambda c: c.startswith("x/"))
    snap = await store.snapshot()
    assert (report.agents_offline, report.calls_held) == (2, 3)  # a, c, d: x/ customers
    assert snap.agents[1].state is AgentState.OFFLINE and snap.agents[1].missed_offers == 0
    a, b, c = snap.calls["a"], snap.calls["b"], snap.calls["c"]
    assert a.state is CallState.QUEUED and a.held  # offer withdrawn; its customer lapsed too
    assert b.state is CallState.QUEUED and b.dropped_by == "agent2" and not b.held
    assert c.state is CallState.IN_CALL and c.held  # agent 3 elsewhere: grace for x/3
    assert snap.calls["d"].held and not snap.calls["e"].held
    assert snap.agents[3].state is AgentState.BUSY
    kinds = [e.kind for e in report.events]
    assert kinds.count("customer.disconnected") == 3 and "call.requeued" in kinds
    again = await fail_over(store, [1, 2], lambda c: c.startswith("x/"))
    assert (again.agents_offline, again.calls_held) == (2, 0)  # repeated: nothing new


async def test_conflicts_are_retried_and_refusals_counted() -> None:
    store, _ = await centre()
    real = store.agent_offline
    tries = {"n": 0}

    async def flaky(agent_id: int) -> Any:
        tries["n"] += 1
        if tries["n"] <= 2:
            raise Conflict("the queue changed meanwhile", code="conflict")
        return await real(agent_id)
    store.agent_offline = flaky  # type: ignore[method-assign]
    report = await fail_over(store, [1], lambda c: False)
    assert report.agents_offline == 1 and report.refused["conflict"] == 2
    assert (await store.snapshot()).agents[1].state is AgentState.OFFLINE


@pytest.mark.integration
async def test_the_nodes_entries_come_from_presence_and_are_removed(
        redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    from cloudcounter.cluster.presence import RedisPresence

    client = aioredis.from_url(redis_server.url)
    try:
        lapsed, alive = RedisPresence(client, "node-x"), RedisPresence(client, "node-y")
        await lapsed.connected("agent", "1")
        await lapsed.connected("customer", "x/4")
        await alive.connected("agent", "3")
        assert await lapsed.entries_of("node-x") == {"agent": ["1"], "customer": ["x/4"]}
        store, _ = await centre()
        report = await fail_over_presence(store, alive, "node-x")
        assert (report.agents_offline, report.calls_held) == (1, 1)
        snap = await store.snapshot()
        assert snap.agents[1].state is AgentState.OFFLINE and snap.calls["d"].held
        assert not snap.calls["c"].held  # x/3 was not among the node's entries
        assert await alive.entries_of("node-x") == {"agent": [], "customer": []}
        assert await alive.where("agent", "3") == "node-y"
    finally:
        await client.aclose()
