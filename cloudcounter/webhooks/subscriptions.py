"""Webhook subscriptions and their delivery log: the operations behind the admin API and
the CLI. Each takes the caller's session, so that the change and its ``admin.*`` security
event commit together."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.db.ops_models import (
    WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription,
)
from cloudcounter.db.outbox import CANCELLED, FAILED, PENDING, aware
from cloudcounter.errors import InvalidMessage, InvalidState, NotFound
from cloudcounter.webhooks.events import EventType, NewEvent, valid_pattern
from cloudcounter.webhooks.outbox import publish
from cloudcounter.webhooks.signing import new_secret

ROTATION_GRACE = timedelta(hours=24)


def _iso(v: datetime | None) -> str | None:
    return aware(v).isoformat() if v is not None else None


def check_url(url: str, allow_http: bool = False) -> str:
    """An absolute ``https://`` URL (``http://`` only to a loopback address, or with
    ``CLOUDCOUNTER_WEBHOOK_ALLOW_HTTP``), without credentials or a fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidMessage("the URL is malformed", code="invalid_url") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidMessage("the URL must be absolute: https://host/path", code="invalid_url")
    if parts.username or parts.password:
        raise InvalidMessage("put no credentials in the URL: deliveries are signed",
                             code="invalid_url")
    if parts.fragment:
        raise InvalidMessage("the URL must not have a #fragment", code="invalid_url")
    if parts.scheme == "http" and not allow_http and not _loopback(host):
        raise InvalidMessage("webhooks are sent over https (http only to this machine, or "
                             "with CLOUDCOUNTER_WEBHOOK_ALLOW_HTTP)", code="invalid_url")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_types(types: list[str]) -> list[str]:
    unknown = [t for t in types if not valid_pattern(t)]
    if unknown or not types:
        raise InvalidMessage(
            f"unknown event type(s) {', '.join(unknown)}" if unknown else
            "choose at least one event type", code="unknown_event_type",
            known=[t.value for t in EventType if t is not EventType.WEBHOOK_TEST])
    return sorted(set(types))


