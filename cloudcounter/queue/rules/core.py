"""The pure queue rules (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from cloudcounter.errors import Conflict, Forbidden, InvalidState, NotFound, RateLimited
from cloudcounter.queue import routing
from cloudcounter.queue.model import (
    AGENT_TRANSITIONS,
    CALL_TRANSITIONS,
    AgentState,
    CallState,
    EndReason,
    IllegalTransition,
)

SYSTEM = "system"
LIVE = (CallState.OFFERED, CallState.IN_CALL)


@dataclass(frozen=True)
class RulesConfig:
    """The timings and limits of :class:`cloudcounter.queue.dispatcher.QueueConfig`."""

    offer_timeout_s: float = 15.0
    max_missed_offers: int = 2
    wrap_up_s: float = 60.0
    customer_grace_s: float = 20.0
    exclusion_s: float = 30.0
    max_queue_length: int = 5000
    max_wait_s: float = 1800.0  # a call queued longer ends timed_out
    callback_answer_s: float = 300.0  # a due callback waits this long for the customer
    callback_priority: int = 9  # a customer back from a callback is answered first
    aging_s: float | None = 300.0  # one priority level per this many seconds of waiting


@dataclass(frozen=True)
class CallRec:
    call_id: str
    customer_id: str
    service: str
    skill: str
    priority: int
    enqueued_at: float  # the call's place in the queue: kept when it is re-queued
    seq: int  # tie-break for calls enqueued at the same instant
    state: CallState = CallState.QUEUED
    agent_id: int | None = None
    offer_expires_at: float | None = None
    answered_at: float | None = None
    held: bool = False  # not routed: the customer is away (grace period)
    customer_online: bool = True
    customer_risk: str = "low"
    grace_until: float | None = None
    # (agent id, until): agents who declined or missed it and when their exclusion ends
    excluded: tuple[tuple[int, float], ...] = ()
    dropped_by: str | None = None  # the agent lost while in the call (a lead may take over)
    dropped_at: float | None = None
    end_reason: EndReason | None = None
    # a callback: "waiting" (the customer left the queue keeping the place), then "due"
    # (the place came up: the customer is asked back until callback_due_until)
    callback: str | None = None
    callback_due_until: float | None = None

    def excluded_agents(self, now: float) -> frozenset[int]:
        return frozenset(a for a, until in self.excluded if until > now)


@dataclass(frozen=True)
class AgentRec:
    agent_id: int
    username: str
    skills: frozenset[str] = frozenset()
    lead: bool = False
    state: AgentState = AgentState.OFFLINE
    state_since: float = 0.0
    idle_since: float = 0.0
    missed_offers: int = 0
    call_id: str | None = None
    wrap_up_until: float | None = None
    preferred: frozenset[str] = frozenset()
    # (service, offers of it in a row): routing's max_consecutive_offers reads it
    streak: tuple[str, int] = ("", 0)

    @property
    def actor(self) -> str:
        return f"{'lead' if self.lead else 'agent'}:{self.username}"


@dataclass(frozen=True)
class Event:
    """A frozen snapshot of what happened, for the journal and the notifications."""

    kind: str
    call_id: str | None = None
    agent_id: int | None = None
    actor: str = SYSTEM
    at: float = 0.0
    payload: tuple[tuple[str, Any], ...] = ()

    def data(self) -> dict[str, Any]:
        return dict(self.payload)


def _ev(kind: str, now: float, call_id: str | None = None, agent_id: int | None = None,
        actor: str = SYSTEM, **payload: Any) -> Event:
    return Event(kind, call_id, agent_id, actor, now, tuple(sorted(payload.items())))


@dataclass(frozen=True)
class QueueState:
    """Open calls and known agents. Never changed in place: each rule returns a new one."""

    calls: Mapping[str, CallRec] = field(default_factory=lambda: MappingProxyType({}))
    agents: Mapping[int, AgentRec] = field(default_factory=lambda: MappingProxyType({}))
    seq: int = 0

    def with_(self, calls: Mapping[str, CallRec | None] | None = None,
              agents: Mapping[int, AgentRec] | None = None, seq: int | None = None
              ) -> "QueueState":
        c = dict(self.calls)
        for k, v in (calls or {}).items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        a = {**self.agents, **(agents or {})}
        return QueueState(MappingProxyType(c), MappingProxyType(a),
                          self.seq if seq is None else seq)

    def open_call_of(self, customer_id: str) -> CallRec | None:
        return next((c for c in self.calls.values() if c.customer_id == customer_id), None)


@dataclass(frozen=True)
class Outcome:
    state: QueueState
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Deadline:
    """A stored deadline that has passed: ``kind`` is offer, grace, wrap_up, exclusion or
    wait (queued longer than ``max_wait_s``) or callback (a due callback's answer window
    passed)."""

    kind: str
    call_id: str | None
    agent_id: int | None
    at: float


# ------------------------------------------------------------------ helpers
def _call(state: QueueState, call_id: str) -> CallRec:
    call = state.calls.get(call_id)
    if call is None or call.state is CallState.ENDED:
        raise NotFound("no such active call", code="unknown_call")
    return call


def _agent(state: QueueState, agent_id: int) -> AgentRec:
    agent = state.agents.get(agent_id)
    if agent is None:
        raise NotFound("agent is not signed in", code="agent_offline")
    return agent


def _move_call(call: CallRec, target: CallState, **changes: Any) -> CallRec:
    if target not in CALL_TRANSITIONS[call.state]:
        raise IllegalTransition(f"call {call.call_id}", call.state, target)
    return replace(call, state=target, **changes)


def _move_agent(agent: AgentRec, target: AgentState, now: float, reason: str,
                events: list[Event], about: str | None = None, **changes: Any
                ) -> AgentRec:
    """The agent's state change (``about``: the call the timeline files it under);
    ``changes``: other fields changed with it."""
    if target == agent.state:
        return replace(agent, **changes) if changes else agent
    if target not in AGENT_TRANSITIONS[agent.state]:
        raise IllegalTransition(f"agent {agent.username}", agent.state, target)
    if agent.state is AgentState.WRAP_UP:
        changes.setdefault("wrap_up_until", None)
    if target is AgentState.AVAILABLE:
        changes["idle_since"] = now
    events.append(_ev("agent.state", now, about, agent.agent_id, agent=agent.username,
                      state=target.value, previous=agent.state.value, reason=reason))
    return replace(agent, state=target, state_since=now, **changes)


def _withdraw(state: QueueState, call: CallRec, reason: str, now: float,
              events: list[Event]) -> QueueState:
    """Take an offer back from its agent (not the agent's fault) and re-queue."""
    agent = state.agents.get(call.agent_id) if call.agent_id is not None else None
    call = _move_call(call, CallState.QUEUED, agent_id=None, offer_expires_at=None)
    events.append(_ev("offer.withdrawn", now, call.call_id, agent.agent_id if agent else None,
                      reason=reason))
    agents: dict[int, AgentRec] = {}
    if agent is not None:
        agents[agent.agent_id] = _move_agent(agent, AgentState.AVAILABLE, now, reason, events,
                                             call.call_id, call_id=None)
    return state.with_({call.call_id: call}, agents)


def _return_offer(state: QueueState, call: CallRec, agent: AgentRec, reason: str, now: float,
                  cfg: RulesConfig, events: list[Event]) -> QueueState:
    """A declined or missed offer: the call re-queues avoiding the agent for a while."""
    excluded = tuple((a, u) for a, u in call.excluded if a != agent.agent_id) + \
        ((agent.agent_id, now + cfg.exclusion_s),)
    call = _move_call(call, CallState.QUEUED, agent_id=None, offer_expires_at=None,
                      excluded=excluded)
    events.append(_ev("offer.withdrawn", now, call.call_id, agent.agent_id, reason=reason))
    missed = agent.missed_offers + (1 if reason == "missed" else 0)
    if reason == "missed" and missed >= cfg.max_missed_offers:
        agent = _move_agent(agent, AgentState.AWAY, now, "missed_offers", events, call.call_id,
                            call_id=None, missed_offers=missed)
    else:
        agent = _move_agent(agent, AgentState.AVAILABLE, now, reason, events, call.call_id,
                            call_id=None, missed_offers=missed)
    events.append(_ev("call.queued", now, call.call_id, requeued=True, reason=reason))
    return state.with_({call.call_id: call}, {agent.agent_id: agent})


# ------------------------------------------------------------------ customer side
def enqueue(state: QueueState, cfg: RulesConfig, now: float, *, call_id: str,
            customer_id: str, service: str, skill: str, priority: int = 0,
            customer_risk: str = "low") -> Outcome:
    if state.open_call_of(customer_id) is not None:
        raise Conflict("this customer already has a call", code="already_in_call")
    if call_id in state.calls:
        raise Conflict("this call exists already", code="duplicate_call")
    if sum(1 for c in state.calls.values() if c.state is CallState.QUEUED) \
            >= cfg.max_queue_length:
        raise RateLimited("the queue is full, try again later", code="queue_full")
    seq = state.seq + 1
    call = CallRec(call_id, customer_id, service, skill, priority, now, seq,
                   customer_risk=customer_risk)
    events = (_ev("call.requested", now, call_id, actor=f"customer:{customer_id}",
                  service=service, priority=priority),
              _ev("call.queued", now, call_id, priority=priority))
    return Outcome(state.with_({call_id: call}, seq=seq), events)


def grace_start(state: QueueState, cfg: RulesConfig, now: float, call_id: str) -> Outcome:
    """The customer's connection dropped: the call is held for ``customer_grace_s``; an
    offer in flight is withdrawn (not the agent's fault)."""
    call = state.calls.get(call_id)
    if call is None or call.state is CallState.ENDED:
        return Outcome(state)
    if call.callback is not None:  # expected: the customer comes back when told
        return Outcome(state.with_({call_id: replace(call, customer_online=False)}))
    events = [_ev("customer.disconnected", now, call_id, actor=f"customer:{call.customer_id}",
                  grace_s=cfg.customer_grace_s)]
    call = replace(call, customer_online=False, held=True,
                   grace_until=now + cfg.customer_grace_s)
    state = state.with_({call_id: call})
    if call.state is CallState.OFFERED:
        state = _withdraw(state, call, "customer_disconnected", now, events)
    return Outcome(state, tuple(events))


def grace_end(state: QueueState, now: float, call_id: str,
              cfg: RulesConfig = RulesConfig()) -> Outcome:
    """The customer is back within the grace period (or, for a callback, back early: it
    keeps its place; back when due: it is answered first)."""
    call = _call(state, call_id)
    if call.callback == "waiting":
        return Outcome(state.with_({call_id: replace(call, customer_online=True)}))
    if call.callback == "due":
        call = replace(call, customer_online=True)
        return _callback_taken(state.with_({call_id: call}), cfg, now, call, [])
    call = replace(call, customer_online=True, held=False, grace_until=None)
    return Outcome(state.with_({call_id: call}),
                   (_ev("customer.reconnected", now, call_id,
                        actor=f"customer:{call.customer_id}"),))


def expire_grace(state: QueueState, cfg: RulesConfig, now: float, call_id: str) -> Outcome:
    call = state.calls.get(call_id)
    if call is None or call.grace_until is None or now < call.grace_until:
        return Outcome(state)
    reason = EndReason.FAILED if call.state is CallState.IN_CALL else EndReason.ABANDONED
    return _end(state, cfg, now, call, reason, SYSTEM, cause="grace_expired")


# ------------------------------------------------------------------ callbacks
def request_callback(state: QueueState, now: float, call_id: str, customer_id: str
                     ) -> Outcome:
    """The waiting customer leaves the queue keeping the place: held (not routed), no
    grace period; :func:`callback_places` says when the place comes up."""
    call = _call(state, call_id)
    if call.customer_id != customer_id:
        raise Forbidden("not your call")
    if call.state is not CallState.QUEUED:
        raise InvalidState("only a waiting call can become a callback", code="not_waiting")
    if call.callback is not None:
        raise Conflict("a callback is already requested", code="callback_requested")
    call = replace(call, callback="waiting", held=True, grace_until=None)
    return Outcome(state.with_({call_id: call}),
                   (_ev("callback.requested", now, call_id, actor=f"customer:{customer_id}"),))


def callback_places(state: QueueState, now: float, aging_s: float | None = None
                    ) -> list[str]:
    """Waiting callbacks whose place came up: first in line for their skill, not counting
    callbacks already due (they have their answer window meanwhile)."""
    calls = [c for c in state.calls.values() if c.state is CallState.QUEUED]
    if not any(c.callback == "waiting" for c in calls):
        return []
    first = routing.first_in_line([routing.WaitingCall(
        c.call_id, c.skill, c.priority, c.enqueued_at, c.seq, frozenset(), c.customer_risk,
        c.service) for c in calls if c.callback != "due"], now, aging_s)
    return [cid for cid in first.values() if state.calls[cid].callback == "waiting"]


def callback_due(state: QueueState, cfg: RulesConfig, now: float, call_id: str) -> Outcome:
    """The callback's place came up: the customer is told (and has ``callback_answer_s``
    to come back); a customer still connected is answered first at once."""
    call = state.calls.get(call_id)
    if call is None or call.state is not CallState.QUEUED or call.callback != "waiting":
        return Outcome(state)  # repeated or stale: nothing to do
    call = replace(call, callback="due", callback_due_until=now + cfg.callback_answer_s)
    events = [_ev("callback.due", now, call_id, answer_within_s=cfg.callback_answer_s,
                  customer_online=call.customer_online)]
    state = state.with_({call_id: call})
    if call.customer_online:
        return _callback_taken(state, cfg, now, call, events)
    return Outcome(state, tuple(events))


def _callback_taken(state: QueueState, cfg: RulesConfig, now: float, call: CallRec,
                    events: list[Event]) -> Outcome:
    call = replace(call, callback=None, callback_due_until=None, held=False,
                   priority=max(call.priority, cfg.callback_priority))
    events.append(_ev("callback.taken", now, call.call_id,
                      actor=f"customer:{call.customer_id}"))
    return Outcome(state.with_({call.call_id: call}), tuple(events))


def expire_callback(state: QueueState, cfg: RulesConfig, now: float, call_id: str
                    ) -> Outcome:
    """A due callback not taken up in its answer window ends ``abandoned``."""
    call = state.calls.get(call_id)
    if call is None or call.callback != "due" or call.callback_due_until is None \
            or now < call.callback_due_until:
        return Outcome(state)
    out = _end(state, cfg, now, call, EndReason.ABANDONED, SYSTEM, cause="callback_expired")
    return Outcome(out.state, (_ev("callback.expired", now, call_id),) + out.events)


# ------------------------------------------------------------------ routing side
def offer(state: QueueState, cfg: RulesConfig, now: float, call_id: str, agent_id: int,
          pool: str | None = None) -> Outcome:
    """Offer a queued call to an available agent (what the router decided)."""
    call = _call(state, call_id)
    agent = _agent(state, agent_id)
    if call.state is not CallState.QUEUED or call.held:
        raise InvalidState("this call is not waiting", code="not_waiting")
    if agent.state is not AgentState.AVAILABLE or agent.call_id is not None or agent.lead:
        raise InvalidState("this agent is not available", code="agent_not_available")
    if agent_id in call.excluded_agents(now):
        raise InvalidState("this agent declined or missed the call", code="agent_excluded")
    events: list[Event] = []
    call = _move_call(call, CallState.OFFERED, agent_id=agent_id,
                      offer_expires_at=now + cfg.offer_timeout_s)
    service, count = agent.streak
    agent = _move_agent(agent, AgentState.OFFERED, now, "offer", events, call_id,
                        call_id=call_id,
                        streak=(call.service, count + 1 if service == call.service else 1))
    events.append(_ev("call.offered", now, call_id, agent_id, agent=agent.username,
                      timeout_s=cfg.offer_timeout_s, **({"pool": pool} if pool else {})))
    return Outcome(state.with_({call_id: call}, {agent_id: agent}), tuple(events))


def accept(state: QueueState, cfg: RulesConfig, now: float, agent_id: int, call_id: str
           ) -> Outcome:
    agent = _agent(state, agent_id)
    call = _call(state, call_id)
    if call.state is not CallState.OFFERED or call.agent_id != agent_id:
        raise InvalidState("this call is not offered to you", code="offer_expired")
    events: list[Event] = []
    call = _move_call(call, CallState.IN_CALL, offer_expires_at=None, answered_at=now,
                      dropped_by=None, dropped_at=None)
    agent = _move_agent(agent, AgentState.BUSY, now, "accepted", events, call_id,
                        missed_offers=0)
    events.append(_ev("call.answered", now, call_id, agent_id, agent.actor,
                      agent=agent.username))
    return Outcome(state.with_({call_id: call}, {agent_id: agent}), tuple(events))


def decline(state: QueueState, cfg: RulesConfig, now: float, agent_id: int, call_id: str
            ) -> Outcome:
    agent = _agent(state, agent_id)
    call = _call(state, call_id)
    if call.state is not CallState.OFFERED or call.agent_id != agent_id:
        raise InvalidState("this call is not offered to you", code="offer_expired")
    events = [_ev("offer.declined", now, call_id, agent_id, agent.actor, agent=agent.username)]
    return Outcome(_return_offer(state, call, agent, "declined", now, cfg, events),
                   tuple(events))


def expire_offer(state: QueueState, cfg: RulesConfig, now: float, call_id: str) -> Outcome:
    """The offer's deadline passed: missed (counts towards ``max_missed_offers``)."""
    call = state.calls.get(call_id)
    if call is None or call.state is not CallState.OFFERED or call.offer_expires_at is None \
            or now < call.offer_expires_at:
        return Outcome(state)
    agent = state.agents.get(call.agent_id) if call.agent_id is not None else None
    events = [_ev("offer.timeout", now, call_id, call.agent_id,
                  agent=agent.username if agent else None)]
    if agent is None:
        return Outcome(state, tuple(events))
    return Outcome(_return_offer(state, call, agent, "missed", now, cfg, events),
                   tuple(events))


def expire_wait(state: QueueState, cfg: RulesConfig, now: float, call_id: str) -> Outcome:
    """A call queued longer than ``max_wait_s`` (from its original place) ends
    ``timed_out``; an offered or answered call is not touched."""
    call = state.calls.get(call_id)
    if call is None or call.state is not CallState.QUEUED \
            or not now - call.enqueued_at > cfg.max_wait_s:
        return Outcome(state)
    return _end(state, cfg, now, call, EndReason.TIMED_OUT, SYSTEM)


def expire_exclusions(state: QueueState, now: float, call_id: str) -> Outcome:
    call = state.calls.get(call_id)
    if call is None or not call.excluded or call.state is not CallState.QUEUED:
        return Outcome(state)
    kept = tuple((a, u) for a, u in call.excluded if u > now)
    if kept == call.excluded:
        return Outcome(state)
    return Outcome(state.with_({call_id: replace(call, excluded=kept)}),
                   (_ev("call.exclusions_expired", now, call_id),))


# ------------------------------------------------------------------ ending
def _end(state: QueueState, cfg: RulesConfig, now: float, call: CallRec, reason: EndReason,
         actor: str, **payload: Any) -> Outcome:
    was = call.state
    agent = state.agents.get(call.agent_id) if call.agent_id is not None else None
    _move_call(call, CallState.ENDED, end_reason=reason, grace_until=None,
               offer_expires_at=None)  # validates the transition
    events = [_ev("call.ended", now, call.call_id, call.agent_id, actor, reason=reason.value,
                  **payload)]
    agents: dict[int, AgentRec] = {}
    if agent is not None and agent.call_id == call.call_id:
        if was is CallState.IN_CALL:
            agents[agent.agent_id] = _move_agent(agent, AgentState.WRAP_UP, now, "call_ended",
                                                 events, call.call_id,
                                                 wrap_up_until=now + cfg.wrap_up_s)
        else:
            events.append(_ev("offer.withdrawn", now, call.call_id, agent.agent_id,
                              reason=reason.value))
            agents[agent.agent_id] = _move_agent(agent, AgentState.AVAILABLE, now,
                                                 "call_ended", events, call.call_id,
                                                 call_id=None)
    # an ended call leaves the open set (the journal keeps it)
    return Outcome(state.with_({call.call_id: None}, agents), tuple(events))


def end(state: QueueState, cfg: RulesConfig, now: float, call_id: str, reason: EndReason,
        actor: str = SYSTEM, *, by_agent: int | None = None, by_customer: str | None = None,
        **payload: Any) -> Outcome:
    """End an open call. ``by_agent``: the agent hangs up (only its answered call);
    ``by_customer``: the customer hangs up (completed if answered, else abandoned)."""
    call = _call(state, call_id)
    if by_agent is not None:
        agent = _agent(state, by_agent)
        if call.agent_id != by_agent or call.state is not CallState.IN_CALL:
            raise Forbidden("not your call")
        actor, reason = agent.actor, EndReason.COMPLETED
    if by_customer is not None:
        if call.customer_id != by_customer:
            raise Forbidden("not your call")
        actor = f"customer:{by_customer}"
        reason = EndReason.COMPLETED if call.state is CallState.IN_CALL \
            else EndReason.ABANDONED
        if call.callback is not None:
            out = _end(state, cfg, now, call, reason, actor, **payload)
            return Outcome(out.state, (_ev("callback.cancelled", now, call_id, actor=actor),)
                           + out.events)
    return _end(state, cfg, now, call, reason, actor, **payload)


# ------------------------------------------------------------------ agents
def agent_online(state: QueueState, now: float, agent_id: int, username: str,
                 skills: frozenset[str] = frozenset(), *, lead: bool = False,
                 preferred: frozenset[str] = frozenset()) -> Outcome:
    """An agent (or, ``lead``, a team lead: no skills, never routed) signs in: away."""
    agent = state.agents.get(agent_id)
    if lead:
        skills, preferred = frozenset(), frozenset()
    if agent is None:
        agent = AgentRec(agent_id, username, skills, lead, state_since=now,
                         preferred=preferred & skills)
    elif agent.state is AgentState.OFFLINE or lead:
        agent = replace(agent, skills=skills, preferred=preferred & skills, lead=lead)
    events: list[Event] = []
    if agent.state is AgentState.OFFLINE:
        agent = _move_agent(agent, AgentState.AWAY, now, "signed_in", events)
    return Outcome(state.with_(agents={agent_id: agent}), tuple(events))


def requeue(state: QueueState, now: float, call_id: str, reason: str) -> Outcome:
    """The call's agent is lost: the call goes back to its original place (enqueue time and
    sequence kept); if it was answered, a team lead may take it over."""
    call = _call(state, call_id)
    if call.state not in LIVE:
        raise InvalidState("this call has no agent", code="not_assigned")
    agent = state.agents.get(call.agent_id) if call.agent_id is not None else None
    was_in_call = call.state is CallState.IN_CALL
    changes: dict[str, Any] = {"agent_id": None, "offer_expires_at": None,
                               "answered_at": None}
    if was_in_call and agent is not None:
        changes.update(dropped_by=agent.username, dropped_at=now)
    call = _move_call(call, CallState.QUEUED, **changes)
    events = (_ev("call.requeued", now, call_id, agent.agent_id if agent else None,
                  reason=reason, agent=agent.username if agent else None,
                  was_in_call=was_in_call),)
    return Outcome(state.with_({call_id: call}), events)


def agent_offline(state: QueueState, now: float, agent_id: int) -> Outcome:
    agent = state.agents.get(agent_id)
    if agent is None:
        return Outcome(state)
    call = state.calls.get(agent.call_id) if agent.call_id else None
    events: list[Event] = []
    agent = _move_agent(agent, AgentState.OFFLINE, now, "disconnected", events,
                        call.call_id if call else None, call_id=None, wrap_up_until=None)
    state = state.with_(agents={agent_id: agent})
    if call is not None and call.state in LIVE and call.agent_id == agent_id:
        out = requeue(state, now, call.call_id, "agent_disconnected")
        return Outcome(out.state, tuple(events) + out.events)
    return Outcome(state, tuple(events))


def set_agent_status(state: QueueState, now: float, agent_id: int, status: AgentState
                     ) -> Outcome:
    if status not in (AgentState.AVAILABLE, AgentState.AWAY):
        raise InvalidState("agents set themselves available or away", code="invalid_status")
    agent = _agent(state, agent_id)
    if agent.state in (AgentState.OFFERED, AgentState.BUSY):
        raise InvalidState(f"cannot change status while {agent.state.value}",
                           code="agent_engaged")
    if agent.state is AgentState.WRAP_UP:
        raise InvalidState("finish the wrap-up first", code="wrap_up_pending")
    if agent.state is AgentState.OFFLINE:
        raise NotFound("agent is not signed in", code="agent_offline")
    if status is AgentState.AVAILABLE and agent.lead:
        raise InvalidState("a team lead's console takes over calls, it is not routed any",
                           code="lead_not_routed")
    events: list[Event] = []
    changes: dict[str, Any] = {"missed_offers": 0} if status is AgentState.AVAILABLE else {}
    agent = _move_agent(agent, status, now, "agent", events, **changes)
    return Outcome(state.with_(agents={agent_id: agent}), tuple(events))


def _wrap_done(agent: AgentRec) -> AgentState:
    return AgentState.AWAY if agent.lead else AgentState.AVAILABLE


def finish_wrap_up(state: QueueState, now: float, agent_id: int, call_id: str,
                   then: AgentState = AgentState.AVAILABLE) -> Outcome:
    agent = _agent(state, agent_id)
    if agent.state is not AgentState.WRAP_UP or agent.call_id != call_id:
        raise InvalidState("no wrap-up pending for this call", code="no_wrap_up")
    events = [_ev("call.wrapped_up", now, call_id, agent_id, agent.actor)]
    target = AgentState.AWAY if agent.lead else then
    agent = _move_agent(agent, target, now, "wrap_up_done", events, call_id=None)
    return Outcome(state.with_(agents={agent_id: agent}), tuple(events))


def expire_wrap_up(state: QueueState, now: float, agent_id: int) -> Outcome:
    agent = state.agents.get(agent_id)
    if agent is None or agent.state is not AgentState.WRAP_UP or agent.wrap_up_until is None \
            or now < agent.wrap_up_until:
        return Outcome(state)
    events = [_ev("wrap_up.timeout", now, agent.call_id, agent_id, agent=agent.username)]
    agent = _move_agent(agent, _wrap_done(agent), now, "wrap_up_timeout", events,
                        call_id=None)
    return Outcome(state.with_(agents={agent_id: agent}), tuple(events))


def take_over(state: QueueState, now: float, lead_id: int, call_id: str) -> Outcome:
    """A team lead answers a call whose agent dropped, while it waits again (queued, or
    offered to another agent: that offer is withdrawn, not the agent's fault)."""
    lead = _agent(state, lead_id)
    if not lead.lead:
        raise Forbidden("only a team lead takes over a call", code="lead_only")
    call = _call(state, call_id)
    if call.dropped_by is None or call.state is CallState.IN_CALL:
        raise InvalidState("this call's agent has not dropped: nothing to take over",
                           code="not_dropped")
    if lead.state is not AgentState.AWAY or lead.call_id is not None:
        raise InvalidState("finish your current call first", code="lead_busy")
    if call.held or not call.customer_online:
        raise InvalidState("the customer is not connected at the moment",
                           code="customer_away")
    events: list[Event] = []
    if call.state is CallState.OFFERED:
        state = _withdraw(state, call, "taken_over", now, events)
        call = state.calls[call_id]
    waited = now - call.dropped_at if call.dropped_at is not None else None
    from_agent = call.dropped_by
    call = _move_call(call, CallState.OFFERED)
    call = _move_call(call, CallState.IN_CALL, agent_id=lead_id, offer_expires_at=None,
                      answered_at=now, dropped_by=None, dropped_at=None)
    events.append(_ev("call.taken_over", now, call_id, lead_id, lead.actor, lead=lead.username,
                      from_agent=from_agent,
                      after_s=round(waited, 1) if waited is not None else None))
    lead = _move_agent(lead, AgentState.BUSY, now, "taken_over", events, call_id,
                       call_id=call_id)
    events.append(_ev("call.answered", now, call_id, lead_id, lead.actor, agent=lead.username,
                      taken_over=True))
    return Outcome(state.with_({call_id: call}, {lead_id: lead}), tuple(events))


# ------------------------------------------------------------------ deadlines and views
def due(state: QueueState, now: float, cfg: RulesConfig | None = None) -> list[Deadline]:
    """Every stored deadline that has passed, oldest first. With ``cfg``, what its
    settings make due as well: queued calls that waited longer than ``max_wait_s`` (kind
    ``wait``) and waiting callbacks whose place came up (``callback_place``, at ``now``)."""
    out: list[Deadline] = []
    if cfg is not None:
        out.extend(Deadline("callback_place", cid, None, now)
                   for cid in callback_places(state, now, cfg.aging_s))
    for c in state.calls.values():
        if cfg is not None and c.state is CallState.QUEUED \
                and now - c.enqueued_at > cfg.max_wait_s:
            out.append(Deadline("wait", c.call_id, None, c.enqueued_at + cfg.max_wait_s))
        if c.state is CallState.OFFERED and c.offer_expires_at is not None \
                and now >= c.offer_expires_at:
            out.append(Deadline("offer", c.call_id, c.agent_id, c.offer_expires_at))
        if c.grace_until is not None and now >= c.grace_until:
            out.append(Deadline("grace", c.call_id, None, c.grace_until))
        if c.callback == "due" and c.callback_due_until is not None \
                and now >= c.callback_due_until:
            out.append(Deadline("callback", c.call_id, None, c.callback_due_until))
        for excluded, until in (c.excluded if c.state is CallState.QUEUED else ()):
            if until <= now:
                out.append(Deadline("exclusion", c.call_id, excluded, until))
    for a in state.agents.values():
        if a.state is AgentState.WRAP_UP and a.wrap_up_until is not None \
                and now >= a.wrap_up_until:
            out.append(Deadline("wrap_up", a.call_id, a.agent_id, a.wrap_up_until))
    return sorted(out, key=lambda d: (d.at, d.kind, d.call_id or "", d.agent_id or 0))


def waiting_view(state: QueueState, now: float
                 ) -> tuple[list[routing.WaitingCall], list[routing.IdleAgent]]:
    """What :func:`cloudcounter.queue.routing.route` needs: waiting calls not held, agents
    available (never a lead)."""
    calls = [routing.WaitingCall(c.call_id, c.skill, c.priority, c.enqueued_at, c.seq,
                                 c.excluded_agents(now), c.customer_risk, c.service)
             for c in state.calls.values() if c.state is CallState.QUEUED and not c.held]
    agents = [routing.IdleAgent(a.agent_id, a.skills, a.idle_since, a.preferred, a.streak)
              for a in state.agents.values()
              if a.state is AgentState.AVAILABLE and not a.lead and a.call_id is None]
    return calls, agents

