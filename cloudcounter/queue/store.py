"""Where the queue keeps its calls and agents: a narrow interface and the in-memory backend.

The dispatcher holds the rules; a store only keeps data. A Redis store (several hub nodes)
implements the same methods, with its transitions made atomic by Lua scripts.
"""

from __future__ import annotations

import abc
from collections import defaultdict, deque

from cloudcounter.queue.model import Agent, Call, CallState


class QueueStore(abc.ABC):
    @abc.abstractmethod
    async def put_call(self, call: Call) -> None: ...

    @abc.abstractmethod
    async def get_call(self, call_id: str) -> Call | None: ...

    @abc.abstractmethod
    async def remove_call(self, call_id: str) -> None: ...

    @abc.abstractmethod
    async def calls(self) -> list[Call]: ...

    @abc.abstractmethod
    async def put_agent(self, agent: Agent) -> None: ...

    @abc.abstractmethod
    async def get_agent(self, agent_id: int) -> Agent | None: ...

    @abc.abstractmethod
    async def agents(self) -> list[Agent]: ...

    @abc.abstractmethod
    async def customer_call(self, customer_id: str) -> Call | None:
        """The customer's open call (one at most)."""

    @abc.abstractmethod
    async def next_seq(self) -> int:
        """The next tie-break number for calls enqueued at the same instant."""

    @abc.abstractmethod
    async def add_handle_time(self, skill: str, seconds: float) -> None: ...

    @abc.abstractmethod
    async def handle_times(self, skill: str) -> list[float]: ...

    async def waiting_calls(self) -> list[Call]:
        return [c for c in await self.calls() if c.state is CallState.QUEUED]

    async def close(self) -> None:
        return None


class MemoryQueueStore(QueueStore):
    """Single-node store: plain dicts. Objects are shared, so updates are immediate."""

    def __init__(self, handle_window: int = 50) -> None:
        self._calls: dict[str, Call] = {}
        self._by_customer: dict[str, str] = {}  # customer id -> open call id
        self._seq = 0
        self._agents: dict[int, Agent] = {}
        self._handle: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=handle_window))

    async def put_call(self, call: Call) -> None:
        self._calls[call.call_id] = call
        self._by_customer[call.customer_id] = call.call_id

    async def get_call(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    async def remove_call(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None and self._by_customer.get(call.customer_id) == call_id:
            del self._by_customer[call.customer_id]

    async def customer_call(self, customer_id: str) -> Call | None:
        call = self._calls.get(self._by_customer.get(customer_id, ""))
        return call if call is not None and call.state is not CallState.ENDED else None

    async def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def calls(self) -> list[Call]:
        return list(self._calls.values())

    async def put_agent(self, agent: Agent) -> None:
        self._agents[agent.agent_id] = agent

    async def get_agent(self, agent_id: int) -> Agent | None:
        return self._agents.get(agent_id)

    async def agents(self) -> list[Agent]:
        return list(self._agents.values())

    async def add_handle_time(self, skill: str, seconds: float) -> None:
        self._handle[skill].append(seconds)

    async def handle_times(self, skill: str) -> list[float]:
        return list(self._handle.get(skill, ()))
