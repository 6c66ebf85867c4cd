"""One contract for every queue store backend (cloudcounter.queue.transitions): memory and
PostgreSQL run the same tests; fencing is PostgreSQL's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from cloudcounter.errors import CloudCounterError
from cloudcounter.queue.model import AgentState, CallState, EndReason
from cloudcounter.queue.rules import RulesConfig
from cloudcounter.queue.stores.memory import MemoryTransitions
from cloudcounter.queue.transitions import QueueTransitions
from tests.pglab import private_database

SLOW = RulesConfig(offer_timeout_s=600, wrap_up_s=600, customer_grace_s=600, exclusion_s=600)
NOW = RulesConfig(offer_timeout_s=0, wrap_up_s=0, customer_grace_s=0, exclusion_s=0)
Factory = Callable[[RulesConfig], Awaitable[QueueTransitions]]


@pytest.fixture(scope="module")
def queue_pg_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own, migrated, dropped afterwards."""
    with private_database("cc_queue_", migrate=True) as url:
        yield url


@pytest.fixture
async def pg_engine(queue_pg_url: str) -> AsyncIterator[Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(queue_pg_url, pool_size=20, max_overflow=0)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE queue_calls, queue_agents"))
        await conn.execute(text("UPDATE queue_leader SET epoch = 0, node = NULL"))
    yield engine
    await engine.dispose()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest) -> Factory:
    if request.param == "memory":
        async def memory(config: RulesConfig) -> QueueTransitions:
            return MemoryTransitions(config)
        return memory
    engine = request.getfixturevalue("pg_engine")
    from cloudcounter.queue.stores.postgres import PostgresTransitions

    async def postgres(config: RulesConfig) -> QueueTransitions:
        return PostgresTransitions(engine, config)
    return postgres


async def refused(aw: Awaitable[Any]) -> str | None:
    with pytest.raises(CloudCounterError) as e:
        await aw
    return e.value.code


async def agents_ready(store: QueueTransitions, *ids: int) -> None:
    for i in ids:
        await store.agent_online(i, f"agent{i}", frozenset({"cards"}))
        await store.set_agent_status(i, AgentState.AVAILABLE)


async def enqueue(store: QueueTransitions, n: int) -> str:
    call_id = f"call{n}"
    await store.enqueue(call_id=call_id, customer_id=f"cust{n}", service="card_loss",
                        skill="cards")
    return call_id


async def test_a_call_from_request_to_wrap_up(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1)
    c = await enqueue(store, 1)
    events = await store.offer(c, 1)
    assert "call.offered" in [e.kind for e in events]
    await store.accept(1, c)
    snap = await store.snapshot()
    assert snap.calls[c].state is CallState.IN_CALL and snap.agents[1].state is AgentState.BUSY
    events = await store.end(c, EndReason.COMPLETED, by_agent=1)
    assert events[0].kind == "call.ended" and events[0].data()["reason"] == "completed"
    snap = await store.snapshot()
    assert c not in snap.calls and snap.agents[1].state is AgentState.WRAP_UP
    await store.finish_wrap_up(1, c)
    assert (await store.snapshot()).agents[1].state is AgentState.AVAILABLE


async def test_refusals_change_nothing(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1, 2)
    c = await enqueue(store, 1)
    before = await store.snapshot()
    assert await refused(store.accept(1, c)) == "offer_expired"
    assert await refused(store.decline(1, c)) == "offer_expired"
    assert await refused(store.offer("nope", 1)) == "unknown_call"
    assert await refused(store.finish_wrap_up(1, c)) == "no_wrap_up"
    assert await refused(store.requeue(c, "x")) == "not_assigned"
    assert await refused(store.enqueue(call_id="other", customer_id="cust1", service="s",
                                       skill="cards")) == "already_in_call"
    after = await store.snapshot()  # (a sequence number may be skipped: only order counts)
    assert (dict(after.calls), dict(after.agents)) == (dict(before.calls), dict(before.agents))
    await store.offer(c, 1)
    assert await refused(store.offer(c, 2)) == "not_waiting"
    assert await refused(store.accept(2, c)) == "offer_expired"
    assert await refused(store.set_agent_status(1, AgentState.AWAY)) == "agent_engaged"
    await store.agent_online(9, "lead", lead=True)
    assert await refused(store.set_agent_status(9, AgentState.AVAILABLE)) == "lead_not_routed"
    assert await refused(store.offer(c, 9)) == "not_waiting"


