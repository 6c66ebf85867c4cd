"""The queue's rules, driven by a fake clock: offers, timeouts, re-queueing, grace, wrap-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudcounter.errors import Conflict, Forbidden, InvalidState, RateLimited
from cloudcounter.queue.dispatcher import Dispatcher, QueueConfig
from cloudcounter.queue.model import AgentState, CallState
from cloudcounter.queue.ports import MemoryJournal
from cloudcounter.queue.store import MemoryQueueStore

ALL = frozenset({"cards", "loans"})


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Recorder:
    """A QueueListener that keeps what it was told."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        async def record(*args: Any) -> None:
            self.log.append((name, args))
        return record

    def offers(self) -> list[tuple[str, str]]:
        return [(a[0].call_id, a[1].username) for n, a in self.log if n == "call_offered"]


@pytest.fixture
def q() -> Dispatcher:
    d = Dispatcher(MemoryQueueStore(), Recorder(), MemoryJournal(),  # type: ignore[arg-type]
                   QueueConfig(offer_timeout_s=10, max_missed_offers=2, wrap_up_s=30,
                               customer_grace_s=20, exclusion_s=60, max_wait_s=600,
                               max_queue_length=3, position_interval_s=1),
                   clock=Clock())
    return d


def clock(q: Dispatcher) -> Clock:
    return q.clock  # type: ignore[return-value]


async def agent(q: Dispatcher, uid: int, name: str, skills: frozenset[str] = ALL) -> None:
    await q.agent_online(uid, name, skills)
    await q.set_agent_status(uid, AgentState.AVAILABLE)
    clock(q).t += 1  # agents become idle one after another


async def request(q: Dispatcher, customer: str, skill: str = "cards", prio: int = 0) -> str:
    call, _, _ = await q.request_call(customer_id=customer, service="svc_" + skill, skill=skill,
                                      priority=prio)
    clock(q).t += 1
    return call.call_id


async def test_mixed_priorities_are_offered_in_order(q: Dispatcher) -> None:
    low = await request(q, "c1", prio=0)
    high = await request(q, "c2", prio=5)
    mid = await request(q, "c3", prio=2)
    for uid, name in [(1, "a1"), (2, "a2"), (3, "a3")]:
        await agent(q, uid, name)
        await q.route_once()
    rec: Recorder = q.listener  # type: ignore[assignment]
    assert rec.offers() == [(high, "a1"), (mid, "a2"), (low, "a3")]
    journal: MemoryJournal = q.journal  # type: ignore[assignment]
    assert journal.kinds(high) == ["call.requested", "call.queued", "agent.state", "call.offered"]


async def test_missed_offer_goes_to_the_next_agent_and_repeat_misser_goes_away(
        q: Dispatcher) -> None:
    await agent(q, 1, "slow")
    await agent(q, 2, "quick")
    c1 = await request(q, "c1")
    await q.route_once()
    rec: Recorder = q.listener  # type: ignore[assignment]
    assert rec.offers() == [(c1, "slow")]
    # "quick" is busy with another call, so the missed call must wait for a free agent
    clock(q).t += 11
    await q.tick()
    assert (await q.store.get_call(c1)).state is CallState.QUEUED  # type: ignore[union-attr]
    assert (await q.store.get_agent(1)).missed_offers == 1  # type: ignore[union-attr]
    await q.route_once()
    assert rec.offers()[-1] == (c1, "quick")  # re-offered to the next agent, not to "slow"
    await q.accept(2, c1)
    # a second miss puts "slow" away
    c2 = await request(q, "c2")
    await q.route_once()
    assert rec.offers()[-1] == (c2, "slow")
    clock(q).t += 11
    await q.tick()
    assert (await q.store.get_agent(1)).state is AgentState.AWAY  # type: ignore[union-attr]
    journal: MemoryJournal = q.journal  # type: ignore[assignment]
    assert "offer.timeout" in journal.kinds(c2)


async def test_agent_disconnect_requeues_at_the_original_place(q: Dispatcher) -> None:
    await agent(q, 1, "a1")
    first = await request(q, "c1")
    await q.route_once()
    await q.accept(1, first)
    second = await request(q, "c2")
    third = await request(q, "c3")
    await q.agent_offline(1)  # lost in the middle of the call
    call = await q.store.get_call(first)
    assert call is not None and call.state is CallState.QUEUED and call.agent_id is None
    pos, _ = await q.position_of(call)
    assert pos == 1  # ahead of the two calls that came after it
    await agent(q, 2, "a2")
    await q.route_once()
    rec: Recorder = q.listener  # type: ignore[assignment]
    assert rec.offers()[-1] == (first, "a2")
    requeued = [a for n, a in rec.log if n == "call_queued"]
    assert requeued and requeued[0][0].call_id == first and requeued[0][3] is True
    assert {second, third}.isdisjoint({c for c, _ in rec.offers()})


