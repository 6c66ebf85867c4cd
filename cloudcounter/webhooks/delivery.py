"""Delivering webhook events: at least once, signed, with retries and back-off.

One owned task (:class:`WebhookDispatcher`, on :class:`cloudcounter.db.outbox.OutboxLoop`)
runs rounds. In a round, for each active subscription whose endpoint may be tried now, the
oldest due deliveries are claimed (a lease: two hub nodes never send one at the same
moment) and POSTed, a few at a time per endpoint and ``concurrency`` in all. Every
attempt goes to the delivery log (``webhook_attempts``).

* **2xx**: delivered.
* **The endpoint is failing** (no connection, a timeout, 408, 429, 3xx, 5xx): the
  *endpoint* backs off: ``retry_base_s`` doubling to ``retry_max_s`` (±20 %), or the
  receiver's ``Retry-After``; until then nothing is sent to it but, at each step, one
  probe (its oldest delivery). A receiver that is down for an hour gets about a dozen
  requests, and its backlog flows as soon as a probe succeeds.
* **The receiver refuses this one event** (another 4xx): that delivery backs off by its
  own attempts; the others go on.
* A delivery still not delivered ``max_age_s`` after it was created is given up
  (``failed``; an administrator can send it again).

Delivered and given-up events are pruned after ``retention_days``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import aiohttp
from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db.ops_models import (
    WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription,
)
from cloudcounter.db.outbox import (
    DELIVERED, FAILED, PENDING, OutboxLoop, OutboxStore, aware, retry_delay, utc,
)
from cloudcounter.db.security_log import clean
from cloudcounter.webhooks import signing

log = logging.getLogger(__name__)
USER_AGENT = "cloudcounter-webhooks/1"
ENDPOINT_STATUSES = frozenset({408, 425, 429})
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class DeliveryConfig:
    timeout_s: float = 10.0
    retry_base_s: float = 5.0
    retry_max_s: float = 600.0
    max_age_s: float = 3 * 86400.0
    concurrency: int = 8
    per_endpoint: int = 4
    retention_days: int = 30
    poll_s: float = 1.0

    @property
    def lease_s(self) -> float:
        """Longer than an attempt can take: a hub killed mid-attempt frees it after this."""
        return 2 * self.timeout_s + 5.0


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    endpoint_failed: bool  # the endpoint is unwell (back off the whole subscription)
    status: int | None
    error: str | None
    response: str | None
    retry_after_s: float | None
    duration_ms: int


def classify(status: int | None) -> tuple[bool, bool]:
    """(delivered, the endpoint is failing) for an HTTP status (None: no answer)."""
    if status is None:
        return False, True
    if 200 <= status < 300:
        return True, False
    if status >= 500 or status in ENDPOINT_STATUSES or 300 <= status < 400:
        return False, True
    return False, False


def retry_after(value: str | None, cap: float) -> float | None:
    if value and value.strip().isdigit():
        return min(cap, float(value.strip()))
    return None


class WebhookDispatcher:
    def __init__(self, sm: async_sessionmaker, config: DeliveryConfig = DeliveryConfig(),
                 clock: Callable[[], float] = time.time) -> None:
        self.sm = sm
        self.config = config
        self.clock = clock
        self.outbox: OutboxStore[WebhookDelivery] = OutboxStore(sm, WebhookDelivery)
        self.loop = OutboxLoop("webhook-delivery", self.run_round, config.poll_s, clock)
        self._http: aiohttp.ClientSession | None = None
        self._held: set[int] = set()
        self._sem = asyncio.Semaphore(config.concurrency)
        self._last_prune = 0.0
        # counters for /metrics
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0
        # (delivered, seconds) of every attempt (the metrics' latency histogram)
        self.on_attempt: Callable[[bool, float], None] | None = None

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        try:  # attempts cut short: the next start need not wait for their leases
            await self.outbox.release(sorted(self._held))
        except Exception:  # noqa: BLE001 - the leases run out by themselves
            log.warning("webhook leases not released; they expire in %.0f s",
                        self.config.lease_s)
        self._held.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        self.loop.wake()

    # -- rounds ---------------------------------------------------------------------
    async def run_round(self) -> float | None:
        """One round; returns when the next is wanted (epoch seconds) or None."""
        now = self.clock()
        await self._give_up_old(now)
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            await self.prune(now)
        async with self.sm() as s:
            subs = (await s.scalars(select(WebhookSubscription).where(
                WebhookSubscription.active.is_(True),
                WebhookSubscription.deleted_at.is_(None)))).all()
        ready = [sub for sub in subs
                 if sub.retry_at is None or aware(sub.retry_at).timestamp() <= now]
        waiting = [aware(sub.retry_at).timestamp() for sub in subs if sub not in ready
                   and sub.retry_at is not None]
        jobs = []
        for sub in ready:
            # an endpoint that has been failing gets one probe, a healthy one a few at once
            n = 1 if sub.consecutive_failures else self.config.per_endpoint
            rows = []
            for row_id in await self.outbox.due(now, n, WebhookDelivery.subscription_id == sub.id):
                row = await self.outbox.claim(row_id, now, self.config.lease_s)
                if row is not None:
                    self._held.add(row.id)
                    rows.append(row)
            if rows:
                jobs.append(self._endpoint(sub, rows))
        if jobs:
            await asyncio.gather(*jobs)
            return now
        if ready:
            nxt = await self.outbox.next_due(
                WebhookDelivery.subscription_id.in_([sub.id for sub in ready]))
            if nxt is not None:
                waiting.append(nxt)
        future = [t for t in waiting if t > now]
        return min(future) if future else None

    async def _endpoint(self, sub: WebhookSubscription, rows: list[WebhookDelivery]) -> None:
        async with self.sm() as s:
            events = {e.id: e for e in (await s.scalars(select(WebhookEvent).where(
                WebhookEvent.id.in_([r.event_id for r in rows])))).all()}
        outcomes = await asyncio.gather(*(self._attempt(sub, r, events[r.event_id])
                                          for r in rows))
        now = self.clock()
        endpoint_down = [o for o in outcomes if o.endpoint_failed]
        health: dict[str, Any] = {}
        if any(o.delivered or not o.endpoint_failed for o in outcomes):  # it answered
            if sub.consecutive_failures:
                log.info("webhook %d (%s) reachable again", sub.id, _host(sub.url))
            health = {"consecutive_failures": 0, "retry_at": None}
            if any(o.delivered for o in outcomes):
                health["last_success_at"] = utc(now)
        if endpoint_down and not health:
            failures = sub.consecutive_failures + 1
            delay = retry_delay(failures, self.config.retry_base_s, self.config.retry_max_s)
            hinted = [o.retry_after_s for o in endpoint_down if o.retry_after_s is not None]
            if hinted:
                delay = max(delay, max(hinted))
            health = {"consecutive_failures": failures, "retry_at": utc(now + delay)}
            if failures == 1:
                log.warning("webhook %d (%s) failing: %s; backing off", sub.id,
                            _host(sub.url), endpoint_down[0].error)
        if endpoint_down:
            health.update(last_failure_at=utc(now), last_error=endpoint_down[-1].error)
        retry_at = health.get("retry_at")
        for row, outcome in zip(rows, outcomes):
            await self._settle(row, outcome, now, retry_at)
        if health:
            async with self.sm() as s, s.begin():
                await s.execute(update(WebhookSubscription)
                                .where(WebhookSubscription.id == sub.id).values(**health))

    async def _settle(self, row: WebhookDelivery, o: Outcome, now: float,
                      endpoint_retry: datetime | None) -> None:
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status": o.status,
                                  "last_error": o.error}
        if o.delivered:
            values.update(state=DELIVERED, delivered_at=utc(now))
            self.delivered += 1
        else:
            self.failed_attempts += 1
            if o.endpoint_failed and endpoint_retry is not None:
                values["next_attempt_at"] = endpoint_retry
            else:
                values["next_attempt_at"] = utc(now + retry_delay(
                    attempts, self.config.retry_base_s, self.config.retry_max_s))
        async with self.sm() as s, s.begin():
            await s.execute(insert(WebhookAttempt), [{
                "delivery_id": row.id, "at": utc(now), "attempt": attempts, "status": o.status,
                "error": o.error, "duration_ms": o.duration_ms, "response": o.response}])
            await s.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id)
                            .values(lease_until=None, **values))
        self._held.discard(row.id)

    async def _attempt(self, sub: WebhookSubscription, row: WebhookDelivery,
                       event: WebhookEvent) -> Outcome:
        assert self._http is not None
        body = event.body.encode()
        secrets_ = [sub.secret]
        if sub.previous_secret and sub.previous_secret_until is not None \
                and aware(sub.previous_secret_until).timestamp() > self.clock():
            secrets_.append(sub.previous_secret)
        headers = {"Content-Type": "application/json",
                   "CloudCounter-Event-Id": event.public_id,
                   "CloudCounter-Event-Type": event.type,
                   "CloudCounter-Delivery": str(row.id),
                   "CloudCounter-Attempt": str(row.attempts + 1),
                   # the real time of the request (the receiver checks it against its clock)
                   signing.HEADER: signing.header(secrets_, int(time.time()), body)}
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        response: str | None = None
        hint: float | None = None
        async with self._sem:
            try:
                async with self._http.post(
                        sub.url, data=body, headers=headers, allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)) as resp:
                    status = resp.status
                    response = clean(await resp.content.read(256), 256) or None
                    hint = retry_after(resp.headers.get("Retry-After"), self.config.retry_max_s)
                    if not 200 <= status < 300:
                        error = f"HTTP {status}"
            except asyncio.TimeoutError:
                error = f"no answer within {self.config.timeout_s:g} s"
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                error = clean(f"{type(exc).__name__}: {exc}", 300)
        seconds = time.monotonic() - started
        delivered, endpoint = classify(status)
        if self.on_attempt is not None:
            self.on_attempt(delivered, seconds)
        return Outcome(delivered, endpoint and not delivered, status, error, response, hint,
                       int(seconds * 1000))

    # -- housekeeping ---------------------------------------------------------------
    async def _give_up_old(self, now: float) -> None:
        cutoff = utc(now - self.config.max_age_s)
        async with self.sm() as s, s.begin():
            done = await s.execute(update(WebhookDelivery).where(
                WebhookDelivery.state == PENDING, WebhookDelivery.created_at < cutoff,
                (WebhookDelivery.lease_until.is_(None)) | (WebhookDelivery.lease_until < utc(now)))
                .values(state=FAILED, last_error=func.coalesce(
                    WebhookDelivery.last_error, "never attempted"), lease_until=None))
        n = int(done.rowcount or 0)  # type: ignore[attr-defined]
        if n:
            self.given_up += n
            log.error("webhooks: %d deliveries given up after %.0f h without success; "
                      "redeliver them from the admin console or `cloudcounter webhook "
                      "redeliver`", n, self.config.max_age_s / 3600)

    async def prune(self, now: float) -> int:
        """Delete events older than the retention whose deliveries are all settled."""
        cutoff = utc(now) - timedelta(days=self.config.retention_days)
        unsettled = exists().where(and_(WebhookDelivery.event_id == WebhookEvent.id,
                                        WebhookDelivery.state == PENDING))
        async with self.sm() as s, s.begin():
            old = (await s.scalars(select(WebhookEvent.id).where(
                WebhookEvent.created_at < cutoff, ~unsettled).limit(10_000))).all()
            if not old:
                return 0
            ids = list(old)
            deliveries = select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(ids))
            await s.execute(delete(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_(deliveries)))
            await s.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
            await s.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids)))
        return len(ids)

    async def backlog(self) -> dict[str, int]:
        """Deliveries pending and given up (for /metrics)."""
        async with self.sm() as s:
            rows = (await s.execute(select(WebhookDelivery.state, func.count())
                                    .where(WebhookDelivery.state.in_((PENDING, FAILED)))
                                    .group_by(WebhookDelivery.state))).all()
        out = {PENDING: 0, FAILED: 0}
        out.update({str(k): int(v) for k, v in rows})
        return out


def _host(url: str) -> str:
    from urllib.parse import urlsplit
    try:
        return urlsplit(url).netloc
    except ValueError:
        return "?"
