"""Callbacks (issue 15): a waiting customer leaves the queue keeping the place; when it
comes up the customer is told and, back in time, answered first; otherwise the callback
expires. On a fake clock, then through the hub with the public protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudcounter.errors import Conflict, Forbidden, InvalidState
from cloudcounter.queue.dispatcher import Dispatcher, QueueConfig
from cloudcounter.queue.model import AgentState
from cloudcounter.queue.ports import MemoryJournal
from cloudcounter.queue.store import MemoryQueueStore
from cloudcounter.sim.client import Connection
from tests.conftest import Hub
from tests.test_dispatcher import Clock, Recorder


@pytest.fixture
def q() -> Dispatcher:
    return Dispatcher(MemoryQueueStore(), Recorder(), MemoryJournal(),  # type: ignore[arg-type]
                      QueueConfig(position_interval_s=1, callback_answer_s=60, wrap_up_s=0),
                      clock=Clock())


def kinds(q: Dispatcher, call_id: str) -> list[str]:
    return q.journal.kinds(call_id)  # type: ignore[attr-defined,no-any-return]


async def step(q: Dispatcher, seconds: float = 1.0) -> None:
    q.clock.t += seconds  # type: ignore[attr-defined]
    await q.tick()
    await q.route_once()


async def test_a_callback_keeps_its_place_and_is_answered_first(q: Dispatcher) -> None:
    first = (await q.request_call(customer_id="c1", service="s", skill="cards"))[0]
    await step(q)
    second = (await q.request_call(customer_id="c2", service="s", skill="cards"))[0]
    await step(q)
    third = (await q.request_call(customer_id="c3", service="s", skill="cards"))[0]
    assert await q.request_callback(second.call_id, "c2") == (2, None)
    with pytest.raises(Conflict):
        await q.request_callback(second.call_id, "c2")
    with pytest.raises(Forbidden):
        await q.request_callback(third.call_id, "c2")
    await q.customer_disconnected(second.call_id)  # gone: no grace period runs
    await step(q, 120)
    kept = await q.store.get_call(second.call_id)
    assert kept is not None and kept.callback == "waiting"  # the first call is ahead of it

    await q.agent_online(1, "ann", frozenset({"cards"}))
    await q.set_agent_status(1, AgentState.AVAILABLE)
    await step(q)  # ann takes the first call
    await step(q)  # the callback is now first in line: due (its customer is away)
    rec: Recorder = q.listener  # type: ignore[assignment]
    assert rec.offers() == [(first.call_id, "ann")]
    assert "callback.due" in kinds(q, second.call_id)
    assert [n for n, _ in rec.log].count("callback_due") == 1
    await q.accept(1, first.call_id)
    await q.agent_hangup(1, first.call_id)
    await q.finish_wrap_up(1, first.call_id, "resolved", "", AgentState.AVAILABLE)
    await step(q)  # ann is free again: the due callback's customer is not back, and the
    # others are not held back meanwhile
    assert rec.offers()[-1] == (third.call_id, "ann")
    await q.customer_reconnected(second.call_id)  # back within the answer window
    await q.accept(1, third.call_id)
    await q.agent_hangup(1, third.call_id)
    await q.finish_wrap_up(1, third.call_id, "resolved", "", AgentState.AVAILABLE)
    await step(q)
    assert rec.offers()[-1] == (second.call_id, "ann")
    assert kinds(q, second.call_id)[-3:] == ["callback.taken", "agent.state", "call.offered"]


async def test_a_due_callback_not_taken_up_expires(q: Dispatcher) -> None:
    call = (await q.request_call(customer_id="c1", service="s", skill="cards"))[0]
    await q.request_callback(call.call_id, "c1")
    await q.customer_disconnected(call.call_id)
    await step(q)  # first in line: due at once, the customer is away
    assert "callback.due" in kinds(q, call.call_id)
    await step(q, 59)
    assert await q.active_call_of("c1") is not None
    await step(q, 2)
    assert await q.active_call_of("c1") is None
    assert kinds(q, call.call_id)[-2:] == ["callback.expired", "call.ended"]
    ended = [p for c, _, k, p in q.journal.events  # type: ignore[attr-defined]
             if c == call.call_id and k == "call.ended"]
    assert ended == [{"reason": "abandoned", "cause": "callback_expired"}]


async def test_only_a_waiting_call_becomes_a_callback_and_a_hangup_cancels_it(
        q: Dispatcher) -> None:
    call = (await q.request_call(customer_id="c1", service="s", skill="cards"))[0]
    await q.agent_online(1, "ann", frozenset({"cards"}))
    await q.set_agent_status(1, AgentState.AVAILABLE)
    await step(q)
    with pytest.raises(InvalidState):
        await q.request_callback(call.call_id, "c1")  # offered already
    other = (await q.request_call(customer_id="c2", service="s", skill="cards"))[0]
    await q.request_callback(other.call_id, "c2")
    await q.customer_hangup(other.call_id, "c2")
    assert kinds(q, other.call_id)[-2:] == ["callback.cancelled", "call.ended"]


async def test_a_customer_asks_for_a_callback_over_the_protocol(hub: Hub) -> None:
    joe = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await joe.connect()
    call_id = (await joe.call("call:request", {"service": "card_loss"}))["call_id"]
    reply = await joe.call("call:callback", {"call_id": call_id})
    assert reply["ok"] and reply["position"] == 1
    again = await joe.call("call:callback", {"call_id": call_id})
    assert again["error"]["code"] == "callback_requested"
    await joe.close()  # the customer goes away; the place is kept
    alice = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await alice.connect()
    await alice.call("agent:status", {"status": "available"})
    back = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await back.connect()  # told by the bank's app (webhook callback.due), the customer is back
    _, offer = await alice.expect("call:offer", timeout=15)
    assert offer["call_id"] == call_id
    events: list[Any] = []
    await hub.ctx.journal.flush()  # the timeline is written by the journal's own task
    async with hub.ctx.sm() as s:
        from sqlalchemy import select

        from cloudcounter.db.models import CallEvent
        events = list((await s.scalars(select(CallEvent.kind).where(
            CallEvent.call_id == call_id).order_by(CallEvent.seq))).all())
    assert "callback.requested" in events and "callback.due" in events
    for c in (alice, back):
        await c.close()
    await asyncio.sleep(0)
