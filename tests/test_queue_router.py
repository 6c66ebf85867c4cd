"""The router engine (cloudcounter.queue.router) on the memory store and on PostgreSQL: a
leader's passes offer waiting calls, a second engine waits while the first leads and takes
over with a higher epoch once it closes, deadlines expire offers, bring callbacks due in
turn and end calls that waited past the maximum, a superseded router steps down, events
reach the subscriber off the routing path."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from cloudcounter.queue.model import AgentState, CallState
from cloudcounter.queue.router import Election, LocalElection, QueueRouter
from cloudcounter.queue.rules import Event, RulesConfig
from cloudcounter.queue.stores.memory import MemoryTransitions
from cloudcounter.queue.transitions import QueueTransitions
from tests.conftest import wait_until
from tests.test_queue_store_contract import pg_engine, queue_pg_url  # noqa: F401

SLOW = RulesConfig(offer_timeout_s=600, wrap_up_s=600, customer_grace_s=600, exclusion_s=600)
QUICK_OFFERS = RulesConfig(offer_timeout_s=0.2, wrap_up_s=600, customer_grace_s=600,
                           exclusion_s=600)
FAST = dict(route_interval_s=0.02, deadline_interval_s=0.02, acquire_interval_s=0.02)


class Backend:
    """Stores and elections on one backend; routers are closed at the end."""

    def __init__(self, kind: str, engine: Any = None) -> None:
        self.kind, self.engine = kind, engine
        self.local = LocalElection()
        self.stores: dict[RulesConfig, QueueTransitions] = {}
        self.routers: list[QueueRouter] = []

    def store(self, config: RulesConfig = SLOW) -> QueueTransitions:
        """A fresh store object (on PostgreSQL each router has its own, as a node does)."""
        if self.kind == "memory":
            return self.stores.setdefault(config, MemoryTransitions(config))
        from cloudcounter.queue.stores.postgres import PostgresTransitions
        return PostgresTransitions(self.engine, config)

    def election(self, node: str) -> Election:
        if self.kind == "memory":
            return self.local.member()
        from cloudcounter.queue.leader import Leadership
        return Leadership(self.engine, node)

    def router(self, node: str, config: RulesConfig = SLOW, **kw: Any) -> QueueRouter:
        store = self.store(config)
        clock = store.clock if isinstance(store, MemoryTransitions) else time.time
        router = QueueRouter(store, self.election(node), clock=clock, **{**FAST, **kw})
        self.routers.append(router)
        return router

    async def close(self) -> None:
        for router in self.routers:
            await router.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_backend(request: pytest.FixtureRequest) -> Backend:
    # (a plain fixture: the PostgreSQL database is made outside the test's event loop)
    engine = request.getfixturevalue("pg_engine") if request.param == "postgres" else None
    return Backend(request.param, engine)


@pytest.fixture
async def backend(new_backend: Backend) -> Any:
    try:
        yield new_backend
    finally:
        await new_backend.close()


async def ready(store: QueueTransitions, *ids: int, skill: str = "cards") -> None:
    for i in ids:
        await store.agent_online(i, f"agent{i}", frozenset({skill}))
        await store.set_agent_status(i, AgentState.AVAILABLE)


async def enqueue(store: QueueTransitions, n: int, skill: str = "cards") -> str:
    await store.enqueue(call_id=f"call{n}", customer_id=f"cust{n}", service=skill, skill=skill)
    return f"call{n}"


def offered(router: QueueRouter) -> Callable[[], Awaitable[dict[str, int | None]]]:
    async def calls() -> dict[str, int | None]:
        snap = await router.store.snapshot()
        return {c.call_id: c.agent_id for c in snap.calls.values()
                if c.state is CallState.OFFERED}
    return calls


async def test_a_leader_pass_offers_waiting_calls_in_order(backend: Backend) -> None:
    seen: list[Event] = []
    router = backend.router("a", subscriber=seen.append)
    store = router.store
    await ready(store, 1, 2)
    await ready(store, 3, skill="loans")
    c1, c2, c3 = await enqueue(store, 1), await enqueue(store, 2), await enqueue(store, 3)
    c4 = await enqueue(store, 4, skill="loans")
    router.start()
    await wait_until(lambda: len(seen) >= 6, 10, "three offers' events delivered")
    snap = await store.snapshot()
    assert {c: snap.calls[c].agent_id for c in (c1, c2, c4)} == {c1: 1, c2: 2, c4: 3}
    assert snap.calls[c3].state is CallState.QUEUED  # no cards agent left for the third
    assert router.leading and router.stats.offers == 3
    assert sorted(e.call_id or "" for e in seen if e.kind == "call.offered") == [c1, c2, c4]


async def test_a_second_engine_waits_then_takes_over_with_a_higher_epoch(
        backend: Backend) -> None:
    first = backend.router("first")
    first.start()
    await wait_until(lambda: first.leading, 10, "the first engine leading")
    second = backend.router("second")
    second.start()
    store = first.store
    await ready(store, 1, 2)
    c1 = await enqueue(store, 1)
    await wait_until(lambda: first.stats.offers == 1, 10, "the first engine's offer")
    assert second.stats.passes == 0 and not second.leading  # it asked, and waits
    first_epoch = first.epoch
    assert first_epoch is not None
    await first.close()
    await wait_until(lambda: second.leading, 10, "the second engine leading")
    assert second.epoch is not None and second.epoch > first_epoch
    c2 = await enqueue(store, 2)
    await wait_until(lambda: second.stats.offers == 1, 10, "the second engine's offer")
    assert await offered(second)() == {c1: 1, c2: 2}


async def test_deadlines_expire_offers(backend: Backend) -> None:
    seen: list[str] = []
    router = backend.router("a", QUICK_OFFERS, subscriber=lambda e: seen.append(e.kind))
    store = router.store
    await ready(store, 1)
    c1 = await enqueue(store, 1)
    router.start()
    await wait_until(lambda: "offer.timeout" in seen, 10, "the offer to expire")
    snap = await store.snapshot()
    call = snap.calls[c1]
    assert call.state is CallState.QUEUED and [a for a, _ in call.excluded] == [1]
    assert snap.agents[1].missed_offers == 1 and router.stats.expiries >= 1
    assert seen.index("call.offered") < seen.index("offer.timeout")


async def test_deadlines_bring_waiting_callbacks_due_in_turn(backend: Backend) -> None:
    """No agent is signed in: the deadline pass alone makes the first-in-line callback
    due, then the next (a due callback no longer holds the place); each customer coming
    back is then answered first."""
    seen: list[Event] = []
    config = RulesConfig(offer_timeout_s=600, customer_grace_s=600, callback_answer_s=600)
    router = backend.router("a", config, subscriber=seen.append)
    store = router.store
    c1, c2 = await enqueue(store, 1), await enqueue(store, 2)
    for call_id, customer in ((c1, "cust1"), (c2, "cust2")):
        await store.request_callback(call_id, customer)
        await store.grace_start(call_id)  # the customer goes away until called back
    router.start()

    def due() -> list[str]:
        return [e.call_id or "" for e in seen if e.kind == "callback.due"]
    await wait_until(lambda: len(due()) == 2, 10, "both callbacks due")
    assert due() == [c1, c2]  # in queue order
    for call_id in (c2, c1):
        assert [e.kind for e in await store.grace_end(call_id)] == ["callback.taken"]
    snap = await store.snapshot()
    for call_id in (c1, c2):
        c = snap.calls[call_id]
        assert (c.callback, c.held, c.priority) == (None, False, 9)
    assert not any(e.kind == "callback.expired" for e in seen)


async def test_a_call_that_waited_past_the_maximum_ends_timed_out(backend: Backend) -> None:
    seen: list[Event] = []
    router = backend.router("a", RulesConfig(max_wait_s=0.2), subscriber=seen.append)
    c1 = await enqueue(router.store, 1)  # no agent signed in
    router.start()
    await wait_until(lambda: any(e.kind == "call.ended" for e in seen), 10,
                     "the waiting call to time out")
    ended = next(e for e in seen if e.kind == "call.ended")
    assert (ended.call_id, ended.data()["reason"]) == (c1, "timed_out")
    assert c1 not in (await router.store.snapshot()).calls


async def test_events_are_bounded_and_a_failing_subscriber_does_not_stop_them(
        backend: Backend) -> None:
    got: list[str] = []
    gate = asyncio.Event()

    async def subscriber(e: Event) -> None:
        await gate.wait()
        if e.call_id == "x1":
            raise RuntimeError("a subscriber's bug")
        got.append(e.call_id or "")
    router = backend.router("a", subscriber=subscriber, events_max=3)
    router.start()
    # published before the pump runs: three fit in the queue, three are dropped
    router.publish(tuple(Event("test", f"x{n}") for n in range(6)))
    assert router.stats.events_dropped == 3
    gate.set()
    await wait_until(lambda: got == ["x0", "x2"], 5, "the other events delivered")
    router.publish((Event("test", "x9"),))
    await wait_until(lambda: got == ["x0", "x2", "x9"], 5, "delivery going on")


@pytest.mark.postgres
async def test_a_superseded_router_is_fenced_and_steps_down(pg_engine: Any  # noqa: F811
                                                           ) -> None:
    """The old leader's lock session is ended (as when its node's lease lapses) and another
    router is elected: the old one's next offer is refused ``fenced``; it steps down and
    does not lead again while the new one does."""
    b = Backend("postgres", pg_engine)
    try:
        old = b.router("old", acquire_interval_s=0.05, route_interval_s=0.05)
        old.start()
        await wait_until(lambda: old.leading, 10, "the old router leading")
        lock = getattr(old.election, "_conn")
        pid = (await lock.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await lock.commit()
        async with pg_engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            await admin.commit()
        new = b.router("new", route_interval_s=3600)
        new.start()
        await wait_until(lambda: new.leading, 10, "the new router leading")
        assert old.leading  # it does not know yet
        store = new.store
        await ready(store, 1)
        c1 = await enqueue(store, 1)
        await wait_until(lambda: old.stats.fenced == 1, 10, "the old router fenced")
        assert not old.leading and old.stats.offers == 0
        assert (await store.snapshot()).calls[c1].state is CallState.QUEUED
        await asyncio.sleep(0.3)  # the old router tries to be elected again meanwhile
        assert not old.leading
        assert await new.route_pass() == 1
    finally:
        with contextlib.suppress(Exception):
            await b.close()
