"""Delivering interview results to the credit system: the worker of the outbox
``credit_result_deliveries`` (on :mod:`cloudcounter.db.outbox`).

One owned task runs rounds: due rows are claimed (a lease: a hub killed mid-attempt frees
the row when the lease runs out) and posted with their idempotency key, so the credit
system records each result **once** however often it is sent (at least once here, exactly
once there). Before the first attempt the call's recordings (ids and SHA-256) are added
and frozen into the row: every later attempt sends the same body. While a recording is
still being written (no SHA-256 yet) the first attempt waits, up to ``recordings_wait_s``.

* 2xx: ``delivered`` (timeline ``credit.result.delivered``);
* the credit system unavailable (no connection, timeout, 5xx, circuit open): retried with
  back-off (``retry_base_s`` doubling to ``retry_max_s``), indefinitely: a credit system
  down for an hour loses nothing; each failed attempt is on the timeline;
* refused (4xx, an answer that is not the contract's): ``failed`` with the error; an
  operator sends it again after fixing the cause (``retry_failed``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.business.credit_client import CreditClient, CreditError
from cloudcounter.credit.contract import InterviewResult
from cloudcounter.db.loan_models import CreditResultDelivery
from cloudcounter.db.models import Recording
from cloudcounter.db.outbox import (
    DELIVERED, FAILED, PENDING, OutboxLoop, OutboxStore, aware, retry_delay, utc,
)

log = logging.getLogger(__name__)
#: the credit system refused this result: sending it again will not help
PERMANENT = frozenset({"credit_refused", "credit_not_found", "credit_conflict"})
BACKLOG_S = 10.0


@dataclass(frozen=True)
class DeliveryConfig:
    retry_base_s: float = 5.0
    retry_max_s: float = 300.0
    recordings_wait_s: float = 60.0
    lease_s: float = 60.0
    batch: int = 16
    poll_s: float = 2.0


# (call id, state, details) for the timeline and the console
Notify = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class CreditDelivery:
    def __init__(self, sm: async_sessionmaker, client: CreditClient, notify: Notify,
                 config: DeliveryConfig = DeliveryConfig(),
                 clock: Callable[[], float] = time.time) -> None:
        self.sm = sm
        self.client = client
        self.notify = notify
        self.config = config
        self.clock = clock
        self.outbox: OutboxStore[CreditResultDelivery] = OutboxStore(sm, CreditResultDelivery)
        self.loop = OutboxLoop("credit-delivery", self.run_round, config.poll_s, clock)
        self.delivered = 0
        self.failed_attempts = 0
        self.backlog: dict[str, int] = {PENDING: 0, FAILED: 0}  # read every BACKLOG_S
        self._backlog_at = 0.0

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    def wake(self) -> None:
        self.loop.wake()

    async def run_round(self) -> float | None:
        now = self.clock()
        if now - self._backlog_at >= BACKLOG_S:  # for /metrics
            self._backlog_at = now
            self.backlog = {st: await self.outbox.count(st) for st in (PENDING, FAILED)}
        for row_id in await self.outbox.due(now, self.config.batch):
            row = await self.outbox.claim(row_id, now, self.config.lease_s)
            if row is not None:
                await self._attempt(row)
        if await self.outbox.due(self.clock(), 1):
            return self.clock()
        return await self.outbox.next_due()

    async def _attempt(self, row: CreditResultDelivery) -> None:
        now = self.clock()
        recordings = row.recordings
        if recordings is None:
            recordings, ready = await self._recordings(row.call_id)
            age = now - aware(row.created_at).timestamp()
            if not ready and age < self.config.recordings_wait_s:
                await self.outbox.settle(row.id, next_attempt_at=utc(now + 2.0))
                return
            async with self.sm() as s, s.begin():  # frozen from now on (the lease stays)
                await s.execute(update(CreditResultDelivery)
                                .where(CreditResultDelivery.id == row.id)
                                .values(recordings=recordings))
        body = {**json.loads(row.body), "recordings": recordings}
        attempts = row.attempts + 1
        try:
            ack = await self.client.post_result(InterviewResult.model_validate(body),
                                                row.idempotency_key)
        except CreditError as exc:
            self.failed_attempts += 1
            permanent = exc.code in PERMANENT
            state = FAILED if permanent else PENDING
            delay = retry_delay(attempts, self.config.retry_base_s, self.config.retry_max_s)
            await self.outbox.settle(row.id, state=state, attempts=attempts,
                                     last_error=f"{exc.code}: {exc.message}"[:500],
                                     next_attempt_at=utc(now + delay))
            await self.notify(row.call_id, state, {"attempts": attempts, "code": exc.code,
                                             "error": exc.message,
                                             "retry_in_s": None if permanent else round(delay, 1)})
            return
        except Exception as exc:  # noqa: BLE001 - a bug or a refused body: keep the row
            log.exception("credit result of %s not sent", row.call_id)
            await self.outbox.settle(row.id, attempts=attempts, last_error=repr(exc)[:500],
                                     next_attempt_at=utc(now + self.config.retry_max_s))
            return
        await self.outbox.settle(row.id, state=DELIVERED, attempts=attempts,
                                 delivered_at=utc(self.clock()), result_id=ack.result_id,
                                 last_error=None)
        self.delivered += 1
        await self.notify(row.call_id, DELIVERED, {"attempts": attempts, "result_id": ack.result_id,
                                             "duplicate": ack.duplicate})

    async def _recordings(self, call_id: str) -> tuple[list[dict[str, Any]], bool]:
        async with self.sm() as s:
            rows = (await s.scalars(select(Recording).where(Recording.call_id == call_id)
                                    .order_by(Recording.id))).all()
        out = [{"id": r.public_id, "participant": r.participant, "sha256": r.sha256}
               for r in rows]
        return out, all(r.sha256 or r.finished_at or r.error for r in rows)

    async def retry_failed(self, call_id: str | None = None) -> int:
        """Send given-up results again (an operator, after fixing the cause)."""
        stmt = update(CreditResultDelivery).where(CreditResultDelivery.state == FAILED)
        if call_id is not None:
            stmt = stmt.where(CreditResultDelivery.call_id == call_id)
        async with self.sm() as s, s.begin():
            n = (await s.execute(stmt.values(state=PENDING, next_attempt_at=utc(self.clock()))
                                 )).rowcount  # type: ignore[attr-defined]
        self.wake()
        return int(n or 0)
