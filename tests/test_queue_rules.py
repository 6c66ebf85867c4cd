"""The pure queue rules (cloudcounter.queue.rules): state in, state and events out."""

from __future__ import annotations

from typing import Any

import pytest

from cloudcounter.errors import CloudCounterError
from cloudcounter.queue import rules as r
from cloudcounter.queue.model import AgentState, CallState, EndReason

CFG = r.RulesConfig(offer_timeout_s=15, max_missed_offers=2, wrap_up_s=60,
                    customer_grace_s=20, exclusion_s=30)


def kinds(out: r.Outcome) -> list[str]:
    return [e.kind for e in out.events]


def ready(now: float = 0.0) -> r.QueueState:
    s = r.QueueState()
    s = r.agent_online(s, now, 1, "ann", frozenset({"cards"})).state
    s = r.set_agent_status(s, now, 1, AgentState.AVAILABLE).state
    return r.enqueue(s, CFG, now, call_id="c1", customer_id="u1", service="card_loss",
                     skill="cards").state


def code(exc: pytest.ExceptionInfo[CloudCounterError]) -> str | None:
    return exc.value.code


def test_enqueue_numbers_calls_and_refuses_a_second_open_call() -> None:
    s = ready()
    assert s.calls["c1"].seq == 1 and s.calls["c1"].state is CallState.QUEUED
    with pytest.raises(CloudCounterError) as e:
        r.enqueue(s, CFG, 1, call_id="c2", customer_id="u1", service="x", skill="cards")
    assert code(e) == "already_in_call"
    full = r.RulesConfig(max_queue_length=1)
    with pytest.raises(CloudCounterError) as e:
        r.enqueue(s, full, 1, call_id="c2", customer_id="u2", service="x", skill="cards")
    assert code(e) == "queue_full"


def test_offer_accept_end_wrap_up() -> None:
    s = ready()
    out = r.offer(s, CFG, 1.0, "c1", 1)
    assert "call.offered" in kinds(out)
    s = out.state
    assert s.calls["c1"].offer_expires_at == 16.0 and s.agents[1].state is AgentState.OFFERED
    s = r.accept(s, CFG, 2.0, 1, "c1").state
    assert s.calls["c1"].state is CallState.IN_CALL and s.agents[1].state is AgentState.BUSY
    out = r.end(s, CFG, 3.0, "c1", EndReason.COMPLETED, by_agent=1)
    s = out.state
    assert "c1" not in s.calls and s.agents[1].state is AgentState.WRAP_UP
    assert s.agents[1].wrap_up_until == 63.0
    assert r.due(s, 62.9) == [] and [d.kind for d in r.due(s, 63.0)] == ["wrap_up"]
    s = r.finish_wrap_up(s, 4.0, 1, "c1").state
    assert s.agents[1].state is AgentState.AVAILABLE and s.agents[1].call_id is None


def test_decline_excludes_the_agent_until_the_exclusion_expires() -> None:
    s = r.offer(ready(), CFG, 1.0, "c1", 1).state
    s = r.decline(s, CFG, 2.0, 1, "c1").state
    assert s.calls["c1"].state is CallState.QUEUED and s.agents[1].state is AgentState.AVAILABLE
    with pytest.raises(CloudCounterError) as e:
        r.offer(s, CFG, 3.0, "c1", 1)
    assert code(e) == "agent_excluded"
    assert [d.kind for d in r.due(s, 32.0)] == ["exclusion"]
    s = r.expire_exclusions(s, 32.0, "c1").state
    assert r.offer(s, CFG, 33.0, "c1", 1).state.calls["c1"].agent_id == 1


def test_missed_offers_send_the_agent_away() -> None:
    s = r.offer(ready(), CFG, 0.0, "c1", 1).state
    assert r.expire_offer(s, CFG, 14.9, "c1").state is s  # not due yet: unchanged
    s = r.expire_offer(s, CFG, 15.0, "c1").state
    assert s.agents[1].missed_offers == 1 and s.agents[1].state is AgentState.AVAILABLE
    s = r.expire_exclusions(s, 100.0, "c1").state
    s = r.offer(s, CFG, 100.0, "c1", 1).state
    out = r.expire_offer(s, CFG, 115.0, "c1")
    assert out.state.agents[1].state is AgentState.AWAY
    assert any(e.data().get("reason") == "missed_offers" for e in out.events)


