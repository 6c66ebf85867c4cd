"""Publishing webhook events into the durable outbox, in the caller's transaction.

:func:`publish` stores each event that at least one active subscription wants (the exact
body, frozen) and one ``webhook_deliveries`` row per subscriber; the delivery worker
(:mod:`cloudcounter.webhooks.delivery`) sends them. Written in the transaction of what
happened, so an event is published if and only if that transaction commits.

* Call events come from the journal: :class:`TimelinePublisher` runs inside the
  transaction that writes each batch of timeline events.
* Other parts of the hub publish with :meth:`WebhookPublisher.publish` (its own
  transaction) or :meth:`WebhookPublisher.publish_in` (theirs), e.g. post-event
  supervision::

      await ctx.webhooks.publish_in(session, [NewEvent(EventType.FINDING_RECORDED.value,
                                     {"call_id": call_id, "finding_id": 12, "severity": "major"},
                                     call_id=call_id)])
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import event as sa_event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.db.models import CallSession, User
from cloudcounter.db.ops_models import WebhookDelivery, WebhookEvent, WebhookSubscription
from cloudcounter.db.outbox import PENDING
from cloudcounter.logs import RefusalLog
from cloudcounter.webhooks.events import TIMELINE, CallFacts, NewEvent, from_timeline, matches

log = logging.getLogger(__name__)


async def live_subscriptions(s: AsyncSession) -> list[tuple[int, list[str]]]:
    rows = await s.execute(select(WebhookSubscription.id, WebhookSubscription.event_types)
                           .where(WebhookSubscription.active.is_(True),
                                  WebhookSubscription.deleted_at.is_(None)))
    return [(int(i), list(t or [])) for i, t in rows.all()]


async def publish(s: AsyncSession, events: Sequence[NewEvent],
                  subscriptions: list[tuple[int, list[str]]] | None = None,
                  only: int | None = None) -> int:
    """Store the events and their deliveries in ``s``'s transaction; returns how many
    deliveries were created. ``only``: one subscription, whatever its filter (a test)."""
    if subscriptions is None:
        subscriptions = await live_subscriptions(s)
    wanted: list[tuple[NewEvent, list[int]]] = []
    for e in events:
        subs = [sid for sid, types in subscriptions
                if (sid == only if only is not None else matches(types, e.type))]
        if subs:
            wanted.append((e, subs))
    if not wanted:
        return 0
    rows = [WebhookEvent(public_id=e.id, type=e.type, call_id=e.call_id, created_at=e.at,
                         body=e.body()) for e, _ in wanted]
    s.add_all(rows)
    await s.flush()
    deliveries = [{"event_id": row.id, "subscription_id": sid, "state": PENDING,
                   "attempts": 0, "next_attempt_at": e.at, "created_at": e.at}
                  for row, (e, subs) in zip(rows, wanted) for sid in subs]
    await s.execute(insert(WebhookDelivery), deliveries)
    return len(deliveries)


def wake_after_commit(s: AsyncSession, wake: Callable[[], None] | None) -> None:
    if wake is not None:
        sa_event.listen(s.sync_session, "after_commit", lambda _session: wake(), once=True)


class WebhookPublisher:
    """What the hub hands to the parts that publish (``HubContext.webhooks``)."""

    def __init__(self, sm: async_sessionmaker, wake: Callable[[], None] | None = None) -> None:
        self.sm = sm
        self.wake = wake

    async def publish(self, events: Sequence[NewEvent]) -> int:
        async with self.sm() as s, s.begin():
            n = await publish(s, events)
        if n and self.wake is not None:
            self.wake()
        return n

    async def publish_in(self, s: AsyncSession, events: Sequence[NewEvent]) -> int:
        n = await publish(s, events)
        if n:
            wake_after_commit(s, self.wake)
        return n


class TimelinePublisher:
    """The journal's in-transaction hook: timeline events of published kinds become
    webhook events. Building the events never raises into the journal (a bug here must not
    stop the timeline): it is logged, rate-limited, and counted in :attr:`failures`."""

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self.wake = wake
        self.failures = 0
        self._refusals = RefusalLog(log, burst=5, window_s=60.0)

    async def __call__(self, s: AsyncSession, events: list[dict[str, Any]]) -> None:
        relevant = [e for e in events if e.get("kind") in TIMELINE]
        if not relevant:
            return
        subscriptions = await live_subscriptions(s)
        if not subscriptions:
            return
        facts = await self._facts(s, {str(e["call_id"]) for e in relevant})
        try:
            new = [w for e in relevant
                   if (w := from_timeline(e, facts.get(str(e["call_id"]), CallFacts())))]
        except Exception as exc:  # noqa: BLE001 - never into the journal
            self.failures += 1
            self._refusals.failed("webhook events of a journal batch", "journal", exc)
            return
        if await publish(s, new, subscriptions):
            wake_after_commit(s, self.wake)

    @staticmethod
    async def _facts(s: AsyncSession, call_ids: set[str]) -> Mapping[str, CallFacts]:
        rows = await s.execute(
            select(CallSession.id, CallSession.service_code, CallSession.customer_id,
                   User.username)
            .outerjoin(User, User.id == CallSession.agent_id)
            .where(CallSession.id.in_(call_ids)))
        return {cid: CallFacts(service, customer, agent)
                for cid, service, customer, agent in rows.all()}
