"""Calls and agents as the queue sees them: plain data with explicit state machines."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class IllegalTransition(Exception):
    def __init__(self, what: str, current: enum.Enum, target: enum.Enum) -> None:
        super().__init__(f"{what}: illegal transition {current.value} -> {target.value}")
        self.current = current
        self.target = target


class CallState(str, enum.Enum):
    QUEUED = "queued"
    OFFERED = "offered"
    IN_CALL = "in_call"
    ENDED = "ended"


class EndReason(str, enum.Enum):
    COMPLETED = "completed"  # hung up by either side after it was answered
    ABANDONED = "abandoned"  # the customer left (or did not come back) before an answer
    REJECTED = "rejected"  # refused by the hub (queue full, service closed)
    FAILED = "failed"  # lost connection or media failure during the call
    TIMED_OUT = "timed_out"  # waited longer than the maximum queue wait


class AgentState(str, enum.Enum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    OFFERED = "offered"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    AWAY = "away"


CALL_TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.QUEUED: frozenset({CallState.OFFERED, CallState.ENDED}),
    CallState.OFFERED: frozenset({CallState.QUEUED, CallState.IN_CALL, CallState.ENDED}),
    CallState.IN_CALL: frozenset({CallState.QUEUED, CallState.ENDED}),
    CallState.ENDED: frozenset(),
}

A = AgentState
AGENT_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    A.OFFLINE: frozenset({A.AVAILABLE, A.AWAY}),
    A.AVAILABLE: frozenset({A.OFFERED, A.AWAY, A.OFFLINE}),
    A.OFFERED: frozenset({A.BUSY, A.AVAILABLE, A.AWAY, A.OFFLINE}),
    A.BUSY: frozenset({A.WRAP_UP, A.OFFLINE}),
    A.WRAP_UP: frozenset({A.AVAILABLE, A.AWAY, A.OFFLINE}),
    # away -> busy: a team lead takes over a call whose agent dropped (Dispatcher.take_over)
    A.AWAY: frozenset({A.AVAILABLE, A.BUSY, A.OFFLINE}),
}


@dataclass
class Call:
    call_id: str
    customer_id: str
    service: str
    skill: str
    priority: int
    enqueued_at: float  # monotonic; the call's place in the queue, kept when re-queued
    seq: int  # tie-break for calls enqueued at the same instant
    state: CallState = CallState.QUEUED
    agent_id: int | None = None
    offer_expires_at: float | None = None
    answered_at: float | None = None
    held: bool = False  # not routed: the customer is away (grace period, or a callback)
    # a callback: "waiting" (the customer left the queue keeping the place), then "due" (the
    # place came up: the customer is asked to come back); None for a live caller
    callback: str | None = None
    callback_due_until: float | None = None  # monotonic: a due callback expires then
    customer_online: bool = True
    customer_risk: str = "low"  # the customer's risk level on file (routing: senior agents)
    # agents who missed or declined it, with the monotonic time the exclusion ends
    excluded: dict[int, float] = field(default_factory=dict)
    # the agent lost while in the call (their socket dropped) and when: a team lead may take
    # the call over while it waits again; cleared when it is answered
    dropped_by: str | None = None
    dropped_at: float | None = None
    # monotonic: the customer's connection dropped and the call ends then unless they are
    # back (a stored deadline, like ``offer_expires_at``: the timer reads it)
    grace_until: float | None = None

    def snapshot(self) -> "Call":
        """A copy as it is now, for a notification delivered later (the queue goes on
        changing this call meanwhile; the copy is never changed)."""
        return replace(self, excluded=dict(self.excluded))

    def transition(self, target: CallState) -> CallState:
        if target not in CALL_TRANSITIONS[self.state]:
            raise IllegalTransition(f"call {self.call_id}", self.state, target)
        previous, self.state = self.state, target
        return previous


@dataclass
class Agent:
    agent_id: int
    username: str
    skills: frozenset[str]
    display_name: str = ""
    state: AgentState = AgentState.OFFLINE
    state_since: float = 0.0
    idle_since: float = 0.0  # when the agent last became available (longest idle first)
    missed_offers: int = 0
    call_id: str | None = None
    preferred: frozenset[str] = frozenset()  # skills whose calls this agent takes first
    # a team lead on the agent console: never routed (never available), carries only the
    # calls it takes over from agents who dropped (Dispatcher.take_over)
    lead: bool = False
    # stored deadlines and counters the queue's rules read (no dispatcher-side dicts):
    wrap_up_until: float | None = None  # monotonic: the wrap-up ends by itself then
    # (skill, answered at) of the call being wrapped up: its handle time counts when the
    # wrap-up ends
    handled: tuple[str, float] | None = None
    last_call_id: str | None = None  # the call whose wrap-up timed out (a late wrap-up)
    streak: tuple[str, int] = ("", 0)  # (service, offers of it in a row)

    @property
    def actor(self) -> str:
        """How the timeline names it: ``agent:<username>`` or ``lead:<username>``."""
        return f"{'lead' if self.lead else 'agent'}:{self.username}"

    def snapshot(self) -> "Agent":
        """A copy as it is now (see :meth:`Call.snapshot`)."""
        return replace(self)

    def transition(self, target: AgentState, now: float) -> AgentState:
        if target == self.state:
            return self.state
        if target not in AGENT_TRANSITIONS[self.state]:
            raise IllegalTransition(f"agent {self.username}", self.state, target)
        previous, self.state, self.state_since = self.state, target, now
        if target is AgentState.AVAILABLE:
            self.idle_since = now
        return previous
