"""The call queue of one hub node: requests, offers with timeouts, accept/decline,
re-queueing, grace periods, wrap-up. Owns two tasks (routing and timers) and the outbox's
delivery task, started by :meth:`start` and cancelled by :meth:`stop`.

Split by responsibility: this module holds the transitions, the routing pass and the timers;
:mod:`cloudcounter.queue.notices` delivers notifications (frozen snapshots, after the lock is
released, off the routing path); :mod:`cloudcounter.queue.positions` computes positions,
estimates and statistics; :mod:`cloudcounter.queue.callbacks` and
:mod:`cloudcounter.queue.takeover` hold the callback and team-lead transitions. Every
transition goes to the :class:`CallJournal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from cloudcounter.errors import Conflict, Forbidden, InvalidState, NotFound, RateLimited
from cloudcounter.queue import routing
from cloudcounter.queue.callbacks import Callbacks
from cloudcounter.queue.model import Agent, AgentState, Call, CallState, EndReason
from cloudcounter.queue.notices import Outbox
from cloudcounter.queue.ports import CallJournal, QueueListener
from cloudcounter.queue.positions import Positions, stats_from
from cloudcounter.queue.store import QueueStore
from cloudcounter.queue.takeover import LeadTakeover

log = logging.getLogger(__name__)
SYSTEM = "system"
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
        # The queue's state is the store's calls and agents, deadlines included (a call's
        # offer_expires_at and grace_until, an agent's wrap_up_until); what is kept here is
        # only caches (positions) and what a locked section hands on when it ends.
        self._handle_times: list[tuple[str, float]] = []
        self.outbox = Outbox(listener)
        self.positions = Positions(store, config, clock, self.outbox)
        self.callbacks = Callbacks(self)  # customers leave the queue keeping their place
        self.leads = LeadTakeover(self)  # team leads take over calls whose agent dropped

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._route_loop(), name="queue-route"),
                       asyncio.create_task(self._timer_loop(), name="queue-timers")]
        self.outbox.start()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        await self.outbox.stop()  # delivers what was decided before the stop

    # ---------------------------------------------------------------- helpers
    async def _flush(self) -> None:
        """After a locked section: handle times to the store, notices to the outbox."""
        handle, self._handle_times = self._handle_times, []
        for skill, seconds in handle:
            await self.store.add_handle_time(skill, seconds)
        await self.outbox.flush()

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
        self.positions.staffing_changed()
        if previous is AgentState.WRAP_UP:
            agent.wrap_up_until = None
            answered, agent.handled = agent.handled, None
            if answered is not None:  # handle time: answer to ready again
                self._handle_times.append((answered[0], now - answered[1]))
        if call is not None:
            self._event(call, actor, "agent.state", agent=agent.username, state=target.value,
                        previous=previous.value, reason=reason)
        self.outbox.add("agent_state_changed", agent, previous, reason)
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
        return await self.positions.position_of(call)

    stats_from = staticmethod(stats_from)

    # ---------------------------------------------------------------- customer side
    async def request_call(self, *, customer_id: str, service: str, skill: str,
                           priority: int = 0, customer_risk: str = "low"
                           ) -> tuple[Call, int, float | None]:
        async with self._locked():
            if await self.store.customer_call(customer_id) is not None:
                raise Conflict("this customer already has a call", code="already_in_call")
            calls = await self.store.calls()
            if sum(1 for c in calls if c.state is CallState.QUEUED) >= self.config.max_queue_length:
                raise RateLimited("the queue is full, try again later", code="queue_full")
            seq = await self.store.next_seq()
            call = Call(call_id="call_" + secrets.token_hex(8), customer_id=customer_id,
                        service=service, skill=skill, priority=priority,
                        enqueued_at=self.clock(), seq=seq, customer_risk=customer_risk)
            await self.store.put_call(call)
            self.journal.call_created(call, self.wall())
            self._event(call, f"customer:{customer_id}", "call.requested", service=service,
                        priority=priority, **({"needs": sorted(routing.needed_skills(
                            skill, customer_risk))} if customer_risk == routing.HIGH_RISK
                            else {}))
            self._event(call, SYSTEM, "call.queued", priority=priority)
            self.journal.call_updated(call.call_id, state=call.state.value, queued_at=self.wall())
            position, eta = await self.positions.position_of(call)
            self.positions.told(call.call_id, position, eta)
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
            call.grace_until = self.clock() + self.config.customer_grace_s
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
                self.callbacks.taken(call)
                return call
            call.grace_until = None
            call.held = False
            self._event(call, f"customer:{call.customer_id}", "customer.reconnected")
            self.positions.resend(call_id)  # push the position again
            self._kick.set()
            return call

    # ---------------------------------------------------------------- callbacks
    async def request_callback(self, call_id: str, customer_id: str
                               ) -> tuple[int, float | None]:
        """The waiting customer leaves the queue keeping the place (queue.callbacks)."""
        return await self.callbacks.request(call_id, customer_id)

    async def active_call_of(self, customer_id: str) -> Call | None:
        return await self.store.customer_call(customer_id)

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
                self.positions.staffing_changed()
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
            self.outbox.add("call_accepted", call, agent)
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
                and agent.last_call_id == call_id
            if not late and (agent.state is not AgentState.WRAP_UP or agent.call_id != call_id):
                raise InvalidState("no wrap-up pending for this call", code="no_wrap_up")
            if late:  # the wrap-up timer ran out first: keep the outcome, change no state
                agent.last_call_id = None
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
            self.outbox.add("offer_withdrawn", call, agent, reason)
            self._set_agent(agent, AgentState.AVAILABLE, reason, call)

    async def _return_offer(self, call: Call, agent: Agent, reason: str) -> None:
        call.transition(CallState.QUEUED)
        call.agent_id = None
        call.offer_expires_at = None
        call.excluded[agent.agent_id] = self.clock() + self.config.exclusion_s
        self.positions.changed(call.call_id)
        agent.call_id = None
        self.outbox.add("offer_withdrawn", call, agent, reason)
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
        position, eta = await self.positions.position_of(call)
        self.outbox.add("call_queued", call, position, eta, True)
        self.positions.told(call.call_id, position, eta)
        self._kick.set()

    async def _end(self, call: Call, reason: EndReason, actor: str, **payload: Any) -> None:
        agent = await self.store.get_agent(call.agent_id) if call.agent_id else None
        was = call.state
        call.transition(CallState.ENDED)
        call.grace_until = None
        self.positions.forget(call.call_id)
        self._event(call, actor, "call.ended", reason=reason.value, **payload)
        self.journal.call_updated(call.call_id, state=call.state.value, ended_at=self.wall(),
                                  end_reason=reason.value)
        if agent is not None and agent.call_id == call.call_id:
            if was is CallState.IN_CALL:
                if call.answered_at is not None:
                    agent.handled = (call.skill, call.answered_at)
                agent.wrap_up_until = self.clock() + self.config.wrap_up_s
                self._set_agent(agent, AgentState.WRAP_UP, "call_ended", call)
            else:  # offered: the offer disappears
                agent.call_id = None
                self.outbox.add("offer_withdrawn", call, agent, reason.value)
                self._set_agent(agent, AgentState.AVAILABLE, "call_ended", call)
        # an offered agent had no call: it was told by ``call:offer_withdrawn`` and has no
        # wrap-up, so ``call:ended`` goes to the agent only when the call was answered
        self.outbox.add("call_ended", call, reason.value, actor,
                        agent if was is not CallState.OFFERED else None)
        await self.store.remove_call(call.call_id)

    async def _offer(self, call: Call, agent: Agent, pool: str | None = None) -> None:
        service, count = agent.streak
        agent.streak = (call.service, count + 1 if service == call.service else 1)
        call.transition(CallState.OFFERED)
        call.agent_id = agent.agent_id
        call.offer_expires_at = self.clock() + self.config.offer_timeout_s
        agent.call_id = call.call_id
        self._set_agent(agent, AgentState.OFFERED, "offer", call)
        self._event(call, SYSTEM, "call.offered", agent=agent.username,
                    timeout_s=self.config.offer_timeout_s, **({"pool": pool} if pool else {}))
        self.journal.call_updated(call.call_id, state=call.state.value, offered_at=self.wall(),
                                  agent_id=agent.agent_id)
        self.outbox.add("call_offered", call, agent, self.config.offer_timeout_s)

    # ---------------------------------------------------------------- loops
    async def route_once(self) -> int:
        async with self._locked():
            now = self.clock()
            idle = [routing.IdleAgent(a.agent_id, a.skills, a.idle_since, a.preferred,
                                      a.streak)
                    for a in await self.store.agents() if a.state is AgentState.AVAILABLE]
            if not idle:
                return 0
            skills = frozenset().union(*(a.skills for a in idle))
            waiting = [self.positions.waiting(c, now) for c in await self.store.waiting_calls()
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
                elif call.grace_until is not None and now >= call.grace_until:
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
                        self.positions.changed(call.call_id)
                        self._kick.set()
            for agent in await self.store.agents():
                if agent.state is AgentState.WRAP_UP and agent.wrap_up_until is not None \
                        and now >= agent.wrap_up_until:
                    if agent.call_id:
                        self.journal.event(agent.call_id, SYSTEM, "wrap_up.timeout",
                                           {"agent": agent.username}, at=self.wall())
                        agent.last_call_id = agent.call_id
                    agent.call_id = None
                    self._set_agent(agent, AgentState.AWAY if agent.lead
                                    else AgentState.AVAILABLE, "wrap_up_timeout")
            if self.positions.due(now):
                await self.callbacks.tick(now)
                if any(not c.held and self._widens(c, now)
                       for c in await self.store.waiting_calls()):
                    self._kick.set()  # a wider pool may have a free agent now
                await self.positions.push(now)

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