def view(row: WebhookSubscription, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret."""
    return {"id": row.id, "name": row.name, "url": row.url, "event_types": list(row.event_types),
            "active": row.active, "created_at": _iso(row.created_at),
            "created_by": row.created_by, "updated_at": _iso(row.updated_at),
            "health": {"consecutive_failures": row.consecutive_failures,
                       "retry_at": _iso(row.retry_at),
                       "last_success_at": _iso(row.last_success_at),
                       "last_failure_at": _iso(row.last_failure_at),
                       "last_error": row.last_error},
            "rotating": row.previous_secret_until is not None
            and aware(row.previous_secret_until) > datetime.now(timezone.utc),
            "deliveries": counts or {}}


async def get(s: AsyncSession, sub_id: int) -> WebhookSubscription:
    row = await s.get(WebhookSubscription, sub_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no webhook subscription {sub_id}", code="unknown_webhook")
    return row


async def create(s: AsyncSession, *, name: str, url: str, event_types: list[str],
                 actor: str, active: bool = True) -> tuple[WebhookSubscription, str]:
    secret = new_secret()
    row = WebhookSubscription(name=name, url=url, event_types=check_types(event_types),
                              secret=secret, active=active, created_by=actor[:80],
                              created_at=datetime.now(timezone.utc), consecutive_failures=0)
    s.add(row)
    await s.flush()
    return row, secret


async def change(s: AsyncSession, sub_id: int, **values: Any) -> WebhookSubscription:
    row = await get(s, sub_id)
    if "event_types" in values:
        values["event_types"] = check_types(values["event_types"])
    for key, value in values.items():
        setattr(row, key, value)
    if values.get("active") is True or "url" in values:  # a fresh start for the endpoint
        row.consecutive_failures, row.retry_at = 0, None
    row.updated_at = datetime.now(timezone.utc)
    await s.flush()
    return row


async def delete(s: AsyncSession, sub_id: int) -> int:
    """Hide the subscription and cancel its pending deliveries; returns how many."""
    row = await get(s, sub_id)
    row.deleted_at = row.updated_at = datetime.now(timezone.utc)
    row.active = False
    done = await s.execute(update(WebhookDelivery).where(
        WebhookDelivery.subscription_id == sub_id, WebhookDelivery.state == PENDING)
        .values(state=CANCELLED, lease_until=None, last_error="subscription deleted"))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


async def rotate_secret(s: AsyncSession, sub_id: int) -> str:
    """A new secret; the previous one also signs for 24 hours (receivers switch over)."""
    row = await get(s, sub_id)
    now = datetime.now(timezone.utc)
    row.previous_secret, row.previous_secret_until = row.secret, now + ROTATION_GRACE
    row.secret = new_secret()
    row.updated_at = now
    await s.flush()
    return row.secret


async def send_test(s: AsyncSession, sub_id: int, actor: str) -> str:
    """A ``webhook.test`` event to this subscription only; returns its event id."""
    row = await get(s, sub_id)
    event = NewEvent(EventType.WEBHOOK_TEST.value, {"subscription_id": row.id,
                                                    "requested_by": actor})
    await publish(s, [event], subscriptions=[(row.id, [])], only=row.id)
    return event.id


async def listing(sm: async_sessionmaker) -> list[dict[str, Any]]:
    async with sm() as s:
        rows = (await s.scalars(select(WebhookSubscription)
                                .where(WebhookSubscription.deleted_at.is_(None))
                                .order_by(WebhookSubscription.id))).all()
        counts: dict[int, dict[str, int]] = {}
        for sub_id, state, n in (await s.execute(
                select(WebhookDelivery.subscription_id, WebhookDelivery.state, func.count())
                .where(WebhookDelivery.state.in_((PENDING, FAILED)))
                .group_by(WebhookDelivery.subscription_id, WebhookDelivery.state))).all():
            counts.setdefault(int(sub_id), {})[str(state)] = int(n)
    return [view(r, {"pending": counts.get(r.id, {}).get(PENDING, 0),
                     "failed": counts.get(r.id, {}).get(FAILED, 0)}) for r in rows]


def delivery_view(d: WebhookDelivery, e: WebhookEvent) -> dict[str, Any]:
    return {"delivery_id": d.id, "subscription_id": d.subscription_id, "event_id": e.public_id,
            "event_type": e.type, "call_id": e.call_id, "state": d.state,
            "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
            "created_at": _iso(d.created_at), "delivered_at": _iso(d.delivered_at),
            "next_attempt_at": _iso(d.next_attempt_at) if d.state == PENDING else None}


async def deliveries(sm: async_sessionmaker, sub_id: int, *, state: str | None = None,
                     limit: int = 50, before_id: int | None = None) -> list[dict[str, Any]]:
    async with sm() as s:
        await get(s, sub_id)
        stmt = (select(WebhookDelivery, WebhookEvent)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.subscription_id == sub_id))
        if state:
            stmt = stmt.where(WebhookDelivery.state == state)
        if before_id:
            stmt = stmt.where(WebhookDelivery.id < before_id)
        rows = (await s.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit))).all()
    return [delivery_view(d, e) for d, e in rows]


async def delivery_detail(sm: async_sessionmaker, delivery_id: int) -> dict[str, Any]:
    async with sm() as s:
        found = (await s.execute(select(WebhookDelivery, WebhookEvent)
                                 .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                                 .where(WebhookDelivery.id == delivery_id))).first()
        if found is None:
            raise NotFound(f"no delivery {delivery_id}", code="unknown_delivery")
        d, e = found
        attempts = (await s.scalars(select(WebhookAttempt)
                                    .where(WebhookAttempt.delivery_id == delivery_id)
                                    .order_by(WebhookAttempt.id))).all()
    return {**delivery_view(d, e), "payload": json.loads(e.body),
            "log": [{"attempt": a.attempt, "at": _iso(a.at), "status": a.status,
                     "error": a.error, "duration_ms": a.duration_ms, "response": a.response}
                    for a in attempts]}


async def redeliver(s: AsyncSession, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now (given up, cancelled, or delivered and lost by the
    receiver: it dedupes by the event id)."""
    d = await s.get(WebhookDelivery, delivery_id)
    if d is None:
        raise NotFound(f"no delivery {delivery_id}", code="unknown_delivery")
    if d.state == PENDING:
        raise InvalidState("this delivery is still being tried", code="delivery_pending")
    sub = await s.get(WebhookSubscription, d.subscription_id)
    if sub is None or sub.deleted_at is not None:
        raise InvalidState("its subscription was deleted", code="unknown_webhook")
    now = datetime.now(timezone.utc)
    d.state, d.next_attempt_at, d.lease_until = PENDING, now, None
    d.created_at = now  # a new period before it is given up again
    sub.retry_at = None  # now, even if the endpoint was backing off (a probe)
    await s.flush()
    return d

