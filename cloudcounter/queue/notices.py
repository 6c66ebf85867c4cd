"""What the queue tells the rest of the hub, delivered off the routing path.

A transition decides a notification under the dispatcher's lock; it is kept as a frozen
:class:`Notice` (the listener method's name and its arguments, calls and agents as
snapshots taken at that moment) and delivered later by the outbox's own task, so that
neither the lock holder nor the routing loop waits for sockets, and a notification says what
was true when it was decided (an agent offered then answered a call is told ``offered`` then
``busy``, not ``busy`` twice).

Order: urgent notices (offers, answers, ends, state changes) in the order they were decided,
before *bulk* ones (position and statistics updates), which go in batches of
:data:`BULK_BATCH` while nothing urgent waits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from cloudcounter.queue.model import Agent, Call
from cloudcounter.queue.ports import QueueListener

log = logging.getLogger(__name__)
BULK_BATCH = 500


@dataclass(frozen=True)
class Notice:
    """One call of a :class:`QueueListener` method, decided and not yet delivered."""

    kind: str  # the listener method: call_offered, agent_state_changed, ...
    args: tuple[Any, ...]


def _frozen(value: Any) -> Any:
    return value.snapshot() if isinstance(value, (Call, Agent)) else value


class Outbox:
    """Notices decided by the dispatcher, delivered by one task (:meth:`start`) or, with no
    task running (unit tests drive the dispatcher by hand), inline by :meth:`flush`."""

    def __init__(self, listener: QueueListener) -> None:
        self.listener = listener
        self._pending: list[Notice] = []  # decided in the current locked section
        self._bulk: list[Notice] = []
        self._urgent: collections.deque[Notice] = collections.deque()  # handed to the task
        self._bulk_out: collections.deque[Notice] = collections.deque()
        self._mail = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, kind: str, *args: Any) -> None:
        self._pending.append(Notice(kind, tuple(_frozen(a) for a in args)))

    def add_bulk(self, kind: str, *args: Any) -> None:
        self._bulk.append(Notice(kind, tuple(_frozen(a) for a in args)))

    @property
    def backlog(self) -> int:
        return len(self._urgent) + len(self._bulk_out)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-notify")

    async def stop(self) -> None:
        """Stop the task and deliver, inline, what was decided before the stop."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        left = list(self._urgent) + self._pending + list(self._bulk_out) + self._bulk
        self._urgent.clear()
        self._bulk_out.clear()
        self._pending, self._bulk = [], []
        for notice in left:
            await self._deliver_one(notice)

    async def flush(self) -> None:
        """After a locked section: hand its notices to the task (or deliver them now)."""
        pending, self._pending = self._pending, []
        bulk, self._bulk = self._bulk, []
        if self._task is not None:
            self._urgent.extend(pending)
            self._bulk_out.extend(bulk)
            if pending or bulk:
                self._mail.set()
            return
        for notice in pending + bulk:
            await self._deliver_one(notice)

    async def _deliver_one(self, notice: Notice) -> None:
        try:
            await getattr(self.listener, notice.kind)(*notice.args)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing listener must not break the queue
            log.exception("queue listener failed (%s)", notice.kind)

    async def _run(self) -> None:
        """Everything waiting is sent as one concurrent batch: python-socketio's ``emit``
        waits for a task per recipient, so sending one at a time would cost an event-loop
        turn per notification. The batch's coroutines start in the order the notices were
        decided, and each reaches ``emit`` without waiting, so a recipient still gets them
        in order."""
        while True:
            if not self._urgent and not self._bulk_out:
                self._mail.clear()
                await self._mail.wait()
            batch: list[Notice] = []
            while self._urgent:
                batch.append(self._urgent.popleft())
            if not batch:
                while self._bulk_out and len(batch) < BULK_BATCH:
                    batch.append(self._bulk_out.popleft())
            results = await asyncio.gather(
                *(getattr(self.listener, n.kind)(*n.args) for n in batch),
                return_exceptions=True)
            for notice, result in zip(batch, results):
                if isinstance(result, Exception):
                    log.error("queue listener failed (%s)", notice.kind, exc_info=result)
