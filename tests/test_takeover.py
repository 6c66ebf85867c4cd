"""The queue's take-over rules (cloudcounter.queue.takeover), driven by a fake clock: who may
take over which call, and what the lead's console may do; the webhook a take-over sends."""

from __future__ import annotations

import pytest

from cloudcounter.errors import Forbidden, InvalidState
from cloudcounter.queue.dispatcher import Dispatcher
from cloudcounter.queue.model import AgentState, CallState
from cloudcounter.queue.ports import MemoryJournal
from cloudcounter.webhooks.events import TIMELINE, EventType, timeline_data
from tests.test_dispatcher import Recorder, agent, clock, q, request  # noqa: F401 - fixture

LEAD = 90


async def dropped(q: Dispatcher) -> str:  # noqa: F811 - the fixture
    await agent(q, 1, "a1")
    call_id = await request(q, "c1")
    await q.route_once()
    await q.accept(1, call_id)
    clock(q).t += 5
    await q.agent_offline(1)  # the agent's console drops mid-call
    clock(q).t += 7
    return call_id


async def test_a_lead_takes_over_a_dropped_call(q: Dispatcher) -> None:  # noqa: F811
    call_id = await dropped(q)
    call = await q.store.get_call(call_id)
    assert call is not None and call.dropped_by == "a1" and call.state is CallState.QUEUED
    await q.lead_online(LEAD, "leo", "Leo")
    taken = await q.take_over(LEAD, call_id)
    assert taken.state is CallState.IN_CALL and taken.agent_id == LEAD
    assert taken.dropped_by is None
    lead = await q.store.get_agent(LEAD)
    assert lead is not None and lead.state is AgentState.BUSY and lead.call_id == call_id
    journal: MemoryJournal = q.journal  # type: ignore[assignment]
    taken_over = next(p for c, _, k, p in journal.events
                      if c == call_id and k == "call.taken_over")
    assert taken_over == {"lead": "leo", "from_agent": "a1", "after_s": 7.0}
    rec: Recorder = q.listener  # type: ignore[assignment]
    assert [a[1].username for n, a in rec.log if n == "call_accepted"] == ["a1", "leo"]
    # the lead hangs up and wraps up: back to away whatever it asked, never available
    await q.agent_hangup(LEAD, call_id)
    await q.finish_wrap_up(LEAD, call_id, "resolved", "", then=AgentState.AVAILABLE)
    assert lead.state is AgentState.AWAY
    with pytest.raises(InvalidState) as e:
        await q.set_agent_status(LEAD, AgentState.AVAILABLE)
    assert e.value.code == "lead_not_routed"


async def test_refusals(q: Dispatcher) -> None:  # noqa: F811
    call_id = await dropped(q)
    await q.lead_online(LEAD, "leo")
    with pytest.raises(Forbidden) as f:  # an agent is not a lead
        await agent(q, 2, "a2")
        await q.set_agent_status(2, AgentState.AWAY)
        await q.take_over(2, call_id)
    assert f.value.code == "lead_only"
    await q.customer_disconnected(call_id)  # the customer is away too: nobody to serve
    with pytest.raises(InvalidState) as e:
        await q.take_over(LEAD, call_id)
    assert e.value.code == "customer_away"
    await q.customer_reconnected(call_id)
    other = await request(q, "c2")
    assert (await q.take_over(LEAD, call_id)).agent_id == LEAD
    with pytest.raises(InvalidState) as e:  # not dropped, and the lead is busy anyway
        await q.take_over(LEAD, other)
    assert e.value.code == "not_dropped"


async def test_a_lead_is_never_routed_a_call(q: Dispatcher) -> None:  # noqa: F811
    await q.lead_online(LEAD, "leo")
    await request(q, "c1")
    assert await q.route_once() == 0
    lead = await q.store.get_agent(LEAD)
    assert lead is not None and lead.state is AgentState.AWAY and lead.skills == frozenset()


def test_the_take_over_is_a_webhook_event() -> None:
    assert TIMELINE["call.taken_over"] is EventType.CALL_TAKEN_OVER
    payload = {"lead": "leo", "from_agent": "alice", "after_s": 3.5, "notes": "not sent"}
    assert timeline_data("call.taken_over", "lead:leo", payload) == {
        "lead": "leo", "from_agent": "alice", "after_s": 3.5}
    assert timeline_data("call.answered", "lead:leo", {"taken_over": True}) == {
        "taken_over": True}
    assert timeline_data("call.answered", "agent:alice", {"agent": "alice"}) == {}
