"""What the dispatcher tells the rest of the hub: notifications and the call journal."""

from __future__ import annotations

from typing import Any, Protocol

from cloudcounter.queue.model import Agent, AgentState, Call


class QueueListener(Protocol):
    """Implemented by the signalling layer (pushes to sockets) and by test recorders."""

    async def call_queued(self, call: Call, position: int, eta_s: float | None,
                          requeued: bool) -> None: ...

    async def position_changed(self, call: Call, position: int, eta_s: float | None) -> None: ...

    async def call_offered(self, call: Call, agent: Agent, expires_in_s: float) -> None: ...

    async def offer_withdrawn(self, call: Call, agent: Agent, reason: str) -> None: ...

    async def call_accepted(self, call: Call, agent: Agent) -> None: ...

    async def call_ended(self, call: Call, reason: str, by: str,
                         agent: Agent | None) -> None: ...

    async def agent_state_changed(self, agent: Agent, previous: AgentState,
                                  reason: str) -> None: ...

    async def queue_stats(self, stats: list[dict[str, Any]]) -> None: ...

    async def callback_due(self, call: Call, answer_within_s: float) -> None: ...


class CallJournal(Protocol):
    """Durable record of calls: one row per call and its append-only timeline."""

    def call_created(self, call: Call, requested_at_wall: float) -> None: ...

    def call_updated(self, call_id: str, **fields: Any) -> None: ...

    def event(self, call_id: str, actor: str, kind: str, payload: dict[str, Any] | None = None,
              at: float | None = None) -> None: ...


class NullListener:
    """Listens to nothing (benchmarks of the queue alone, tests that only read the journal)."""

    async def call_queued(self, *a: Any) -> None: ...
    async def position_changed(self, *a: Any) -> None: ...
    async def call_offered(self, *a: Any) -> None: ...
    async def offer_withdrawn(self, *a: Any) -> None: ...
    async def call_accepted(self, *a: Any) -> None: ...
    async def call_ended(self, *a: Any) -> None: ...
    async def agent_state_changed(self, *a: Any) -> None: ...
    async def queue_stats(self, *a: Any) -> None: ...
    async def callback_due(self, *a: Any) -> None: ...


class MemoryJournal:
    """Keeps the journal in lists; used by unit tests of the dispatcher."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []

    def call_created(self, call: Call, requested_at_wall: float) -> None:
        self.calls[call.call_id] = {"state": call.state.value, "requested_at": requested_at_wall}

    def call_updated(self, call_id: str, **fields: Any) -> None:
        self.calls.setdefault(call_id, {}).update(fields)

    def event(self, call_id: str, actor: str, kind: str, payload: dict[str, Any] | None = None,
              at: float | None = None) -> None:
        self.events.append((call_id, actor, kind, payload or {}))

    def kinds(self, call_id: str) -> list[str]:
        return [k for c, _, k, _ in self.events if c == call_id]
