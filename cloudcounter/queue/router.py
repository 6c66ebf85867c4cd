"""The queue engine a node runs over a :class:`~cloudcounter.queue.transitions.QueueTransitions`
store (issue 11; docs/scaling.md, "The router engine").

Three tasks, each owned and cancelled by :meth:`QueueRouter.close`:

* **the leader loop**: every ``acquire_interval_s`` it asks the election
  (:class:`cloudcounter.queue.leader.Leadership` on PostgreSQL, :class:`LocalElection` in
  one process) whether this node now leads; while it leads it runs routing passes:
  :func:`cloudcounter.queue.routing.route` over ``rules.waiting_view(snapshot, now)``, then
  one ``store.offer`` per assignment with the leader's epoch. Refusals are expected (the
  snapshot is a moment old, other nodes' agents act meanwhile): each is counted by its code.
  A ``fenced`` refusal means a newer router was elected: this one steps down at once and
  becomes a candidate again. A pass stops offering once its snapshot is older than
  ``max_snapshot_age_s`` (a paused or slow pass never acts long on old data).
* **the deadline loop**: only while leading (justification: the PostgreSQL store fences the
  expiries with the router's epoch, as it does offers, so that one writer at a time applies
  the deadlines, on the database's clock; each expiry re-checks its deadline under the row
  lock, so a late or repeated one changes nothing). It applies ``due_deadlines()`` with the
  ``expire_*`` methods.
* **the event pump**: the events of the router's transitions (and any a caller hands to
  :meth:`QueueRouter.publish`) go through a bounded :class:`asyncio.Queue` to the
  subscriber callback, off the routing path: a full queue drops the event and counts it
  (routing never waits for a subscriber); a subscriber's error is logged and delivery goes
  on. The events are the rules' frozen :class:`~cloudcounter.queue.rules.Event` snapshots.

Every store call has a timeout (``db_timeout_s``); a timeout or a database error is counted
and the loop goes on after its interval.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol, TypeVar

from cloudcounter.errors import CloudCounterError
from cloudcounter.queue import routing
from cloudcounter.queue import rules as r
from cloudcounter.queue.rules import Event
from cloudcounter.queue.transitions import Events, QueueTransitions

log = logging.getLogger(__name__)
T = TypeVar("T")
#: the timeline's name for how a call reached its agent (routing.Assignment.tier)
TIERS: dict[int, str | None] = {0: None, 1: "widened", 2: "overflow"}
Subscriber = Callable[[Event], "Awaitable[None] | None"]


class Election(Protocol):
    """One router at a time: :class:`cloudcounter.queue.leader.Leadership` is one."""

    epoch: int | None

    async def try_acquire(self) -> int | None: ...

    async def release(self) -> None: ...


class LocalElection:
    """The election among the engines of one process (the memory store): the first member
    to ask leads until it releases; each win has a higher epoch."""

    def __init__(self) -> None:
        self.holder: object | None = None
        self.epoch = 0

    def member(self) -> "_LocalMember":
        return _LocalMember(self)


class _LocalMember:
    def __init__(self, election: LocalElection) -> None:
        self._election = election
        self.epoch: int | None = None

    async def try_acquire(self) -> int | None:
        e = self._election
        if e.holder is None:
            e.holder, e.epoch = self, e.epoch + 1
            self.epoch = e.epoch
        return self.epoch if e.holder is self else None

    async def release(self) -> None:
        if self._election.holder is self:
            self._election.holder = None
        self.epoch = None


@dataclass
class RouterStats:
    passes: int = 0
    offers: int = 0  # committed
    refused: Counter[str] = field(default_factory=Counter)  # offers refused, by code
    fenced: int = 0  # router writes refused because a newer router was elected
    stale_passes: int = 0  # passes cut short: the snapshot got older than allowed
    expiries: int = 0  # deadline expiries committed
    expiry_refused: Counter[str] = field(default_factory=Counter)
    elections_won: int = 0
    epochs: list[int] = field(default_factory=list)
    timeouts: int = 0
    errors: int = 0
    events_delivered: int = 0
    events_dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "refused": dict(self.refused),
                "expiry_refused": dict(self.expiry_refused), "epochs": list(self.epochs)}


class QueueRouter:
    """``store``: the queue store; ``election``: who routes; ``subscriber``: called with
    every event of the router's transitions; ``clock``: the store's time (epoch seconds for
    PostgreSQL, whose ``now()`` it stands for; the memory store's own clock)."""

    def __init__(self, store: QueueTransitions, election: Election, *,
                 subscriber: Subscriber | None = None, clock: Callable[[], float] = time.time,
                 rules: routing.Rules = routing.no_rules, aging_s: float | None = None,
                 route_interval_s: float = 0.2, deadline_interval_s: float = 0.25,
                 acquire_interval_s: float = 0.5, max_snapshot_age_s: float = 1.0,
                 db_timeout_s: float = 5.0, events_max: int = 1000) -> None:
        self.store, self.election, self.subscriber = store, election, subscriber
        self.clock, self.rules, self.aging_s = clock, rules, aging_s
        self.route_interval_s, self.deadline_interval_s = route_interval_s, deadline_interval_s
        self.acquire_interval_s, self.max_snapshot_age_s = acquire_interval_s, max_snapshot_age_s
        self.db_timeout_s = db_timeout_s
        self.epoch: int | None = None
        self.stats = RouterStats()
        self._events: asyncio.Queue[Event] = asyncio.Queue(maxsize=events_max)
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._leader_loop(), name="queue-router-leader"),
                       asyncio.create_task(self._deadline_loop(), name="queue-router-deadlines"),
                       asyncio.create_task(self._event_pump(), name="queue-router-events")]

    async def close(self) -> None:
        """Cancel the tasks, wait for them, give up the leadership (undelivered events are
        dropped)."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._step_down()

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    def publish(self, events: Events) -> None:
        """Hand events to the subscriber, off the caller's path (dropped when the queue is
        full)."""
        for event in events:
            try:
                self._events.put_nowait(event)
            except asyncio.QueueFull:
                self.stats.events_dropped += 1

    # ------------------------------------------------------------ leadership
    async def _db(self, aw: Awaitable[T]) -> T:
        # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a cancellation that
        # arrives as the awaited call completes, and close() would wait for ever
        async with asyncio.timeout(self.db_timeout_s):
            return await aw

    def _fence(self, epoch: int | None) -> None:
        """The PostgreSQL store fences the router's writes with ``store.epoch``."""
        if hasattr(self.store, "epoch"):
            setattr(self.store, "epoch", epoch)

    async def _step_down(self) -> None:
        if self.epoch is None and self.election.epoch is None:
            return
        self.epoch = None
        self._fence(None)
        try:
            await self._db(self.election.release())
        except Exception:  # a dead lock connection: the lock went with it
            log.info("queue router: the leadership connection was already gone")

    async def _leader_loop(self) -> None:
        while True:
            if self.epoch is None:
                try:
                    epoch = await self._db(self.election.try_acquire())
                except Exception as exc:  # a timeout or the database: counted, tried again
                    self._count_failure(exc, "electing")
                    epoch = None
                if epoch is None:
                    await asyncio.sleep(self.acquire_interval_s)
                    continue
                self.epoch = epoch
                self._fence(epoch)
                self.stats.elections_won += 1
                self.stats.epochs.append(epoch)
                log.info("queue router leads with epoch %d", epoch)
            try:
                await self.route_pass()
            except Exception as exc:  # a timeout or the database: counted, tried again
                self._count_failure(exc, "routing")
            await asyncio.sleep(self.route_interval_s)

    def _count_failure(self, exc: BaseException, doing: str) -> None:
        if isinstance(exc, asyncio.TimeoutError):
            self.stats.timeouts += 1
            log.warning("queue router: timed out %s", doing)
        else:
            self.stats.errors += 1
            log.warning("queue router: error %s: %r", doing, exc)

    async def _fenced(self) -> None:
        self.stats.fenced += 1
        log.warning("queue router epoch %s superseded: stepping down", self.epoch)
        await self._step_down()

    # ------------------------------------------------------------ routing
    async def route_pass(self) -> int:
        """One routing pass while leading; the number of offers committed."""
        if self.epoch is None:
            return 0
        taken = time.monotonic()
        snapshot = await self._db(self.store.snapshot())
        now = self.clock()
        calls, agents = r.waiting_view(snapshot, now)
        self.stats.passes += 1
        if not calls or not agents:
            return 0
        committed = 0
        for a in routing.route(calls, agents, now, self.aging_s, self.rules):
            if time.monotonic() - taken > self.max_snapshot_age_s:
                self.stats.stale_passes += 1
                break
            try:
                events = await self._db(self.store.offer(a.call_id, a.agent_id,
                                                         TIERS.get(a.tier)))
            except CloudCounterError as exc:
                if exc.code == "fenced":
                    await self._fenced()
                    break
                self.stats.refused[exc.code] += 1
                continue
            committed += 1
            self.stats.offers += 1
            self.publish(events)
        return committed

    # ------------------------------------------------------------ deadlines
    async def _deadline_loop(self) -> None:
        while True:
            await asyncio.sleep(self.deadline_interval_s)
            if self.epoch is None:
                continue
            try:
                await self.deadline_pass()
            except Exception as exc:  # a timeout or the database: counted, tried again
                self._count_failure(exc, "applying deadlines")

    async def deadline_pass(self) -> int:
        """Apply every deadline that passed (while leading); the number applied."""
        if self.epoch is None:
            return 0
        applied = 0
        done: set[tuple[str, str | int | None]] = set()
        for d in await self._db(self.store.due_deadlines()):
            key: tuple[str, str | int | None] = \
                (d.kind, d.agent_id if d.kind == "wrap_up" else d.call_id)
            if key in done:  # several exclusions of one call: one expiry applies them all
                continue
            done.add(key)
            try:
                events = await self._db(self._expire(d))
            except CloudCounterError as exc:
                if exc.code == "fenced":
                    await self._fenced()
                    break
                self.stats.expiry_refused[exc.code] += 1
                continue
            if events:
                applied += 1
                self.stats.expiries += 1
                self.publish(events)
        return applied

    def _expire(self, d: r.Deadline) -> Awaitable[Events]:
        if d.kind == "wrap_up":
            assert d.agent_id is not None
            return self.store.expire_wrap_up(d.agent_id)
        assert d.call_id is not None
        method = {"offer": self.store.expire_offer, "grace": self.store.expire_grace,
                  "exclusion": self.store.expire_exclusions,
                  "wait": self.store.expire_wait, "callback": self.store.expire_callback,
                  "callback_place": self.store.callback_due}[d.kind]
        return method(d.call_id)

    # ------------------------------------------------------------ events
    async def _event_pump(self) -> None:
        while True:
            event = await self._events.get()
            if self.subscriber is None:
                continue
            try:
                result = self.subscriber(event)
                if inspect.isawaitable(result):
                    await result
                self.stats.events_delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue router: the event subscriber failed on %s", event.kind)


__all__ = ["Election", "LocalElection", "QueueRouter", "RouterStats", "TIERS"]