async def test_decline_excludes_and_miss_counts(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1)
    c = await enqueue(store, 1)
    await store.offer(c, 1)
    await store.decline(1, c)
    snap = await store.snapshot()
    assert snap.calls[c].state is CallState.QUEUED and snap.agents[1].missed_offers == 0
    assert await refused(store.offer(c, 1)) == "agent_excluded"


async def test_deadlines_come_due_and_expire(make_store: Factory) -> None:
    store = await make_store(RulesConfig(offer_timeout_s=0, max_missed_offers=1, wrap_up_s=0,
                                         customer_grace_s=0, exclusion_s=0))
    await agents_ready(store, 1, 2)
    c1, c2 = await enqueue(store, 1), await enqueue(store, 2)
    await store.offer(c1, 1)
    assert [(d.kind, d.call_id) for d in await store.due_deadlines()] == [("offer", c1)]
    events = await store.expire_offer(c1)
    assert "offer.timeout" in [e.kind for e in events]
    snap = await store.snapshot()
    assert snap.calls[c1].state is CallState.QUEUED and snap.agents[1].state is AgentState.AWAY
    assert [d.kind for d in await store.due_deadlines()] == ["exclusion"]
    await store.expire_exclusions(c1)
    assert (await store.snapshot()).calls[c1].excluded == ()
    await store.offer(c2, 2)
    await store.accept(2, c2)
    await store.grace_start(c2)
    assert [d.kind for d in await store.due_deadlines()] == ["grace"]
    events = await store.expire_grace(c2)
    assert events[0].data()["reason"] == "failed"  # the call had been answered
    assert [d.kind for d in await store.due_deadlines()] == ["wrap_up"]
    await store.expire_wrap_up(2)
    snap = await store.snapshot()
    assert c2 not in snap.calls and snap.agents[2].state is AgentState.AVAILABLE
    assert await store.due_deadlines() == []


async def test_a_call_queued_past_the_maximum_wait_times_out(make_store: Factory) -> None:
    store = await make_store(RulesConfig(offer_timeout_s=600, max_wait_s=0))
    await agents_ready(store, 1)
    c1, c2 = await enqueue(store, 1), await enqueue(store, 2)
    await store.offer(c1, 1)  # an offered call is not waiting: it does not time out
    assert [(d.kind, d.call_id) for d in await store.due_deadlines()] == [("wait", c2)]
    assert await store.expire_wait(c1) == ()
    events = await store.expire_wait(c2)
    assert [(e.kind, e.data()["reason"]) for e in events] == [("call.ended", "timed_out")]
    snap = await store.snapshot()
    assert c2 not in snap.calls and snap.calls[c1].state is CallState.OFFERED
    assert await store.expire_wait(c2) == ()  # repeated: nothing more


async def test_a_callback_keeps_its_place_and_comes_due(make_store: Factory) -> None:
    store = await make_store(RulesConfig(callback_answer_s=0, customer_grace_s=600))
    c1, c2, c3 = await enqueue(store, 1), await enqueue(store, 2), await enqueue(store, 3)
    assert await refused(store.request_callback(c2, "cust1")) == "forbidden"
    await store.request_callback(c2, "cust2")
    await store.request_callback(c3, "cust3")
    assert await refused(store.request_callback(c2, "cust2")) == "callback_requested"
    await store.grace_start(c2)  # expected: no grace period for a callback
    await store.grace_start(c3)
    snap = await store.snapshot()
    assert snap.calls[c2].held and snap.calls[c2].grace_until is None
    assert [d.kind for d in await store.due_deadlines()] == []  # c1 is ahead
    await store.end(c1, EndReason.ABANDONED, by_customer="cust1")
    assert [(d.kind, d.call_id) for d in await store.due_deadlines()] == \
        [("callback_place", c2)]
    assert [e.kind for e in await store.callback_due(c2)] == ["callback.due"]
    assert await store.callback_due(c2) == ()  # repeated: nothing
    await store.grace_end(c2)  # back: answered first
    snap = await store.snapshot()
    assert (snap.calls[c2].callback, snap.calls[c2].held, snap.calls[c2].priority) == \
        (None, False, 9)
    assert [d.kind for d in await store.due_deadlines()] == []  # c2 is first again
    await store.end(c2, EndReason.ABANDONED, by_customer="cust2")
    # c3's place: due, never taken up (answer window 0): abandoned
    assert ("callback_place", c3) in [(d.kind, d.call_id) for d in await store.due_deadlines()]
    await store.callback_due(c3)
    assert ("callback", c3) in [(d.kind, d.call_id) for d in await store.due_deadlines()]
    events = await store.expire_callback(c3)
    assert [e.kind for e in events] == ["callback.expired", "call.ended"]
    assert c3 not in (await store.snapshot()).calls


