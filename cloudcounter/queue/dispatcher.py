"""The call queue's rules: requests, offers with timeouts, accept/decline, re-queueing,
grace periods, wrap-up, and position/wait updates. Owns two tasks (routing and timers),
started by :meth:`start` and cancelled by :meth:`stop`.

Every transition goes to the :class:`CallJournal`; notifications go to the
:class:`QueueListener` after the queue's lock is released.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from cloudcounter.errors import Conflict, Forbidden, InvalidState, NotFound, RateLimited
from cloudcounter.queue import routing
from cloudcounter.queue.model import Agent, AgentState, Call, CallState, EndReason
from cloudcounter.queue.ports import CallJournal, QueueListener
from cloudcounter.queue.store import QueueStore
from cloudcounter.queue.takeover import LeadTakeover

log = logging.getLogger(__name__)
SYSTEM = "system"
NO_AGENTS: frozenset[int] = frozenset()
BULK_BATCH = 500
#: the timeline's name for how a call reached its agent (routing.Assignment.tier)
TIERS = {0: None, 1: "widened", 2: "overflow"}


@dataclass(frozen=True)
class QueueConfig:
    offer_timeout_s: float = 15.0
    max_missed_offers: int = 2
    wrap_up_s: float = 60.0
    customer_grace_s: float = 20.0
    agent_grace_s: float = 0.0  # an agent's dropped socket re-queues at once by default
    position_interval_s: float = 1.0
    exclusion_s: float = 30.0  # a declined/missed call avoids that agent this long
    max_wait_s: float = 1800.0
    max_queue_length: int = 5000
    callback_answer_s: float = 300.0  # a due callback waits this long for the customer
    callback_priority: int = 9  # a customer back from a callback is answered first
    aging_s: float | None = 300.0  # one priority level per this many seconds of waiting
    default_handle_s: float = 180.0
    tick_s: float = 0.1
    route_coalesce_s: float = 0.005


class Dispatcher:
    def __init__(self, store: QueueStore, listener: QueueListener, journal: CallJournal,
                 config: QueueConfig, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 rules: routing.Rules = routing.no_rules) -> None:
        self.store = store
        self.rules = rules  # a service's routing rules and target answer time
        self.listener = listener
        self.journal = journal
        self.config = config
        self.clock = clock
        self.wall = wall
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = 0
        self._grace: dict[str, float] = {}  # call_id -> deadline (customer disconnected)
        self._wrap: dict[int, float] = {}  # agent_id -> wrap-up deadline
        self._answered: dict[int, tuple[str, float]] = {}  # agent_id -> (skill, answered at)
        self._last_position: dict[str, tuple[int, int]] = {}
        self._last_stats: list[dict[str, Any]] | None = None
        self._next_positions = 0.0
        self._pending: list[Awaitable[None]] = []
        self._bulk: list[Awaitable[None]] = []  # position and stats updates
        self._outbox: asyncio.Queue[Awaitable[None]] = asyncio.Queue()
        self._bulk_outbox: collections.deque[Awaitable[None]] = collections.deque()
        self._mail = asyncio.Event()
        self._position_sent: dict[str, float] = {}
        self._wc: dict[str, routing.WaitingCall] = {}
        self._staffing_cache: dict[str, int] | None = None
        self._staffing_by: dict[frozenset[str], int] = {}
        self._delivering = False
        self._handle_times: list[tuple[str, float]] = []
        self._active_by_customer: dict[str, str] = {}  # customer id -> active call id
        self._last_call: dict[int, str] = {}  # agent id -> the call it last wrapped up
        self._streak: dict[int, tuple[str, int]] = {}  # agent id -> (service, offers in a row)
        self.leads = LeadTakeover(self)  # team leads take over calls whose agent dropped

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._route_loop(), name="queue-route"),
                       asyncio.create_task(self._timer_loop(), name="queue-timers"),
                       asyncio.create_task(self._deliver_loop(), name="queue-notify")]
        self._delivering = True

    async def stop(self) -> None:
        self._delivering = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        while not self._outbox.empty():  # deliver what was decided before the stop
            self._pending.append(self._outbox.get_nowait())
        self._pending.extend(self._bulk_outbox)
        self._pending.extend(self._bulk)
        self._bulk_outbox.clear()
        self._bulk = []
        await self._flush()

    # ---------------------------------------------------------------- helpers
    def _notify(self, aw: Awaitable[None]) -> None:
        self._pending.append(aw)

    async def _flush(self) -> None:
        """After a locked section: notifications go to the delivery task, in order, so that
        neither the lock holder nor the routing loop waits for sockets. Without a running
        delivery task (unit tests drive the dispatcher by hand) they are delivered inline."""
        handle, self._handle_times = self._handle_times, []
        for skill, seconds in handle:
            await self.store.add_handle_time(skill, seconds)
        pending, self._pending = self._pending, []
        bulk, self._bulk = self._bulk, []
        if self._delivering:
            for aw in pending:
                self._outbox.put_nowait(aw)
            self._bulk_outbox.extend(bulk)
            if pending or bulk:
                self._mail.set()
            return
        for aw in pending + bulk:
            try:
                await aw
            except asyncio.CancelledError:
                raise
            except Exception:  # a failing listener must not break the queue
                log.exception("queue listener failed")

    @contextlib.asynccontextmanager
    async def _locked(self):  # type: ignore[no-untyped-def]
        try:
            async with self._lock:
                yield
        finally:
            await self._flush()

    def _event(self, call: Call, actor: str, kind: str, **payload: Any) -> None:
        self.journal.event(call.call_id, actor, kind, payload, at=self.wall())

    def _set_agent(self, agent: Agent, target: AgentState, reason: str, call: Call | None = None,
                   actor: str = SYSTEM) -> None:
        now = self.clock()
        previous = agent.transition(target, now)
        if previous is target:
            return
        self._staffing_cache = None
        if previous is AgentState.WRAP_UP:
            self._wrap.pop(agent.agent_id, None)
            answered = self._answered.pop(agent.agent_id, None)
            if answered is not None:  # handle time: answer to ready again
                self._handle_times.append((answered[0], now - answered[1]))
        if call is not None:
            self._event(call, actor, "agent.state", agent=agent.username, state=target.value,
                        previous=previous.value, reason=reason)
        self._notify(self.listener.agent_state_changed(agent, previous, reason))
        if target is AgentState.AVAILABLE:
            self._kick.set()

    async def _agent(self, agent_id: int) -> Agent:
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            raise NotFound("agent is not signed in", code="agent_offline")
        return agent

    async def _call(self, call_id: str) -> Call:
        call = await self.store.get_call(call_id)
        if call is None or call.state is CallState.ENDED:
            raise NotFound("no such active call", code="unknown_call")
        return call

    async def position_of(self, call: Call) -> tuple[int, float | None]:
        """The call's position among calls for the same skill, and its estimated wait."""
        now = self.clock()
        me = self._waiting(call, now)
        others = [self._waiting(c, now) for c in await self.store.waiting_calls()
                  if c.skill == call.skill and c.call_id != call.call_id]
        pos = routing.position_of(me, others, now, self.config.aging_s) \
            if call.state is CallState.QUEUED else 0
        staffing = await self._staffing()
        if call.customer_risk == routing.HIGH_RISK:  # only senior agents serve it
            staffing = {call.skill: await self._staffed(
                routing.needed_skills(call.skill, call.customer_risk))}
        return pos, await self._eta(call.skill, pos, staffing)

    async def _staffed(self, needed: frozenset[str]) -> int:
        """Agents signed in and not away who have all of ``needed`` (cached like
        :meth:`_staffing`)."""
        await self._staffing()
        if needed not in self._staffing_by:
            self._staffing_by[needed] = routing.staffed(
                (a.skills for a in await self.store.agents()
                 if a.state not in (AgentState.OFFLINE, AgentState.AWAY)), needed)
        return self._staffing_by[needed]

    async def _staffing(self) -> dict[str, int]:
        """Agents signed in and not away, per skill (cached until an agent changes state)."""
        if self._staffing_cache is not None:
            return self._staffing_cache
        self._staffing_by = {}
        out: dict[str, int] = {}
        for a in await self.store.agents():
            if a.state not in (AgentState.OFFLINE, AgentState.AWAY):
                for skill in a.skills:
                    out[skill] = out.get(skill, 0) + 1
        self._staffing_cache = out
        return out

    async def _eta(self, skill: str, position: int, staffing: dict[str, int],
                   handle: dict[str, list[float]] | None = None) -> float | None:
        times = handle[skill] if handle is not None and skill in handle else \
            await self.store.handle_times(skill)
        if handle is not None:
            handle[skill] = times
        eta = routing.estimate_wait(position, staffing.get(skill, 0), times,
                                    self.config.default_handle_s)
        return None if math.isinf(eta) else round(eta, 1)

    def _waiting(self, call: Call, now: float) -> routing.WaitingCall:
        """The routing view of a call, cached until its exclusions change (the timer removes
        expired exclusions, so every listed exclusion is active)."""
        wc = self._wc.get(call.call_id)
        if wc is None:
            wc = routing.WaitingCall(call.call_id, call.skill, call.priority, call.enqueued_at,
                                     call.seq, frozenset(call.excluded) or NO_AGENTS,
                                     call.customer_risk, call.service)
            self._wc[call.call_id] = wc
        return wc

    # ---------------------------------------------------------------- customer side
    async def request_call(self, *, customer_id: str, service: str, skill: str,
                           priority: int = 0, customer_risk: str = "low"
                           ) -> tuple[Call, int, float | None]:
        async with self._locked():
            if customer_id in self._active_by_customer:
                raise Conflict("this customer already has a call", code="already_in_call")
            calls = await self.store.calls()
            if sum(1 for c in calls if c.state is CallState.QUEUED) >= self.config.max_queue_length:
                raise RateLimited("the queue is full, try again later", code="queue_full")
            self._seq += 1
            call = Call(call_id="call_" + secrets.token_hex(8), customer_id=customer_id,
                        service=service, skill=skill, priority=priority,
                        enqueued_at=self.clock(), seq=self._seq, customer_risk=customer_risk)
            await self.store.put_call(call)
            self._active_by_customer[customer_id] = call.call_id
            self.journal.call_created(call, self.wall())
            self._event(call, f"customer:{customer_id}", "call.requested", service=service,
                        priority=priority, **({"needs": sorted(routing.needed_skills(
                            skill, customer_risk))} if customer_risk == routing.HIGH_RISK
                            else {}))
            self._event(call, SYSTEM, "call.queued", priority=priority)
            self.journal.call_updated(call.call_id, state=call.state.value, queued_at=self.wall())
            position, eta = await self.position_of(call)
            self._last_position[call.call_id] = (position, int(eta or -1))
            self._kick.set()
        return call, position, eta

    async def customer_hangup(self, call_id: str, customer_id: str) -> None:
        async with self._locked():
            call = await self._call(call_id)
            if call.customer_id != customer_id:
                raise Forbidden("not your call")
            reason = EndReason.COMPLETED if call.state is CallState.IN_CALL else EndReason.ABANDONED
            if call.callback is not None:
                self._event(call, f"customer:{customer_id}", "callback.cancelled")
            await self._end(call, reason, f"customer:{customer_id}")

    async def customer_disconnected(self, call_id: str) -> None:
        async with self._locked():
            call = await self.store.get_call(call_id)
            if call is None or call.state is CallState.ENDED:
                return
            call.customer_online = False
            if call.callback is not None:  # expected: the customer comes back when told
                return
            call.held = True
            self._grace[call_id] = self.clock() + self.config.customer_grace_s
            self._event(call, f"customer:{call.customer_id}", "customer.disconnected",
                        grace_s=self.config.customer_grace_s)
            if call.state is CallState.OFFERED:
                await self._withdraw(call, "customer_disconnected")

    async def customer_reconnected(self, call_id: str) -> Call:
        async with self._locked():
            call = await self._call(call_id)
            call.customer_online = True
            if call.callback == "waiting":  # back early: the callback keeps its place
                return call
            if call.callback == "due":
                self._callback_taken(call)
                return call
            self._grace.pop(call_id, None)
            call.held = False
            self._event(call, f"customer:{call.customer_id}", "customer.reconnected")
            self._last_position.pop(call_id, None)  # push the position again
            self._kick.set()
            return call

    # ---------------------------------------------------------------- callbacks
    async def request_callback(self, call_id: str, customer_id: str
                               ) -> tuple[int, float | None]:
        """The waiting customer leaves the queue keeping the place: when it comes up, the
        customer is told (``callback_due``: the page if open, the bank's app by webhook)
        and has ``callback_answer_s`` to come back; the call is then answered first."""
        async with self._locked():
            call = await self._call(call_id)
            if call.customer_id != customer_id:
                raise Forbidden("not your call")
            if call.state is not CallState.QUEUED:
                raise InvalidState("only a waiting call can become a callback",
                                   code="not_waiting")
            if call.callback is not None:
                raise Conflict("a callback is already requested", code="callback_requested")
            call.callback, call.held = "waiting", True
            self._grace.pop(call_id, None)
            position, eta = await self.position_of(call)
            self._event(call, f"customer:{customer_id}", "callback.requested",
                        position=position, estimated_wait_s=eta)
            return position, eta

    def _callback_due(self, call: Call, now: float) -> None:
        call.callback = "due"
        call.callback_due_until = now + self.config.callback_answer_s
        self._event(call, SYSTEM, "callback.due", answer_within_s=self.config.callback_answer_s,
                    customer_online=call.customer_online)
        self._notify(self.listener.callback_due(call, self.config.callback_answer_s))
        if call.customer_online:  # the page is open: answer now
            self._callback_taken(call)

    def _callback_taken(self, call: Call) -> None:
        call.callback, call.callback_due_until, call.held = None, None, False
        call.priority = max(call.priority, self.config.callback_priority)
        self._wc.pop(call.call_id, None)
        self._event(call, f"customer:{call.customer_id}", "callback.taken")
        self._last_position.pop(call.call_id, None)
        self._kick.set()

    async def _callbacks(self, now: float) -> None:
        """A waiting callback whose place came up is due; a due one not taken up expires."""
        calls = await self.store.waiting_calls()
        if not any(c.callback for c in calls):
            return
        # the first in line for each skill, not counting callbacks already due (they have
        # their answer window: the next callback's place comes up meanwhile)
        order = routing.queue_order([self._waiting(c, now) for c in calls
                                     if c.callback != "due"], now, self.config.aging_s)
        first: dict[str, str] = {}
        for wc in order:
            first.setdefault(wc.skill, wc.call_id)
        for call in calls:
            if call.callback == "waiting" and first.get(call.skill) == call.call_id:
                self._callback_due(call, now)
            elif call.callback == "due" and call.callback_due_until is not None \
                    and now >= call.callback_due_until:
                self._event(call, SYSTEM, "callback.expired")
                await self._end(call, EndReason.ABANDONED, SYSTEM, cause="callback_expired")

    async def active_call_of(self, customer_id: str) -> Call | None:
        call_id = self._active_by_customer.get(customer_id)
        return await self.store.get_call(call_id) if call_id else None

    # ---------------------------------------------------------------- agent side
    async def agent_online(self, agent_id: int, username: str, skills: frozenset[str],
                           display_name: str = "", preferred: frozenset[str] = frozenset()
                           ) -> Agent:
        async with self._locked():
            agent = await self.store.get_agent(agent_id)
            if agent is None:
                agent = Agent(agent_id, username, skills, display_name, state_since=self.clock(),
                              preferred=preferred & skills)
                await self.store.put_agent(agent)
            elif agent.state is AgentState.OFFLINE:  # back: skills may have changed meanwhile
                agent.skills, agent.preferred = skills, preferred & skills
                agent.lead = False  # a former lead's record, if the role changed
                agent.display_name = display_name or agent.display_name
                self._staffing_cache = None
            if agent.state is AgentState.OFFLINE:
                self._set_agent(agent, AgentState.AWAY, "signed_in")
            return agent

    async def agent_offline(self, agent_id: int) -> None:
        async with self._locked():
            agent = await self.store.get_agent(agent_id)
            if agent is None:
                return
            call = await self.store.get_call(agent.call_id) if agent.call_id else None
            agent.call_id = None
            self._set_agent(agent, AgentState.OFFLINE, "disconnected", call)
            if call is not None and call.state in (CallState.OFFERED, CallState.IN_CALL) \
                    and call.agent_id == agent_id:
                await self._requeue(call, agent, "agent_disconnected")

    async def lead_online(self, lead_id: int, username: str, display_name: str = "") -> Agent:
        return await self.leads.lead_online(lead_id, username, display_name)

    async def take_over(self, lead_id: int, call_id: str) -> Call:
        return await self.leads.take_over(lead_id, call_id)

    async def set_agent_status(self, agent_id: int, status: AgentState) -> Agent:
        if status not in (AgentState.AVAILABLE, AgentState.AWAY):
            raise InvalidState("agents set themselves available or away", code="invalid_status")
        async with self._locked():
            agent = await self._agent(agent_id)
            if agent.state in (AgentState.OFFERED, AgentState.BUSY):
                raise InvalidState(f"cannot change status while {agent.state.value}")
            if agent.state is AgentState.WRAP_UP:
                raise InvalidState("finish the wrap-up first", code="wrap_up_pending")
            if status is AgentState.AVAILABLE and agent.lead:
                raise InvalidState("a team lead's console takes over calls, it is not routed "
                                   "any", code="lead_not_routed")
            if status is AgentState.AVAILABLE:
                agent.missed_offers = 0
            self._set_agent(agent, status, "agent")
            return agent

    async def accept(self, agent_id: int, call_id: str) -> Call:
        async with self._locked():
            agent = await self._agent(agent_id)
            call = await self._call(call_id)
            if call.state is not CallState.OFFERED or call.agent_id != agent_id:
                raise InvalidState("this call is not offered to you", code="offer_expired")
            call.transition(CallState.IN_CALL)
            call.offer_expires_at = None
            call.answered_at = self.clock()
            call.dropped_by = call.dropped_at = None
            agent.missed_offers = 0
            self._set_agent(agent, AgentState.BUSY, "accepted", call, agent.actor)
            self._event(call, agent.actor, "call.answered", agent=agent.username)
            self.journal.call_updated(call_id, state=call.state.value, answered_at=self.wall(),
                                      agent_id=agent_id)
            self._notify(self.listener.call_accepted(call, agent))
            return call

    async def decline(self, agent_id: int, call_id: str) -> None:
        async with self._locked():
            agent = await self._agent(agent_id)
            call = await self._call(call_id)
            if call.state is not CallState.OFFERED or call.agent_id != agent_id:
                raise InvalidState("this call is not offered to you", code="offer_expired")
            self._event(call, agent.actor, "offer.declined", agent=agent.username)
            await self._return_offer(call, agent, "declined")

    async def agent_hangup(self, agent_id: int, call_id: str) -> None:
        async with self._locked():
            agent = await self._agent(agent_id)
            call = await self._call(call_id)
            if call.agent_id != agent_id or call.state is not CallState.IN_CALL:
                raise Forbidden("not your call")
            await self._end(call, EndReason.COMPLETED, agent.actor)

    async def end_call(self, call_id: str, reason: EndReason, actor: str = SYSTEM,
                       **payload: Any) -> None:
        """End a call from outside the queue (media failure, hub shutdown)."""
        async with self._locked():
            call = await self.store.get_call(call_id)
            if call is not None and call.state is not CallState.ENDED:
                await self._end(call, reason, actor, **payload)

    async def finish_wrap_up(self, agent_id: int, call_id: str, outcome: str, notes: str,
                             then: AgentState = AgentState.AVAILABLE,
                             details: dict[str, Any] | None = None) -> None:
        """``details`` (the business's view of the wrap-up) go into the timeline event."""
        async with self._locked():
            agent = await self._agent(agent_id)
            late = agent.state is not AgentState.WRAP_UP \
                and self._last_call.get(agent_id) == call_id
            if not late and (agent.state is not AgentState.WRAP_UP or agent.call_id != call_id):
                raise InvalidState("no wrap-up pending for this call", code="no_wrap_up")
            if late:  # the wrap-up timer ran out first: keep the outcome, change no state
                self._last_call.pop(agent_id, None)
                self.journal.event(call_id, agent.actor, "call.wrapped_up",
                                   {"outcome": outcome, "notes": notes, "late": True,
                                    **(details or {})}, at=self.wall())
                self.journal.call_updated(call_id, outcome=outcome, notes=notes)
                return
            self.journal.event(call_id, agent.actor, "call.wrapped_up",
                               {"outcome": outcome, "notes": notes, **(details or {})},
                               at=self.wall())
            self.journal.call_updated(call_id, outcome=outcome, notes=notes)
            agent.call_id = None
            self._wrap.pop(agent_id, None)
            self._set_agent(agent, AgentState.AWAY if agent.lead else then, "wrap_up_done")

    # ---------------------------------------------------------------- transitions
    async def _withdraw(self, call: Call, reason: str) -> None:
        """Take an offer back from its agent (not the agent's fault) and re-queue."""
        agent = await self.store.get_agent(call.agent_id) if call.agent_id else None
        call.transition(CallState.QUEUED)
        call.agent_id = None
        call.offer_expires_at = None
        self._event(call, SYSTEM, "offer.withdrawn", reason=reason)
        if agent is not None:
            agent.call_id = None
            self._notify(self.listener.offer_withdrawn(call, agent, reason))
            self._set_agent(agent, AgentState.AVAILABLE, reason, call)

    async def _return_offer(self, call: Call, agent: Agent, reason: str) -> None:
        call.transition(CallState.QUEUED)
        call.agent_id = None
        call.offer_expires_at = None
        call.excluded[agent.agent_id] = self.clock() + self.config.exclusion_s
        self._wc.pop(call.call_id, None)
        agent.call_id = None
        self._notify(self.listener.offer_withdrawn(call, agent, reason))
        if reason == "missed":
            agent.missed_offers += 1
            if agent.missed_offers >= self.config.max_missed_offers:
                self._set_agent(agent, AgentState.AWAY, "missed_offers", call)
            else:
                self._set_agent(agent, AgentState.AVAILABLE, reason, call)
        else:
            self._set_agent(agent, AgentState.AVAILABLE, reason, call)
        self._event(call, SYSTEM, "call.queued", requeued=True, reason=reason)
        self._kick.set()

    async def _requeue(self, call: Call, agent: Agent, reason: str) -> None:
        """Agent lost: the call goes back to its original place in the queue."""
        was_in_call = call.state is CallState.IN_CALL
        call.transition(CallState.QUEUED)
        call.agent_id = None
        call.offer_expires_at = None
        call.answered_at = None
        if was_in_call:  # a team lead may take it over while it waits (queue.takeover)
            call.dropped_by, call.dropped_at = agent.username, self.clock()
        self._event(call, SYSTEM, "call.requeued", reason=reason, agent=agent.username,
                    was_in_call=was_in_call)
        self.journal.call_updated(call.call_id, state=call.state.value)
        position, eta = await self.position_of(call)
        self._notify(self.listener.call_queued(call, position, eta, True))
        self._last_position[call.call_id] = (position, int(eta or -1))
        self._kick.set()

    async def _end(self, call: Call, reason: EndReason, actor: str, **payload: Any) -> None:
        agent = await self.store.get_agent(call.agent_id) if call.agent_id else None
        was = call.state
        call.transition(CallState.ENDED)
        if self._active_by_customer.get(call.customer_id) == call.call_id:
            del self._active_by_customer[call.customer_id]
        self._grace.pop(call.call_id, None)
        self._last_position.pop(call.call_id, None)
        self._position_sent.pop(call.call_id, None)
        self._wc.pop(call.call_id, None)
        self._event(call, actor, "call.ended", reason=reason.value, **payload)
        self.journal.call_updated(call.call_id, state=call.state.value, ended_at=self.wall(),
                                  end_reason=reason.value)
        if agent is not None and agent.call_id == call.call_id:
            if was is CallState.IN_CALL:
                if call.answered_at is not None:
                    self._answered[agent.agent_id] = (call.skill, call.answered_at)
                self._wrap[agent.agent_id] = self.clock() + self.config.wrap_up_s
                self._set_agent(agent, AgentState.WRAP_UP, "call_ended", call)
            else:  # offered: the offer disappears
                agent.call_id = None
                self._notify(self.listener.offer_withdrawn(call, agent, reason.value))
                self._set_agent(agent, AgentState.AVAILABLE, "call_ended", call)
        # an offered agent had no call: it was told by ``call:offer_withdrawn`` and has no
        # wrap-up, so ``call:ended`` goes to the agent only when the call was answered
        self._notify(self.listener.call_ended(call, reason.value, actor,
                                              agent if was is not CallState.OFFERED else None))
        await self.store.remove_call(call.call_id)

    async def _offer(self, call: Call, agent: Agent, pool: str | None = None) -> None:
        service, count = self._streak.get(agent.agent_id, ("", 0))
        self._streak[agent.agent_id] = (call.service, count + 1 if service == call.service
                                        else 1)
        call.transition(CallState.OFFERED)
        call.agent_id = agent.agent_id
        call.offer_expires_at = self.clock() + self.config.offer_timeout_s
        agent.call_id = call.call_id
        self._set_agent(agent, AgentState.OFFERED, "offer", call)
        self._event(call, SYSTEM, "call.offered", agent=agent.username,
                    timeout_s=self.config.offer_timeout_s, **({"pool": pool} if pool else {}))
        self.journal.call_updated(call.call_id, state=call.state.value, offered_at=self.wall(),
                                  agent_id=agent.agent_id)
        self._notify(self.listener.call_offered(call, agent, self.config.offer_timeout_s))

    # ---------------------------------------------------------------- loops
    async def route_once(self) -> int:
        async with self._locked():
            now = self.clock()
            idle = [routing.IdleAgent(a.agent_id, a.skills, a.idle_since, a.preferred,
                                      self._streak.get(a.agent_id, ("", 0)))
                    for a in await self.store.agents() if a.state is AgentState.AVAILABLE]
            if not idle:
                return 0
            skills = frozenset().union(*(a.skills for a in idle))
            waiting = [self._waiting(c, now) for c in await self.store.waiting_calls()
                       if not c.held and self._reachable(c, skills)]
            if not waiting:
                return 0
            assignments = routing.route(waiting, idle, now, self.config.aging_s, self.rules)
            for a in assignments:
                call = await self.store.get_call(a.call_id)
                agent = await self.store.get_agent(a.agent_id)
                if call is not None and agent is not None:
                    await self._offer(call, agent, TIERS[a.tier])
            return len(assignments)

    def _reachable(self, call: Call, skills: frozenset[str]) -> bool:
        """Whether some of these skills could ever take the call (its own skill, or a
        fallback or overflow skill of its service's rules)."""
        if call.skill in skills:
            return True
        r = self.rules(call.service)[0]
        return bool((r.fallback_skills | r.overflow_skills) & skills)

    def _widens(self, call: Call, now: float) -> bool:
        """Whether a waiting call has reached a widened pool or an overflow group: routing
        must look again, since waiting alone changes who may take it."""
        return any(routing.opened(*self.rules(call.service), now - call.enqueued_at))

    async def _deliver_loop(self) -> None:
        """Deliver notifications: offers, answers and ends before position updates.

        Everything waiting is sent as one concurrent batch: python-socketio's ``emit``
        waits for a task per recipient, so sending one at a time would cost an event-loop
        turn per notification. The batch's tasks start in the order the notifications were
        made, and each reaches ``emit`` without waiting, so a recipient still gets them in
        order.
        """
        while True:
            if self._outbox.empty() and not self._bulk_outbox:
                self._mail.clear()
                await self._mail.wait()
            batch: list[Awaitable[None]] = []
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            if not batch:
                while self._bulk_outbox and len(batch) < BULK_BATCH:
                    batch.append(self._bulk_outbox.popleft())
            for result in await asyncio.gather(*batch, return_exceptions=True):
                if isinstance(result, Exception):
                    log.error("queue listener failed", exc_info=result)

    async def _route_loop(self) -> None:
        while True:
            await self._kick.wait()
            # Let a burst of requests and freed agents gather: one pass routes them all.
            await asyncio.sleep(self.config.route_coalesce_s)
            self._kick.clear()
            try:
                await self.route_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("routing failed")

    async def tick(self) -> None:
        """Expire offers, grace periods, wrap-ups and waits; push positions and stats."""
        async with self._locked():
            now = self.clock()
            for call in await self.store.calls():
                if call.state is CallState.OFFERED and call.offer_expires_at is not None \
                        and now >= call.offer_expires_at:
                    agent = await self.store.get_agent(call.agent_id) if call.agent_id else None
                    self._event(call, SYSTEM, "offer.timeout",
                                agent=agent.username if agent else None)
                    if agent is not None:
                        await self._return_offer(call, agent, "missed")
                elif call.call_id in self._grace and now >= self._grace[call.call_id]:
                    reason = EndReason.FAILED if call.state is CallState.IN_CALL \
                        else EndReason.ABANDONED
                    await self._end(call, reason, SYSTEM, cause="grace_expired")
                elif call.state is CallState.QUEUED and now - call.enqueued_at > \
                        self.config.max_wait_s:
                    await self._end(call, EndReason.TIMED_OUT, SYSTEM)
                if call.excluded and call.state is CallState.QUEUED:
                    expired = [a for a, until in call.excluded.items() if until <= now]
                    for a in expired:
                        del call.excluded[a]
                    if expired:
                        self._wc.pop(call.call_id, None)
                        self._kick.set()
            for agent_id, deadline in list(self._wrap.items()):
                if now >= deadline:
                    agent = await self.store.get_agent(agent_id)
                    if agent is not None and agent.state is AgentState.WRAP_UP:
                        if agent.call_id:
                            self.journal.event(agent.call_id, SYSTEM, "wrap_up.timeout",
                                               {"agent": agent.username}, at=self.wall())
                            self._last_call[agent.agent_id] = agent.call_id
                        agent.call_id = None
                        self._set_agent(agent, AgentState.AWAY if agent.lead
                                        else AgentState.AVAILABLE, "wrap_up_timeout")
                    self._wrap.pop(agent_id, None)
            if now >= self._next_positions:
                self._next_positions = now + self.config.position_interval_s
                await self._callbacks(now)
                if any(not c.held and self._widens(c, now)
                       for c in await self.store.waiting_calls()):
                    self._kick.set()  # a wider pool may have a free agent now
                await self._push_positions(now)

    async def _push_positions(self, now: float) -> None:
        queued = await self.store.waiting_calls()
        waiting = [self._waiting(c, now) for c in queued]
        pos = routing.positions(waiting, now, self.config.aging_s)
        staffing = await self._staffing()
        handle: dict[str, list[float]] = {}
        for call in queued:
            p = pos.get(call.call_id, 0)
            eta = await self._eta(call.skill, p, staffing, handle)
            key = (p, int(eta or -1))
            if call.held or self._last_position.get(call.call_id) == key:
                continue
            # The first ten hear of every change; callers further back every few seconds.
            every = self.config.position_interval_s * (1 if p <= 10 else 5)
            if now - self._position_sent.get(call.call_id, -math.inf) < every - 1e-6:
                continue
            self._position_sent[call.call_id] = now
            self._last_position[call.call_id] = key
            self._bulk.append(self.listener.position_changed(call, p, eta))
        stats = self.stats_from(queued, now)
        if stats != self._last_stats:
            self._last_stats = stats
            self._bulk.append(self.listener.queue_stats(stats))

    @staticmethod
    def stats_from(queued: list[Call], now: float) -> list[dict[str, Any]]:
        by: dict[str, list[Call]] = {}
        for c in queued:
            by.setdefault(c.service, []).append(c)
        return [{"service": s, "waiting": len(cs),
                 "oldest_wait_s": int(now - min(c.enqueued_at for c in cs))}
                for s, cs in sorted(by.items())]

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue timer failed")

    # ---------------------------------------------------------------- views
    async def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        queued = await self.store.waiting_calls()
        return {"services": self.stats_from(queued, now),
                "agents": [{"username": a.username, "state": a.state.value,
                            "in_state_s": round(now - a.state_since, 1)}
                           for a in await self.store.agents()]}
