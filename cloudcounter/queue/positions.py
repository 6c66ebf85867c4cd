"""Where each waiting customer stands: positions, wait estimates, staffing and the queue's
statistics, pushed every ``position_interval_s`` (:meth:`Positions.push`).

Reads the store and keeps caches; changes no call or agent. The dispatcher tells it what
changed (:meth:`Positions.forget`, :meth:`Positions.changed`, :meth:`Positions.resend`,
:meth:`Positions.staffing_changed`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from cloudcounter.queue import routing
from cloudcounter.queue.model import AgentState, Call, CallState
from cloudcounter.queue.notices import Outbox
from cloudcounter.queue.store import QueueStore

if TYPE_CHECKING:
    from cloudcounter.queue.dispatcher import QueueConfig

NO_AGENTS: frozenset[int] = frozenset()
AWAY = (AgentState.OFFLINE, AgentState.AWAY)


class Positions:
    def __init__(self, store: QueueStore, config: "QueueConfig", clock: Callable[[], float],
                 outbox: Outbox) -> None:
        self.store, self.config, self.clock, self.outbox = store, config, clock, outbox
        self._wc: dict[str, routing.WaitingCall] = {}
        self._last: dict[str, tuple[int, int]] = {}  # call id -> (position, eta) last told
        self._sent: dict[str, float] = {}  # call id -> when it was last told
        self._last_stats: list[dict[str, Any]] | None = None
        self._next = 0.0
        self._staffing: dict[str, int] | None = None
        self._staffed: dict[frozenset[str], int] = {}

    # ---------------------------------------------------------------- what changed
    def forget(self, call_id: str) -> None:
        """The call ended."""
        self._last.pop(call_id, None)
        self._sent.pop(call_id, None)
        self._wc.pop(call_id, None)

    def changed(self, call_id: str) -> None:
        """The call's routing view changed (priority, exclusions)."""
        self._wc.pop(call_id, None)

    def resend(self, call_id: str) -> None:
        """Tell the customer the position again at the next push, changed or not."""
        self._last.pop(call_id, None)

    def told(self, call_id: str, position: int, eta: float | None) -> None:
        """The customer was just told this position (with the request or the re-queue)."""
        self._last[call_id] = (position, int(eta or -1))

    def staffing_changed(self) -> None:
        self._staffing = None

    # ---------------------------------------------------------------- views
    def waiting(self, call: Call, now: float) -> routing.WaitingCall:
        """The routing view of a call, cached until its exclusions change (the timer removes
        expired exclusions, so every listed exclusion is active)."""
        wc = self._wc.get(call.call_id)
        if wc is None:
            wc = routing.WaitingCall(call.call_id, call.skill, call.priority, call.enqueued_at,
                                     call.seq, frozenset(call.excluded) or NO_AGENTS,
                                     call.customer_risk, call.service)
            self._wc[call.call_id] = wc
        return wc

    async def position_of(self, call: Call) -> tuple[int, float | None]:
        """The call's position among calls for the same skill, and its estimated wait."""
        now = self.clock()
        me = self.waiting(call, now)
        others = [self.waiting(c, now) for c in await self.store.waiting_calls()
                  if c.skill == call.skill and c.call_id != call.call_id]
        pos = routing.position_of(me, others, now, self.config.aging_s) \
            if call.state is CallState.QUEUED else 0
        staffing = await self.staffing()
        if call.customer_risk == routing.HIGH_RISK:  # only senior agents serve it
            staffing = {call.skill: await self.staffed(
                routing.needed_skills(call.skill, call.customer_risk))}
        return pos, await self._eta(call.skill, pos, staffing)

    async def staffed(self, needed: frozenset[str]) -> int:
        """Agents signed in and not away who have all of ``needed`` (cached like
        :meth:`staffing`)."""
        await self.staffing()
        if needed not in self._staffed:
            self._staffed[needed] = routing.staffed(
                (a.skills for a in await self.store.agents() if a.state not in AWAY), needed)
        return self._staffed[needed]

    async def staffing(self) -> dict[str, int]:
        """Agents signed in and not away, per skill (cached until an agent changes state)."""
        if self._staffing is not None:
            return self._staffing
        self._staffed = {}
        out: dict[str, int] = {}
        for a in await self.store.agents():
            if a.state not in AWAY:
                for skill in a.skills:
                    out[skill] = out.get(skill, 0) + 1
        self._staffing = out
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

    # ---------------------------------------------------------------- pushing
    def due(self, now: float) -> bool:
        """Whether the periodic push is due (and, if so, the next one is scheduled)."""
        if now < self._next:
            return False
        self._next = now + self.config.position_interval_s
        return True

    async def push(self, now: float) -> None:
        """Bulk notices: each waiting customer whose position or estimate changed (the
        first ten at every push, those further back every few seconds), and the queue's
        statistics when they changed."""
        queued = await self.store.waiting_calls()
        waiting = [self.waiting(c, now) for c in queued]
        pos = routing.positions(waiting, now, self.config.aging_s)
        staffing = await self.staffing()
        handle: dict[str, list[float]] = {}
        for call in queued:
            p = pos.get(call.call_id, 0)
            eta = await self._eta(call.skill, p, staffing, handle)
            key = (p, int(eta or -1))
            if call.held or self._last.get(call.call_id) == key:
                continue
            every = self.config.position_interval_s * (1 if p <= 10 else 5)
            if now - self._sent.get(call.call_id, -math.inf) < every - 1e-6:
                continue
            self._sent[call.call_id] = now
            self._last[call.call_id] = key
            self.outbox.add_bulk("position_changed", call, p, eta)
        stats = stats_from(queued, now)
        if stats != self._last_stats:
            self._last_stats = stats
            self.outbox.add_bulk("queue_stats", stats)


def stats_from(queued: list[Call], now: float) -> list[dict[str, Any]]:
    """Per service: calls waiting and the longest wait."""
    by: dict[str, list[Call]] = {}
    for c in queued:
        by.setdefault(c.service, []).append(c)
    return [{"service": s, "waiting": len(cs),
             "oldest_wait_s": int(now - min(c.enqueued_at for c in cs))}
            for s, cs in sorted(by.items())]