async def test_customer_reconnect_within_grace_keeps_place_and_expiry_abandons(
        q: Dispatcher) -> None:
    a = await request(q, "c1")
    b = await request(q, "c2")
    await q.customer_disconnected(a)
    clock(q).t += 10
    await q.tick()
    await q.customer_reconnected(a)
    call = await q.store.get_call(a)
    assert call is not None and (await q.position_of(call))[0] == 1
    await q.customer_disconnected(b)
    await agent(q, 1, "a1")
    await q.route_once()  # b is held: it is not offered while its customer is away
    rec: Recorder = q.listener  # type: ignore[assignment]
    assert rec.offers() == [(a, "a1")]
    clock(q).t += 21
    await q.tick()
    assert await q.store.get_call(b) is None
    ended = [args for n, args in rec.log if n == "call_ended"]
    assert ended[-1][0].call_id == b and ended[-1][1] == "abandoned"


async def test_wrap_up_then_available_and_handle_time_feeds_estimates(q: Dispatcher) -> None:
    await agent(q, 1, "a1", frozenset({"cards"}))
    c = await request(q, "c1")
    await q.route_once()
    await q.accept(1, c)
    clock(q).t += 100
    await q.customer_hangup(c, "c1")
    a = await q.store.get_agent(1)
    assert a is not None and a.state is AgentState.WRAP_UP
    nxt = await request(q, "c2")
    await q.route_once()
    rec: Recorder = q.listener  # type: ignore[assignment]
    assert all(cid != nxt for cid, _ in rec.offers())  # nothing offered during wrap-up
    clock(q).t += 20
    await q.finish_wrap_up(1, c, "resolved", "done")
    assert a.state is AgentState.AVAILABLE
    assert await q.store.handle_times("cards") == [pytest.approx(121.0)]
    # position 1 with one busy agent: one handle time (the M/M/n expectation)
    call = await q.store.get_call(nxt)
    assert call is not None
    assert (await q.position_of(call))[1] == pytest.approx(121.0)


async def test_wrap_up_times_out(q: Dispatcher) -> None:
    await agent(q, 1, "a1")
    c = await request(q, "c1")
    await q.route_once()
    await q.accept(1, c)
    await q.agent_hangup(1, c)
    clock(q).t += 31
    await q.tick()
    assert (await q.store.get_agent(1)).state is AgentState.AVAILABLE  # type: ignore[union-attr]


async def test_refusals_carry_codes(q: Dispatcher) -> None:
    c = await request(q, "c1")
    with pytest.raises(Conflict) as dup:
        await request(q, "c1")
    assert dup.value.code == "already_in_call"
    with pytest.raises(Forbidden):
        await q.customer_hangup(c, "someone-else")
    await agent(q, 1, "a1")
    with pytest.raises(InvalidState) as st:
        await q.accept(1, c)  # not offered yet: nothing routed
    assert st.value.code == "offer_expired"
    await request(q, "c2")
    await request(q, "c3")
    with pytest.raises(RateLimited) as full:
        await request(q, "c4")
    assert full.value.code == "queue_full"


async def test_max_wait_times_out(q: Dispatcher) -> None:
    c = await request(q, "c1", skill="loans")
    clock(q).t += 601
    await q.tick()
    rec: Recorder = q.listener  # type: ignore[assignment]
    ended = [a for n, a in rec.log if n == "call_ended"]
    assert ended[0][0].call_id == c and ended[0][1] == "timed_out"


async def test_positions_are_pushed_only_on_change(q: Dispatcher) -> None:
    await request(q, "c1")
    b = await request(q, "c2")
    rec: Recorder = q.listener  # type: ignore[assignment]
    await q.tick()
    await q.tick()
    clock(q).t += 2
    await q.tick()
    pushes = [a for n, a in rec.log if n == "position_changed" and a[0].call_id == b]
    assert len(pushes) <= 1  # the request already told it; no repeats without change
    await q.customer_hangup((await q.store.calls())[0].call_id, "c1")
    clock(q).t += 2
    await q.tick()
    pushes = [a for n, a in rec.log if n == "position_changed" and a[0].call_id == b]
    assert pushes[-1][1] == 1


