"""The embedded backend: the pure rules applied to one in-memory state under a lock."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from cloudcounter.queue import rules as r
from cloudcounter.queue.model import AgentState, EndReason
from cloudcounter.queue.rules import Deadline, Outcome, QueueState, RulesConfig
from cloudcounter.queue.transitions import Events


class MemoryTransitions:
    def __init__(self, config: RulesConfig = RulesConfig(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._state = QueueState()
        self._lock = asyncio.Lock()

    async def _apply(self, rule: Callable[..., Outcome], *args: Any, **kwargs: Any) -> Events:
        async with self._lock:
            out = rule(self._state, *args, **kwargs)  # raises: nothing changed
            self._state = out.state
            return out.events

    async def enqueue(self, *, call_id: str, customer_id: str, service: str, skill: str,
                      priority: int = 0, customer_risk: str = "low") -> Events:
        return await self._apply(r.enqueue, self.config, self.clock(), call_id=call_id,
                                 customer_id=customer_id, service=service, skill=skill,
                                 priority=priority, customer_risk=customer_risk)

    async def offer(self, call_id: str, agent_id: int, pool: str | None = None) -> Events:
        return await self._apply(r.offer, self.config, self.clock(), call_id, agent_id, pool)

    async def accept(self, agent_id: int, call_id: str) -> Events:
        return await self._apply(r.accept, self.config, self.clock(), agent_id, call_id)

    async def decline(self, agent_id: int, call_id: str) -> Events:
        return await self._apply(r.decline, self.config, self.clock(), agent_id, call_id)

    async def expire_offer(self, call_id: str) -> Events:
        return await self._apply(r.expire_offer, self.config, self.clock(), call_id)

    async def requeue(self, call_id: str, reason: str) -> Events:
        return await self._apply(r.requeue, self.clock(), call_id, reason)

    async def end(self, call_id: str, reason: EndReason, actor: str = "system", *,
                  by_agent: int | None = None, by_customer: str | None = None) -> Events:
        return await self._apply(r.end, self.config, self.clock(), call_id, reason, actor,
                                 by_agent=by_agent, by_customer=by_customer)

    async def agent_online(self, agent_id: int, username: str,
                           skills: frozenset[str] = frozenset(), *, lead: bool = False,
                           preferred: frozenset[str] = frozenset()) -> Events:
        return await self._apply(r.agent_online, self.clock(), agent_id, username, skills,
                                 lead=lead, preferred=preferred)

    async def agent_offline(self, agent_id: int) -> Events:
        return await self._apply(r.agent_offline, self.clock(), agent_id)

    async def set_agent_status(self, agent_id: int, status: AgentState) -> Events:
        return await self._apply(r.set_agent_status, self.clock(), agent_id, status)

    async def finish_wrap_up(self, agent_id: int, call_id: str,
                             then: AgentState = AgentState.AVAILABLE) -> Events:
        return await self._apply(r.finish_wrap_up, self.clock(), agent_id, call_id, then)

    async def expire_wrap_up(self, agent_id: int) -> Events:
        return await self._apply(r.expire_wrap_up, self.clock(), agent_id)

    async def grace_start(self, call_id: str) -> Events:
        return await self._apply(r.grace_start, self.config, self.clock(), call_id)

    async def grace_end(self, call_id: str) -> Events:
        return await self._apply(r.grace_end, self.clock(), call_id, self.config)

    async def expire_grace(self, call_id: str) -> Events:
        return await self._apply(r.expire_grace, self.config, self.clock(), call_id)

    async def expire_exclusions(self, call_id: str) -> Events:
        return await self._apply(r.expire_exclusions, self.clock(), call_id)

    async def request_callback(self, call_id: str, customer_id: str) -> Events:
        return await self._apply(r.request_callback, self.clock(), call_id, customer_id)

    async def callback_due(self, call_id: str) -> Events:
        return await self._apply(r.callback_due, self.config, self.clock(), call_id)

    async def expire_callback(self, call_id: str) -> Events:
        return await self._apply(r.expire_callback, self.config, self.clock(), call_id)

    async def expire_wait(self, call_id: str) -> Events:
        return await self._apply(r.expire_wait, self.config, self.clock(), call_id)

    async def take_over(self, lead_id: int, call_id: str) -> Events:
        return await self._apply(r.take_over, self.clock(), lead_id, call_id)

    async def due_deadlines(self) -> list[Deadline]:
        async with self._lock:
            return r.due(self._state, self.clock(), self.config)

    async def snapshot(self) -> QueueState:
        async with self._lock:
            return self._state

    async def close(self) -> None:
        return None