def test_requeue_keeps_the_place_and_a_lead_takes_over() -> None:
    s = ready()
    s = r.enqueue(s, CFG, 5.0, call_id="c2", customer_id="u2", service="x", skill="cards").state
    s = r.accept(r.offer(s, CFG, 6.0, "c1", 1).state, CFG, 7.0, 1, "c1").state
    s = r.agent_offline(s, 8.0, 1).state
    c1 = s.calls["c1"]
    assert (c1.state, c1.enqueued_at, c1.seq, c1.dropped_by) == (CallState.QUEUED, 0.0, 1, "ann")
    calls, _ = r.waiting_view(s, 8.0)
    from cloudcounter.queue import routing
    assert [c.call_id for c in routing.queue_order(calls, 8.0, None)] == ["c1", "c2"]
    s = r.agent_online(s, 9.0, 7, "lea", lead=True).state
    with pytest.raises(CloudCounterError) as e:
        r.set_agent_status(s, 9.0, 7, AgentState.AVAILABLE)
    assert code(e) == "lead_not_routed"
    with pytest.raises(CloudCounterError) as e:
        r.take_over(s, 9.0, 7, "c2")
    assert code(e) == "not_dropped"
    out = r.take_over(s, 10.0, 7, "c1")
    assert kinds(out)[0] == "call.taken_over" and out.state.agents[7].state is AgentState.BUSY
    assert out.state.calls["c1"].agent_id == 7 and out.state.calls["c1"].dropped_by is None
    s = r.end(out.state, CFG, 11.0, "c1", EndReason.COMPLETED, by_agent=7).state
    s = r.expire_wrap_up(s, 71.0, 7).state
    assert s.agents[7].state is AgentState.AWAY  # a lead is never made available


def test_customer_grace_withdraws_an_offer_and_expires_as_abandoned() -> None:
    s = r.offer(ready(), CFG, 1.0, "c1", 1).state
    out = r.grace_start(s, CFG, 2.0, "c1")
    s = out.state
    assert "offer.withdrawn" in kinds(out) and s.agents[1].missed_offers == 0
    assert s.calls["c1"].held and s.calls["c1"].grace_until == 22.0
    assert r.waiting_view(s, 3.0)[0] == []
    out = r.expire_grace(s, CFG, 22.0, "c1")
    assert "c1" not in out.state.calls
    assert out.events[0].data()["reason"] == EndReason.ABANDONED.value
    back = r.grace_end(s, 5.0, "c1").state
    assert not back.calls["c1"].held and back.calls["c1"].grace_until is None


def test_refusals_change_nothing() -> None:
    s = ready()
    for f, c in ((lambda: r.accept(s, CFG, 1, 1, "c1"), "offer_expired"),
                 (lambda: r.decline(s, CFG, 1, 1, "c1"), "offer_expired"),
                 (lambda: r.offer(s, CFG, 1, "nope", 1), "unknown_call"),
                 (lambda: r.set_agent_status(s, 1, 1, AgentState.BUSY), "invalid_status"),
                 (lambda: r.finish_wrap_up(s, 1, 1, "c1"), "no_wrap_up"),
                 (lambda: r.requeue(s, 1, "c1", "x"), "not_assigned")):
        with pytest.raises(CloudCounterError) as e:
            f()
        assert code(e) == c
    s2 = r.offer(s, CFG, 1, "c1", 1).state
    with pytest.raises(CloudCounterError) as e:
        r.set_agent_status(s2, 2, 1, AgentState.AWAY)
    assert code(e) == "agent_engaged"
    with pytest.raises(CloudCounterError) as e:
        r.end(s2, CFG, 2, "c1", EndReason.COMPLETED, by_customer="u9")
    out = r.end(s2, CFG, 2, "c1", EndReason.COMPLETED, by_customer="u1")
    assert out.events[0].data()["reason"] == "abandoned"
    assert out.state.agents[1].state is AgentState.AVAILABLE


# ------------------------------------------------------------------ parity with the dispatcher
class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        async def record(*args: Any) -> None:
            return None
        return record


def _same(d_calls: list[Any], d_agents: list[Any], s: r.QueueState, now: float) -> None:
    """The dispatcher's calls and agents (mutable) and the rules' state say the same,
    stored deadlines (offer, grace, wrap-up), offer streaks and callbacks included."""
    assert {c.call_id for c in d_calls} == set(s.calls)
    for c in d_calls:
        mine = s.calls[c.call_id]
        assert (c.state, c.agent_id, c.offer_expires_at, c.held, c.enqueued_at, c.seq,
                c.dropped_by, c.grace_until) == (mine.state, mine.agent_id,
                                                 mine.offer_expires_at, mine.held,
                                                 mine.enqueued_at, mine.seq, mine.dropped_by,
                                                 mine.grace_until), c.call_id
        assert (c.callback, c.callback_due_until, c.priority, c.customer_online) == \
            (mine.callback, mine.callback_due_until, mine.priority, mine.customer_online)
        assert {a for a, u in c.excluded.items() if u > now} == mine.excluded_agents(now)
    for a in d_agents:
        mine_a = s.agents[a.agent_id]
        assert (a.state, a.missed_offers, a.call_id, a.idle_since, a.lead,
                a.wrap_up_until, a.streak) == (mine_a.state, mine_a.missed_offers,
                                               mine_a.call_id, mine_a.idle_since,
                                               mine_a.lead, mine_a.wrap_up_until,
                                               mine_a.streak), a.username