async def test_a_wrap_up_after_the_timer_still_records_the_outcome(q: Dispatcher) -> None:
    await agent(q, 1, "a1")
    c = await request(q, "c1")
    await q.route_once()
    await q.accept(1, c)
    await q.agent_hangup(1, c)
    clock(q).t += 31
    await q.tick()  # the wrap-up timer ends the wrap-up first
    await q.finish_wrap_up(1, c, "resolved", "late but kept")
    journal: MemoryJournal = q.journal  # type: ignore[assignment]
    assert journal.calls[c]["outcome"] == "resolved"
    assert (await q.store.get_agent(1)).state is AgentState.AVAILABLE  # type: ignore[union-attr]
    with pytest.raises(InvalidState):  # only once, and only for the agent's last call
        await q.finish_wrap_up(1, c, "resolved", "again")


async def test_started_dispatcher_delivers_notifications_from_its_own_task(
        q: Dispatcher) -> None:
    await q.start()
    try:
        await agent(q, 1, "a1")
        c = await request(q, "c1")
        rec: Recorder = q.listener  # type: ignore[assignment]
        for _ in range(100):
            if rec.offers():
                break
            await asyncio.sleep(0.01)
        assert rec.offers() == [(c, "a1")]
    finally:
        await q.stop()


async def test_notices_say_what_was_true_when_they_were_decided(q: Dispatcher) -> None:
    """The delivery task runs after the transitions (off the routing path); each notice
    carries snapshots, so an agent offered and answered before delivery is told
    ``offered`` then ``busy`` (a live object would have read ``busy`` twice)."""
    rec: Recorder = q.listener  # type: ignore[assignment]
    q.outbox.start()
    try:
        await agent(q, 1, "a1")
        call_id = await request(q, "c1")
        await q.route_once()
        await q.accept(1, call_id)  # before the task has run: nothing delivered yet
        await q.outbox.stop()  # delivers what was decided
    finally:
        await q.outbox.stop()
    states = [a[0].state for n, a in rec.log if n == "agent_state_changed"]
    assert states == [AgentState.AWAY, AgentState.AVAILABLE, AgentState.OFFERED,
                      AgentState.BUSY]
    offered = next(a for n, a in rec.log if n == "call_offered")
    assert offered[0].state is CallState.OFFERED and offered[1].call_id == call_id
    accepted = next(a for n, a in rec.log if n == "call_accepted")
    assert accepted[0].state is CallState.IN_CALL
    live = await q.store.get_call(call_id)
    assert live is not None and accepted[0] is not live  # a copy, not the queue's object


async def test_the_queue_state_is_the_stores_deadlines_included(q: Dispatcher) -> None:
    """Nothing of a call or an agent lives in the dispatcher: a second dispatcher on the
    same store (as after a hand-over) expires the grace period and the wrap-up the first
    one started, refuses a second call of the customer, and numbers on from its seq."""
    await agent(q, 1, "a1")
    answered = await request(q, "c1")
    await q.route_once()
    await q.accept(1, answered)
    await q.agent_hangup(1, answered)  # a1 wraps up (30 s)
    waiting = await request(q, "c2")
    await q.customer_disconnected(waiting)  # grace: 20 s
    rec = Recorder()
    other = Dispatcher(q.store, rec, MemoryJournal(), q.config,  # type: ignore[arg-type]
                       clock=q.clock)
    agent_1 = await q.store.get_agent(1)
    call_2 = await q.store.get_call(waiting)
    assert agent_1 is not None and agent_1.wrap_up_until is not None
    assert call_2 is not None and call_2.grace_until is not None
    with pytest.raises(Conflict):
        await other.request_call(customer_id="c2", service="svc_cards", skill="cards")
    clock(q).t += 31
    await other.tick()
    assert (await q.store.get_call(waiting)) is None  # abandoned by the other dispatcher
    assert agent_1.state is AgentState.AVAILABLE and agent_1.wrap_up_until is None
    journal: MemoryJournal = other.journal  # type: ignore[assignment]
    assert journal.kinds(waiting) == ["call.ended"]
    third, _, _ = await other.request_call(customer_id="c3", service="svc_cards",
                                           skill="cards")
    assert third.seq == call_2.seq + 1
