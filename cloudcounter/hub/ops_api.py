"""Operations over HTTP: ``GET /metrics`` (Prometheus text format), protected by
``CLOUDCOUNTER_METRICS_TOKEN`` (``Authorization: Bearer ...``) and/or served on a separate
listener (``CLOUDCOUNTER_METRICS_ADDRESS``, an administration interface); off when neither
is set. And the wiring of metrics and webhook delivery into the app's lifecycle."""

from __future__ import annotations

import hmac
import logging
from typing import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from cloudcounter.errors import NotFound, Unauthenticated
from cloudcounter.hub.context import CTX, HubContext
from cloudcounter.hub.metrics import HubMetrics, LoopLagProbe
from cloudcounter.hub.settings import metrics_listen
from cloudcounter.webhooks.delivery import DeliveryConfig, WebhookDispatcher
from cloudcounter.webhooks.outbox import TimelinePublisher, WebhookPublisher

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
METRICS_CTX: web.AppKey[HubContext] = web.AppKey("metrics_ctx", HubContext)


def _authorized(ctx: HubContext, request: web.Request, listener: bool) -> None:
    token = ctx.settings.metrics_token
    if not token:
        if listener:
            return
        raise NotFound("metrics are off: set CLOUDCOUNTER_METRICS_TOKEN or "
                       "CLOUDCOUNTER_METRICS_ADDRESS", code="metrics_disabled")
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthenticated("a metrics token is required (Authorization: Bearer ...)")


async def _serve(ctx: HubContext, request: web.Request, listener: bool) -> web.Response:
    _authorized(ctx, request, listener)
    body = await ctx.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST,
                                            "Cache-Control": "no-store"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return await _serve(request.app[CTX], request, listener=False)


async def _listener_metrics(request: web.Request) -> web.Response:
    ctx = request.app[METRICS_CTX]
    try:
        return await _serve(ctx, request, listener=True)
    except Unauthenticated as exc:
        return web.json_response({"error": exc.to_dict()}, status=401)


def webhook_config(ctx: HubContext) -> DeliveryConfig:
    s = ctx.settings
    return DeliveryConfig(timeout_s=s.webhook_timeout_s, retry_base_s=s.webhook_retry_base_s,
                          retry_max_s=s.webhook_retry_max_s, max_age_s=s.webhook_max_age_s,
                          concurrency=s.webhook_concurrency,
                          per_endpoint=s.webhook_parallel_per_endpoint,
                          retention_days=s.webhook_retention_days, poll_s=s.webhook_poll_s)


def install(ctx: HubContext) -> None:
    """Create the metrics and the webhook publisher (before the journal starts)."""
    ctx.metrics = HubMetrics(ctx)
    ctx.journal.listeners.append(ctx.metrics.on_event)
    dispatcher = WebhookDispatcher(ctx.sm, webhook_config(ctx))
    dispatcher.on_attempt = ctx.metrics.on_webhook_attempt
    ctx.webhook_dispatcher = dispatcher
    ctx.webhooks = WebhookPublisher(ctx.sm, dispatcher.wake)
    ctx.webhook_timeline = TimelinePublisher(dispatcher.wake)
    ctx.journal.in_transaction = ctx.webhook_timeline


async def operations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Webhook delivery, the loop-lag probe, vision latency, and the metrics listener."""
    ctx = app[CTX]
    await ctx.webhook_dispatcher.start()
    probe = LoopLagProbe(ctx.metrics.loop_lag)
    probe.start()
    if ctx.analysis is not None:
        ctx.analysis.on_analysed = ctx.metrics.vision_latency.observe
    runner: web.AppRunner | None = None
    if ctx.settings.metrics_address:
        host, port = metrics_listen(ctx.settings.metrics_address)
        listener = web.Application()
        listener[METRICS_CTX] = ctx
        listener.router.add_get("/metrics", _listener_metrics)
        runner = web.AppRunner(listener, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("metrics on http://%s:%d/metrics", host, port)
    yield
    if runner is not None:
        await runner.cleanup()
    await probe.stop()
    await ctx.webhook_dispatcher.stop()