async def test_the_offer_streak_is_stored_with_the_agent(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1)
    services = ("card_loss", "card_loss", "password_reset")
    for n, service in enumerate(services):
        c = f"call{n}"
        await store.enqueue(call_id=c, customer_id=f"cust{n}", service=service,
                            skill="cards")
        await store.offer(c, 1)
        await store.decline(1, c)
        await store.end(c, EndReason.ABANDONED)
        await store.set_agent_status(1, AgentState.AVAILABLE)
    # offers in a row per service, whatever became of them: 1, 2, then 1 for the new one
    assert (await store.snapshot()).agents[1].streak == ("password_reset", 1)
    await store.enqueue(call_id="call9", customer_id="cust9", service="password_reset",
                        skill="cards")
    await store.offer("call9", 1)
    assert (await store.snapshot()).agents[1].streak == ("password_reset", 2)


async def test_requeue_keeps_order_and_a_lead_takes_over(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1)
    c1, c2 = await enqueue(store, 1), await enqueue(store, 2)
    await store.offer(c1, 1)
    await store.accept(1, c1)
    await store.agent_offline(1)
    snap = await store.snapshot()
    first, second = snap.calls[c1], snap.calls[c2]
    assert first.state is CallState.QUEUED and first.dropped_by == "agent1"
    assert (first.enqueued_at, first.seq) < (second.enqueued_at, second.seq)
    assert snap.agents[1].state is AgentState.OFFLINE
    await store.agent_online(9, "lead", lead=True)
    assert await refused(store.take_over(9, c2)) == "not_dropped"
    events = await store.take_over(9, c1)
    assert events[0].kind == "call.taken_over"
    snap = await store.snapshot()
    assert snap.calls[c1].agent_id == 9 and snap.agents[9].state is AgentState.BUSY


async def test_requeue_of_an_offer_and_the_customer_hangs_up(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1)
    c = await enqueue(store, 1)
    await store.offer(c, 1)
    await store.requeue(c, "agent_lost")
    assert (await store.snapshot()).calls[c].state is CallState.QUEUED
    events = await store.end(c, EndReason.COMPLETED, by_customer="cust1")
    assert events[0].data()["reason"] == "abandoned"
    await enqueue(store, 1)  # the customer may call again once the call ended


