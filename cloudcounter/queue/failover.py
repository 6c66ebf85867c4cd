"""What a lapsed node's loss does to the shared queue (issue 11).

A node whose lease lapsed (killed, frozen, cut off) held connections: agents and customers.
Exactly one survivor claims the lapse (``cloudcounter.hub.cluster``; the queue soak has a
lease table of its own) and applies it through the store's transitions:

* each of the node's agents goes offline: an offer in flight is withdrawn without counting
  as missed, and a call in progress goes back to its original place in the queue (a team
  lead may take it over);
* each open call of the node's customers falls under the grace rules (not yet held):
  the customer may reconnect to any node within ``customer_grace_s``, otherwise the
  router's deadline pass ends the call.

Every transition is retried on a conflict (the row changed meanwhile) a few times, with a
timeout; a refusal for good (the agent was already offline, the call already ended) is
counted, not raised. Nothing here reads a clock: the store's transitions carry the time.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cloudcounter.errors import CloudCounterError
from cloudcounter.queue.rules import Event
from cloudcounter.queue.transitions import QueueTransitions

log = logging.getLogger(__name__)
ATTEMPTS = 5
TIMEOUT_S = 5.0


@dataclass
class FailoverReport:
    agents_offline: int = 0
    calls_held: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: int = 0
    events: list[Event] = field(default_factory=list)


async def _retried(make: Callable[[], Awaitable[tuple[Event, ...]]],
                   report: FailoverReport) -> bool:
    """True when applied; False when refused for good or failed every attempt."""
    for _ in range(ATTEMPTS):
        try:
            async with asyncio.timeout(TIMEOUT_S):
                report.events.extend(await make())
            return True
        except CloudCounterError as exc:
            report.refused[exc.code] += 1
            if exc.code != "conflict":
                return False
        except Exception as exc:  # noqa: BLE001 - the database: counted, tried again
            report.errors += 1
            log.warning("fail-over: %s", type(exc).__name__)
    return False


async def fail_over(store: QueueTransitions, agent_ids: Iterable[int],
                    customer_of_node: Callable[[str], bool]) -> FailoverReport:
    """Apply a lapsed node's loss: ``agent_ids`` were connected to it, and
    ``customer_of_node(customer_id)`` says whether a customer was."""
    report = FailoverReport()
    for agent_id in sorted(set(agent_ids)):
        if await _retried(lambda a=agent_id: store.agent_offline(a), report):  # type: ignore[misc]
            report.agents_offline += 1
    snapshot = await store.snapshot()
    for call in sorted(snapshot.calls.values(), key=lambda c: c.call_id):
        if customer_of_node(call.customer_id) and not call.held:
            if await _retried(lambda c=call.call_id: store.grace_start(c), report):  # type: ignore[misc]
                report.calls_held += 1
    return report


async def fail_over_presence(store: QueueTransitions, presence: Any, node_id: str
                             ) -> FailoverReport:
    """:func:`fail_over` for the node's entries in ``presence``
    (:class:`cloudcounter.cluster.presence.RedisPresence`), which are then removed."""
    held = await presence.entries_of(node_id)
    agents = [int(a) for a in held.get("agent", ()) if str(a).isdigit()]
    customers = set(held.get("customer", ()))
    report = await fail_over(store, agents, customers.__contains__)
    await presence.drop_node(node_id)
    return report
