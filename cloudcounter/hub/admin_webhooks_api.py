"""Administrators' HTTP API for webhook subscriptions and their delivery log
(docs/operations.md, "Webhooks"). Admins only; every change is an ``admin.*`` security
event in its transaction. Secrets are returned once: at creation and at rotation."""

from __future__ import annotations

from aiohttp import web

from cloudcounter.hub.admin import webhooks
from cloudcounter.hub.admin.schemas import DeliveryQuery, WebhookCreate, WebhookUpdate
from cloudcounter.hub.admin_api import admin, path_id, query
from cloudcounter.hub.api import body, staff
from cloudcounter.hub.context import CTX
from cloudcounter.webhooks import subscriptions
from cloudcounter.webhooks.events import DESCRIPTIONS, EventType

routes = web.RouteTableDef()


def _wake(request: web.Request):  # type: ignore[no-untyped-def]
    dispatcher = request.app[CTX].webhook_dispatcher
    return dispatcher.wake if dispatcher is not None else None


@routes.get("/api/admin/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    staff(request, "admin")
    return web.json_response({
        "webhooks": await subscriptions.listing(request.app[CTX].sm),
        "event_types": [{"type": t.value, "description": DESCRIPTIONS[t]}
                        for t in EventType if t is not EventType.WEBHOOK_TEST]})


@routes.post("/api/admin/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    who = admin(request)
    req: WebhookCreate = await body(request, WebhookCreate)
    ctx = request.app[CTX]
    hook, secret = await webhooks.create(ctx.sm, who, req, ctx.settings.webhook_allow_http)
    return web.json_response({"webhook": hook, "secret": secret}, status=201)


@routes.patch(r"/api/admin/webhooks/{webhook_id:\d+}")
async def update_webhook(request: web.Request) -> web.Response:
    who = admin(request)
    sub_id = path_id(request, "webhook_id")
    req: WebhookUpdate = await body(request, WebhookUpdate)
    ctx = request.app[CTX]
    return web.json_response({"webhook": await webhooks.update(
        ctx.sm, who, sub_id, req, ctx.settings.webhook_allow_http)})


@routes.delete(r"/api/admin/webhooks/{webhook_id:\d+}")
async def delete_webhook(request: web.Request) -> web.Response:
    who = admin(request)
    cancelled = await webhooks.delete(request.app[CTX].sm, who,
                                      path_id(request, "webhook_id"))
    return web.json_response({"deleted": True, "deliveries_cancelled": cancelled})


@routes.post(r"/api/admin/webhooks/{webhook_id:\d+}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    who = admin(request)
    secret = await webhooks.rotate_secret(request.app[CTX].sm, who,
                                          path_id(request, "webhook_id"))
    return web.json_response({"secret": secret, "previous_valid_for_s": int(
        subscriptions.ROTATION_GRACE.total_seconds())})


@routes.post(r"/api/admin/webhooks/{webhook_id:\d+}/test")
async def test_webhook(request: web.Request) -> web.Response:
    who = admin(request)
    event_id = await webhooks.send_test(request.app[CTX].sm, who,
                                        path_id(request, "webhook_id"), _wake(request))
    return web.json_response({"event_id": event_id}, status=202)


@routes.get(r"/api/admin/webhooks/{webhook_id:\d+}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    staff(request, "admin")
    q: DeliveryQuery = query(request, DeliveryQuery)
    return web.json_response({"deliveries": await subscriptions.deliveries(
        request.app[CTX].sm, path_id(request, "webhook_id"), state=q.state, limit=q.limit,
        before_id=q.before_id)})


@routes.get(r"/api/admin/webhooks/deliveries/{delivery_id:\d+}")
async def delivery(request: web.Request) -> web.Response:
    staff(request, "admin")
    return web.json_response({"delivery": await subscriptions.delivery_detail(
        request.app[CTX].sm, path_id(request, "delivery_id"))})


@routes.post(r"/api/admin/webhooks/deliveries/{delivery_id:\d+}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    who = admin(request)
    return web.json_response({"delivery": await webhooks.redeliver(
        request.app[CTX].sm, who, path_id(request, "delivery_id"), _wake(request))})
