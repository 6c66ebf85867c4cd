"""Call and agent state machines: legal transitions pass, illegal ones raise."""

from __future__ import annotations

import pytest

from cloudcounter.queue.model import (
    AGENT_TRANSITIONS, CALL_TRANSITIONS, Agent, AgentState, Call, CallState, IllegalTransition,
)


def new_call() -> Call:
    return Call("call_0000000000000001", "cus_1", "card_loss", "cards", 0, 0.0, 1)


def test_call_happy_path_and_requeue() -> None:
    c = new_call()
    assert c.state is CallState.QUEUED
    assert c.transition(CallState.OFFERED) is CallState.QUEUED
    c.transition(CallState.QUEUED)  # missed offer
    c.transition(CallState.OFFERED)
    c.transition(CallState.IN_CALL)
    c.transition(CallState.QUEUED)  # agent lost during the call
    c.transition(CallState.OFFERED)
    c.transition(CallState.IN_CALL)
    c.transition(CallState.ENDED)
    assert c.state is CallState.ENDED


@pytest.mark.parametrize("start,target", [
    (s, t) for s in CallState for t in CallState if t not in CALL_TRANSITIONS[s]])
def test_every_illegal_call_transition_raises(start: CallState, target: CallState) -> None:
    c = new_call()
    c.state = start
    with pytest.raises(IllegalTransition) as info:
        c.transition(target)
    assert info.value.current is start and info.value.target is target
    assert c.state is start  # unchanged


def test_agent_transitions_track_idle_time() -> None:
    a = Agent(7, "alice", frozenset({"cards"}))
    a.transition(AgentState.AWAY, now=1)
    a.transition(AgentState.AVAILABLE, now=5)
    assert a.idle_since == 5 and a.state_since == 5
    a.transition(AgentState.OFFERED, now=6)
    a.transition(AgentState.BUSY, now=7)
    a.transition(AgentState.WRAP_UP, now=9)
    a.transition(AgentState.AVAILABLE, now=12)
    assert a.idle_since == 12
    assert a.transition(AgentState.AVAILABLE, now=13) is AgentState.AVAILABLE  # no-op
    assert a.state_since == 12


@pytest.mark.parametrize("start,target", [
    (s, t) for s in AgentState for t in AgentState
    if t not in AGENT_TRANSITIONS[s] and t is not s])
def test_every_illegal_agent_transition_raises(start: AgentState, target: AgentState) -> None:
    a = Agent(1, "bob", frozenset())
    a.state = start
    with pytest.raises(IllegalTransition):
        a.transition(target, now=1)
    assert a.state is start