async def test_concurrent_offers_of_one_agent_exactly_one_wins(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1)
    calls = [await enqueue(store, n) for n in range(12)]
    results = await asyncio.gather(*(store.offer(c, 1) for c in calls),
                                   return_exceptions=True)
    won = [c for c, res in zip(calls, results) if not isinstance(res, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(res, CloudCounterError) for res in results
               if isinstance(res, BaseException)), results
    snap = await store.snapshot()
    assert [c.call_id for c in snap.calls.values() if c.state is CallState.OFFERED] == won
    assert snap.agents[1].call_id == won[0]


async def test_concurrent_enqueues_of_one_customer_one_wins(make_store: Factory) -> None:
    store = await make_store(SLOW)
    results = await asyncio.gather(*(store.enqueue(
        call_id=f"c{n}", customer_id="same", service="s", skill="cards") for n in range(8)),
        return_exceptions=True)
    assert sum(1 for res in results if not isinstance(res, BaseException)) == 1, results
    assert {getattr(res, "code", None) for res in results
            if isinstance(res, BaseException)} == {"already_in_call"}
    assert len((await store.snapshot()).calls) == 1


@pytest.mark.postgres
async def test_an_old_router_epoch_cannot_commit(pg_engine: Any) -> None:
    from cloudcounter.queue.leader import Leadership
    from cloudcounter.queue.stores.postgres import PostgresTransitions

    old, new = Leadership(pg_engine, "old"), Leadership(pg_engine, "new")
    try:
        first = await old.try_acquire()
        assert first is not None and await new.try_acquire() is None  # one router at a time
        router = PostgresTransitions(pg_engine, SLOW)
        router.epoch = first
        await agents_ready(router, 1, 2)
        c1, c2 = await enqueue(router, 1), await enqueue(router, 2)
        await router.offer(c1, 1)  # the leader's write commits
        await old.release()  # (a paused leader whose lock was lost)
        second = await new.try_acquire()
        assert second is not None and second > first
        assert await refused(router.offer(c2, 2)) == "fenced"
        assert await refused(router.expire_offer(c1)) == "fenced"  # deadlines: the router's
        assert (await router.snapshot()).calls[c2].state is CallState.QUEUED
        router.epoch = second
        await router.offer(c2, 2)
    finally:
        await old.release()
        await new.release()


@pytest.mark.postgres
async def test_the_indexes_refuse_a_double_assignment(pg_engine: Any) -> None:
    """Even a write that skips the rules cannot give one agent two live calls."""
    from sqlalchemy.exc import IntegrityError

    from cloudcounter.queue.stores.postgres import PostgresTransitions

    store = PostgresTransitions(pg_engine, SLOW)
    await agents_ready(store, 1)
    c1, c2 = await enqueue(store, 1), await enqueue(store, 2)
    await store.offer(c1, 1)
    with pytest.raises(IntegrityError):
        async with pg_engine.begin() as conn:
            await conn.execute(text("UPDATE queue_calls SET state = 'offered', agent_id = 1 "
                                    "WHERE call_id = :c"), {"c": c2})


async def test_agents_go_offline_from_any_state(make_store: Factory) -> None:
    store = await make_store(SLOW)
    await agents_ready(store, 1, 2)
    c1, c2 = await enqueue(store, 1), await enqueue(store, 2)
    await store.offer(c1, 1)
    await store.accept(1, c1)
    await store.end(c1, EndReason.COMPLETED, by_agent=1)
    await store.agent_offline(1)  # in wrap-up: its ended call is nobody's to requeue
    await store.offer(c2, 2)
    events = await store.end(c2, EndReason.FAILED)  # an offered call ended by the hub
    assert "offer.withdrawn" in [e.kind for e in events]
    snap = await store.snapshot()
    assert snap.agents[1].state is AgentState.OFFLINE and snap.agents[1].call_id is None
    assert snap.agents[2].state is AgentState.AVAILABLE and snap.calls == {}
    await store.agent_offline(2)
    await store.agent_offline(3)  # unknown: nothing to do
    assert (await store.snapshot()).agents[2].state is AgentState.OFFLINE


async def test_a_storm_of_concurrent_offers_never_double_assigns(make_store: Factory) -> None:
    store = await make_store(SLOW)
    agents = list(range(1, 6))
    await agents_ready(store, *agents)
    calls = [await enqueue(store, n) for n in range(15)]
    pairs = [(c, a) for c in calls for a in agents]
    results = await asyncio.gather(*(store.offer(c, a) for c, a in pairs),
                                   return_exceptions=True)
    assert all(isinstance(res, CloudCounterError) for res in results
               if isinstance(res, BaseException)), results
    won = [p for p, res in zip(pairs, results) if not isinstance(res, BaseException)]
    snap = await store.snapshot()
    offered = {c.call_id: c.agent_id for c in snap.calls.values()
               if c.state is CallState.OFFERED}
    assert len(won) == len(offered) == len(set(offered.values())) >= 1
    assert {a.agent_id: a.call_id for a in snap.agents.values() if a.call_id} == \
        {agent: call for call, agent in offered.items()}


@pytest.mark.postgres
async def test_a_dead_leaders_lock_goes_with_its_session(pg_engine: Any) -> None:
    """The old leader never releases (it is frozen): its session is ended (as PostgreSQL
    does for a dead client) and another node is elected with a higher epoch."""
    from cloudcounter.queue.leader import Leadership

    old, new = Leadership(pg_engine, "old"), Leadership(pg_engine, "new")
    try:
        first = await old.try_acquire()
        assert first is not None and await new.try_acquire() is None
        assert old._conn is not None
        pid = (await old._conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await old._conn.commit()
        async with pg_engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        second = None
        for _ in range(200):  # the backend goes away asynchronously
            second = await new.try_acquire()
            if second is not None:
                break
            await asyncio.sleep(0.05)
        assert second is not None and second > first
    finally:
        dead, old._conn, old.epoch = old._conn, None, None
        if dead is not None:  # its connection is dead: closing it is all there is to do
            with contextlib.suppress(Exception):
                await dead.close()
        await new.release()
