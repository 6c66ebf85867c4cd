"""Webhook subscriptions as administrators manage them (API, console, CLI)."""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.hub.admin.audit import Actor, audited
from cloudcounter.hub.admin.schemas import WebhookCreate, WebhookUpdate
from cloudcounter.webhooks import subscriptions as subs


async def create(sm: async_sessionmaker, who: Actor, req: WebhookCreate, allow_http: bool
                 ) -> tuple[dict[str, Any], str]:
    """The subscription and its secret (shown once)."""
    url = subs.check_url(req.url, allow_http)
    async with audited(sm, who, "admin.webhook_created") as a:
        row, secret = await subs.create(a.session, name=req.name, url=url,
                                        event_types=list(req.event_types), actor=who.actor,
                                        active=req.active)
        a.target = f"webhook:{row.id}"
        a.details = {"name": row.name, "url": row.url, "event_types": row.event_types}
    return subs.view(row), secret


async def update(sm: async_sessionmaker, who: Actor, sub_id: int, req: WebhookUpdate,
                 allow_http: bool) -> dict[str, Any]:
    values = req.model_dump(exclude_none=True)
    if "url" in values:
        subs.check_url(values["url"], allow_http)
    async with audited(sm, who, "admin.webhook_updated", f"webhook:{sub_id}") as a:
        row = await subs.change(a.session, sub_id, **values)
        a.details = {"changes": values}
    return subs.view(row)


async def delete(sm: async_sessionmaker, who: Actor, sub_id: int) -> int:
    async with audited(sm, who, "admin.webhook_deleted", f"webhook:{sub_id}") as a:
        cancelled = await subs.delete(a.session, sub_id)
        a.details = {"deliveries_cancelled": cancelled}
    return cancelled


async def rotate_secret(sm: async_sessionmaker, who: Actor, sub_id: int) -> str:
    async with audited(sm, who, "admin.webhook_secret_rotated", f"webhook:{sub_id}") as a:
        secret = await subs.rotate_secret(a.session, sub_id)
        a.details = {"previous_valid_h": int(subs.ROTATION_GRACE.total_seconds() // 3600)}
    return secret


async def send_test(sm: async_sessionmaker, who: Actor, sub_id: int,
                    wake: Callable[[], None] | None) -> str:
    async with audited(sm, who, "admin.webhook_tested", f"webhook:{sub_id}") as a:
        event_id = await subs.send_test(a.session, sub_id, who.actor)
        a.details = {"event_id": event_id}
    if wake is not None:
        wake()
    return event_id


async def redeliver(sm: async_sessionmaker, who: Actor, delivery_id: int,
                    wake: Callable[[], None] | None) -> dict[str, Any]:
    async with audited(sm, who, "admin.webhook_redelivered", f"delivery:{delivery_id}") as a:
        d = await subs.redeliver(a.session, delivery_id)
        a.details = {"subscription_id": d.subscription_id}
    if wake is not None:
        wake()
    return await subs.delivery_detail(sm, delivery_id)