def _twin(qc: Any, clock: "_Clock", journal: Any = None) -> Any:
    """Today's dispatcher on a memory store, quiet, on ``clock`` (the parity tests' twin
    of the rules)."""
    from cloudcounter.queue.dispatcher import Dispatcher
    from cloudcounter.queue.ports import MemoryJournal
    from cloudcounter.queue.store import MemoryQueueStore

    return Dispatcher(MemoryQueueStore(), _Quiet(), journal or MemoryJournal(), qc,
                      clock=clock)


async def _enqueue_both(d: Any, s: r.QueueState, cfg: r.RulesConfig, now: float,
                        customer: str) -> tuple[r.QueueState, str]:
    """One card-loss call from ``customer``, to the dispatcher and to the rules."""
    call, _, _ = await d.request_call(customer_id=customer, service="card_loss",
                                      skill="cards")
    return r.enqueue(s, cfg, now, call_id=call.call_id, customer_id=customer,
                     service="card_loss", skill="cards").state, call.call_id


async def _agree(d: Any, s: r.QueueState, now: float) -> None:
    _same(await d.store.calls(), await d.store.agents(), s, now)


async def test_the_rules_do_what_the_dispatcher_does() -> None:
    from cloudcounter.queue import routing
    from cloudcounter.queue.dispatcher import QueueConfig

    clock = _Clock()
    qc = QueueConfig(offer_timeout_s=10, max_missed_offers=1, wrap_up_s=30,
                     customer_grace_s=20, exclusion_s=60, max_wait_s=6000)
    cfg = r.RulesConfig(offer_timeout_s=10, max_missed_offers=1, wrap_up_s=30,
                        customer_grace_s=20, exclusion_s=60)
    d = _twin(qc, clock)
    s = r.QueueState()

    async def check() -> None:
        await _agree(d, s, clock.t)

    async def route() -> None:
        nonlocal s
        await d.route_once()
        calls, agents = r.waiting_view(s, clock.t)
        for a in routing.route(calls, agents, clock.t, qc.aging_s):
            s = r.offer(s, cfg, clock.t, a.call_id, a.agent_id).state
        await check()

    for uid, name in ((1, "ann"), (2, "bob")):
        await d.agent_online(uid, name, frozenset({"cards"}))
        await d.set_agent_status(uid, AgentState.AVAILABLE)
        s = r.agent_online(s, clock.t, uid, name, frozenset({"cards"})).state
        s = r.set_agent_status(s, clock.t, uid, AgentState.AVAILABLE).state
        clock.t += 1
    ids = []
    for cust in ("u1", "u2"):
        s, call_id = await _enqueue_both(d, s, cfg, clock.t, cust)
        ids.append(call_id)
        clock.t += 1
    await check()
    await route()  # ann (longest idle) gets the first call, bob the second
    first, second = ids
    await d.decline(1, first)
    s = r.decline(s, cfg, clock.t, 1, first).state
    await check()
    clock.t += 11  # bob misses his offer: away (max_missed_offers=1)
    await d.tick()
    for dl in r.due(s, clock.t):
        if dl.kind == "offer" and dl.call_id:
            s = r.expire_offer(s, cfg, clock.t, dl.call_id).state
    await check()
    await route()  # ann is excluded from the first call: she gets the second
    call_of_ann = s.agents[1].call_id
    assert call_of_ann == second
    await d.accept(1, second)
    s = r.accept(s, cfg, clock.t, 1, second).state
    clock.t += 1
    await d.agent_offline(1)  # ann drops mid-call: the call goes back to its place
    s = r.agent_offline(s, clock.t, 1).state
    await check()
    await d.lead_online(9, "lea")
    s = r.agent_online(s, clock.t, 9, "lea", lead=True).state
    clock.t += 1
    await d.take_over(9, second)
    s = r.take_over(s, clock.t, 9, second).state
    await check()
    await d.agent_hangup(9, second)
    s = r.end(s, cfg, clock.t, second, EndReason.COMPLETED, by_agent=9).state
    await check()
    clock.t += 31
    await d.tick()
    for dl in r.due(s, clock.t):
        if dl.kind == "wrap_up" and dl.agent_id is not None:
            s = r.expire_wrap_up(s, clock.t, dl.agent_id).state
    await check()
    assert s.agents[9].state is AgentState.AWAY


