"""A durable outbox: rows written in the transaction that decides something, delivered
later by one owned task, at least once, with retries and back-off, surviving restarts.

Shared by every outbox of the hub (webhooks today; the credit write-back of the car-loan
interview has the same columns and can move onto it). A model mixes in
:class:`OutboxColumns`; :class:`OutboxStore` gives the atomic steps over it:

* :meth:`OutboxStore.claim` takes a row for one attempt with a conditional update and a
  lease (``lease_until``), so two hub nodes never send it at the same moment and a hub
  killed mid-attempt frees it when the lease runs out;
* :meth:`OutboxStore.settle` records the outcome and drops the lease;
* :meth:`OutboxStore.release` drops the leases of attempts cut short by a shutdown.

:class:`OutboxLoop` runs ``round()`` until stopped: at once when woken (something was
written), else when the next row is due, at the latest every ``poll_s`` (another node may
have written), backing off while the database fails.

States: ``pending`` (to deliver, from ``next_attempt_at``), ``delivered``, ``failed``
(given up: too old; an operator may send it again), ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from sqlalchemy import DateTime, Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger(__name__)
PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
STATES = (PENDING, DELIVERED, FAILED, CANCELLED)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def aware(v: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return v if v.tzinfo else v.replace(tzinfo=timezone.utc)


def retry_delay(attempts: int, base: float, cap: float,
                rand: Callable[[], float] = random.random) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones (1-based):
    ``base * 2**(attempts-1)`` capped at ``cap``, with ±20 % jitter so that many rows
    failing together do not retry together."""
    return min(cap, base * (2 ** min(30, max(0, attempts - 1)))) * (0.8 + 0.4 * rand())


class OutboxColumns:
    """The delivery columns of an outbox row (mix into a declarative model)."""

    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)


Row = TypeVar("Row", bound=OutboxColumns)


class OutboxStore(Generic[Row]):
    """The atomic steps over one outbox table (``model`` has an integer ``id``)."""

    def __init__(self, sm: async_sessionmaker, model: type[Row]) -> None:
        self.sm = sm
        self.model = model

    def _col(self, name: str) -> Any:
        return getattr(self.model, name)

    async def due(self, now: float, limit: int, *where: Any) -> list[int]:
        """Ids of pending rows due at ``now`` and not leased, oldest first."""
        m = self._col
        stmt = (select(m("id")).where(m("state") == PENDING, m("next_attempt_at") <= utc(now),
                                      (m("lease_until").is_(None)) | (m("lease_until") < utc(now)),
                                      *where)
                .order_by(m("id")).limit(limit))
        async with self.sm() as s:
            return list((await s.scalars(stmt)).all())

    async def next_due(self, *where: Any) -> float | None:
        m = self._col
        async with self.sm() as s:
            at = await s.scalar(select(m("next_attempt_at")).where(m("state") == PENDING, *where)
                                .order_by(m("next_attempt_at")).limit(1))
        return aware(at).timestamp() if at is not None else None

    async def claim(self, row_id: int, now: float, lease_s: float) -> Row | None:
        """Take a pending row for one attempt; None when another worker has it or it is no
        longer pending."""
        m = self._col
        async with self.sm() as s, s.begin():
            result = await s.execute(
                update(self.model)
                .where(m("id") == row_id, m("state") == PENDING,
                       (m("lease_until").is_(None)) | (m("lease_until") < utc(now)))
                .values(lease_until=utc(now + lease_s)))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return await s.get(self.model, row_id)

    async def settle(self, row_id: int, **values: Any) -> None:
        """Record an attempt's outcome (``state``, ``attempts``, ``next_attempt_at``...) and
        drop the lease."""
        async with self.sm() as s, s.begin():
            await s.execute(update(self.model).where(self._col("id") == row_id)
                            .values(lease_until=None, **values))

    async def release(self, ids: Sequence[int]) -> None:
        if ids:
            async with self.sm() as s, s.begin():
                await s.execute(update(self.model).where(self._col("id").in_(list(ids)))
                                .values(lease_until=None))

    async def count(self, state: str, *where: Any) -> int:
        from sqlalchemy import func
        async with self.sm() as s:
            return int(await s.scalar(select(func.count()).select_from(self.model)
                                      .where(self._col("state") == state, *where)) or 0)


class OutboxLoop:
    """Runs ``round()`` (which returns when it next wants to run, epoch seconds, or None)
    in one owned task until :meth:`stop`; :meth:`wake` runs it at once."""

    def __init__(self, name: str, round: Callable[[], Awaitable[float | None]],
                 poll_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._round = round
        self.poll_s = poll_s
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            self._wake.clear()
            try:
                nxt = await self._round()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is unreachable, or a bug: keep going
                self.failures += 1
                log.exception("%s: a delivery round failed; again in %.0f s", self.name,
                              backoff)
                nxt, backoff = self.clock() + backoff, min(backoff * 2, 60.0)
            wait = self.poll_s if nxt is None else min(self.poll_s, max(0.0, nxt - self.clock()))
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
