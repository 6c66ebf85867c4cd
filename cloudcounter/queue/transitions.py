"""The queue's store as atomic transitions (issue 11).

:class:`QueueTransitions` has one async method per transition of :mod:`cloudcounter.queue.rules`;
each is atomic (all of it is stored or none) and returns the frozen events it produced. A
refused transition raises the rules' error (with its code) and changes nothing. The time is
the store's: the memory backend's clock, the PostgreSQL backend's ``now()``.

Backends: :class:`cloudcounter.queue.stores.memory.MemoryTransitions` (embedded, one process)
and :class:`cloudcounter.queue.stores.postgres.PostgresTransitions` (several nodes).
The dispatcher does not use this yet (docs/scaling.md).
"""

from __future__ import annotations

from typing import Protocol

from cloudcounter.queue.model import AgentState, EndReason
from cloudcounter.queue.rules import Deadline, Event, QueueState

Events = tuple[Event, ...]


class QueueTransitions(Protocol):
    async def enqueue(self, *, call_id: str, customer_id: str, service: str, skill: str,
                      priority: int = 0, customer_risk: str = "low") -> Events: ...

    async def offer(self, call_id: str, agent_id: int, pool: str | None = None
                    ) -> Events: ...

    async def accept(self, agent_id: int, call_id: str) -> Events: ...

    async def decline(self, agent_id: int, call_id: str) -> Events: ...

    async def expire_offer(self, call_id: str) -> Events: ...

    async def requeue(self, call_id: str, reason: str) -> Events: ...

    async def end(self, call_id: str, reason: EndReason, actor: str = "system", *,
                  by_agent: int | None = None, by_customer: str | None = None) -> Events: ...

    async def agent_online(self, agent_id: int, username: str,
                           skills: frozenset[str] = frozenset(), *, lead: bool = False,
                           preferred: frozenset[str] = frozenset()) -> Events: ...

    async def agent_offline(self, agent_id: int) -> Events: ...

    async def set_agent_status(self, agent_id: int, status: AgentState) -> Events: ...

    async def finish_wrap_up(self, agent_id: int, call_id: str,
                             then: AgentState = AgentState.AVAILABLE) -> Events: ...

    async def expire_wrap_up(self, agent_id: int) -> Events: ...

    async def grace_start(self, call_id: str) -> Events: ...

    async def grace_end(self, call_id: str) -> Events: ...

    async def expire_grace(self, call_id: str) -> Events: ...

    async def expire_exclusions(self, call_id: str) -> Events: ...

    async def expire_wait(self, call_id: str) -> Events: ...

    async def take_over(self, lead_id: int, call_id: str) -> Events: ...

    async def due_deadlines(self) -> list[Deadline]: ...

    async def snapshot(self) -> QueueState: ...

    async def close(self) -> None: ...