async def test_the_rules_do_what_the_dispatcher_does_when_customers_leave() -> None:
    from cloudcounter.queue.dispatcher import QueueConfig

    clock = _Clock()
    qc = QueueConfig(offer_timeout_s=10, customer_grace_s=20, max_wait_s=6000)
    cfg = r.RulesConfig(offer_timeout_s=10, customer_grace_s=20)
    d = _twin(qc, clock)
    s = r.QueueState()

    async def check() -> None:
        await _agree(d, s, clock.t)

    await d.agent_online(1, "ann", frozenset({"cards"}))
    await d.set_agent_status(1, AgentState.AVAILABLE)
    s = r.agent_online(s, clock.t, 1, "ann", frozenset({"cards"})).state
    s = r.set_agent_status(s, clock.t, 1, AgentState.AVAILABLE).state
    ids = []
    for cust in ("u1", "u2", "u3"):
        s, call_id = await _enqueue_both(d, s, cfg, clock.t, cust)
        ids.append(call_id)
    await d.route_once()
    s = r.offer(s, cfg, clock.t, ids[0], 1).state
    await check()
    clock.t += 1
    await d.customer_disconnected(ids[0])  # the offer is withdrawn, not ann's fault
    s = r.grace_start(s, cfg, clock.t, ids[0]).state
    await d.customer_disconnected(ids[1])
    s = r.grace_start(s, cfg, clock.t, ids[1]).state
    await check()
    await d.customer_reconnected(ids[1])
    s = r.grace_end(s, clock.t, ids[1]).state
    await d.customer_hangup(ids[2], "u3")
    s = r.end(s, cfg, clock.t, ids[2], EndReason.COMPLETED, by_customer="u3").state
    await check()
    clock.t += 21
    await d.tick()  # the first customer did not come back
    for dl in r.due(s, clock.t):
        if dl.kind == "grace" and dl.call_id:
            s = r.expire_grace(s, cfg, clock.t, dl.call_id).state
    await check()
    assert set(s.calls) == {ids[1]}


def test_max_wait_is_a_deadline_from_the_original_place() -> None:
    cfg = r.RulesConfig(max_wait_s=100.0)
    s = ready()  # c1 queued at 0.0
    assert r.due(s, 100.0, cfg) == [] and r.due(s, 101.0) == []
    assert [(d.kind, d.at) for d in r.due(s, 100.5, cfg)] == [("wait", 100.0)]
    assert r.expire_wait(s, cfg, 99.0, "c1").state is s  # not yet: nothing changes
    offered = r.offer(s, cfg, 50.0, "c1", 1).state
    assert [d.kind for d in r.due(offered, 200.0, cfg)] == ["offer"]  # not waiting
    out = r.expire_wait(s, cfg, 100.5, "c1")
    assert "c1" not in out.state.calls
    assert out.events[0].data()["reason"] == EndReason.TIMED_OUT.value


def test_an_offer_counts_the_agents_streak_per_service() -> None:
    s = ready()
    s = r.offer(s, CFG, 1.0, "c1", 1).state
    assert s.agents[1].streak == ("card_loss", 1)
    calls, agents = r.waiting_view(r.decline(s, CFG, 2.0, 1, "c1").state, 3.0)
    assert agents[0].streak == ("card_loss", 1)  # what routing's offer cap reads


def test_a_callback_keeps_its_place_comes_due_and_is_answered_first() -> None:
    s = ready()  # c1 (u1) queued at 0.0
    s = r.enqueue(s, CFG, 1.0, call_id="c2", customer_id="u2", service="card_loss",
                  skill="cards").state
    with pytest.raises(CloudCounterError) as e:
        r.request_callback(s, 2.0, "c2", "u1")
    assert code(e) == "forbidden"  # not the customer's call
    s = r.request_callback(s, 2.0, "c2", "u2").state
    with pytest.raises(CloudCounterError) as e:
        r.request_callback(s, 2.0, "c2", "u2")
    assert code(e) == "callback_requested"
    assert s.calls["c2"].held and r.waiting_view(s, 3.0)[0][0].call_id == "c1"
    s = r.grace_start(s, CFG, 3.0, "c2").state  # leaving is expected: no grace period
    assert s.calls["c2"].grace_until is None and not s.calls["c2"].customer_online
    assert r.callback_places(s, 4.0) == []  # c1 is ahead
    s = r.end(s, CFG, 5.0, "c1", EndReason.ABANDONED, by_customer="u1").state
    assert [d.kind for d in r.due(s, 6.0, CFG)] == ["callback_place"]
    out = r.callback_due(s, CFG, 6.0, "c2")
    assert kinds(out) == ["callback.due"] and out.state.calls["c2"].callback == "due"
    assert r.callback_due(out.state, CFG, 6.0, "c2").state is out.state  # repeated: nothing
    assert r.callback_places(out.state, 7.0) == []
    back = r.grace_end(out.state, 8.0, "c2", CFG)
    assert kinds(back) == ["callback.taken"]
    c2 = back.state.calls["c2"]
    assert (c2.callback, c2.held, c2.priority) == (None, False, CFG.callback_priority)
    assert r.waiting_view(back.state, 9.0)[0][0].call_id == "c2"
    # not back in the answer window: abandoned
    late = r.due(out.state, 6.0 + CFG.callback_answer_s, CFG)
    assert [d.kind for d in late] == ["callback"]
    gone = r.expire_callback(out.state, CFG, 6.0 + CFG.callback_answer_s, "c2")
    assert kinds(gone) == ["callback.expired", "call.ended"]
    assert gone.events[1].data() == {"reason": "abandoned", "cause": "callback_expired"}


def test_a_callback_due_while_the_customer_is_online_is_taken_at_once() -> None:
    s = r.request_callback(ready(), 1.0, "c1", "u1").state
    out = r.callback_due(s, CFG, 2.0, "c1")
    assert kinds(out) == ["callback.due", "callback.taken"]
    hung_up = r.end(r.request_callback(ready(), 1.0, "c1", "u1").state, CFG, 2.0, "c1",
                    EndReason.ABANDONED, by_customer="u1")
    assert kinds(hung_up) == ["callback.cancelled", "call.ended"]


async def test_the_rules_do_what_the_dispatcher_does_with_callbacks() -> None:
    from cloudcounter.queue.dispatcher import QueueConfig
    from cloudcounter.queue.ports import MemoryJournal

    clock = _Clock()
    qc = QueueConfig(customer_grace_s=20, max_wait_s=6000, callback_answer_s=50,
                     position_interval_s=1)
    cfg = r.RulesConfig(customer_grace_s=20, max_wait_s=6000, callback_answer_s=50)
    journal = MemoryJournal()
    d = _twin(qc, clock, journal)
    s = r.QueueState()

    async def check() -> None:
        await _agree(d, s, clock.t)

    async def tick() -> None:
        nonlocal s
        clock.t += 1
        await d.tick()
        for dl in r.due(s, clock.t, cfg):
            assert dl.call_id is not None
            if dl.kind == "callback_place":
                s = r.callback_due(s, cfg, clock.t, dl.call_id).state
            elif dl.kind == "callback":
                s = r.expire_callback(s, cfg, clock.t, dl.call_id).state
        await check()

    ids = []
    for cust in ("u1", "u2", "u3"):
        s, call_id = await _enqueue_both(d, s, cfg, clock.t, cust)
        ids.append(call_id)
        clock.t += 1
    for call_id, cust in ((ids[1], "u2"), (ids[2], "u3")):  # both leave keeping the place
        await d.request_callback(call_id, cust)
        s = r.request_callback(s, clock.t, call_id, cust).state
        await d.customer_disconnected(call_id)
        s = r.grace_start(s, cfg, clock.t, call_id).state
    await tick()  # u1 is first in line: nothing due
    await d.customer_hangup(ids[0], "u1")
    s = r.end(s, cfg, clock.t, ids[0], EndReason.ABANDONED, by_customer="u1").state
    await tick()  # u2's place came up: due (u2 is offline, so it waits to be taken)
    assert s.calls[ids[1]].callback == "due" and s.calls[ids[2]].callback == "waiting"
    await tick()  # u3 is next in line, u2's window still open: u3 comes due too
    assert s.calls[ids[2]].callback == "due"
    await d.customer_reconnected(ids[1])  # u2 is back: answered first
    s = r.grace_end(s, clock.t, ids[1], cfg).state
    await check()
    clock.t += 50
    await tick()  # u3 never came back: abandoned
    assert ids[2] not in s.calls
    assert journal.kinds(ids[2])[-2:] == ["callback.expired", "call.ended"]
