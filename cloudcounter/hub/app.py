"""The app factory: ``create_app(settings)`` builds every resource; tests call it too.

Each resource opens and closes in its own cleanup context, in this order: database,
security log, journal, queue dispatcher, media gateway, analysis, session watcher.
Nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from pathlib import Path
from typing import AsyncIterator

import socketio
from aiohttp import web

from cloudcounter.agents.sessions import SessionStore
from cloudcounter.business.service import FlowService
from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.journal import DbJournal
from cloudcounter.db.security_log import SecurityLog
from cloudcounter.hub import admin_api, admin_catalogue_api, admin_webhooks_api, api, \
    middlewares, ops_api
from cloudcounter.hub.context import HubContext
from cloudcounter.hub.flows import SUPERVISOR_NS, HubFlowPort
from cloudcounter.hub.wallboard import Wallboard
from cloudcounter.recordings import recovery
from cloudcounter.queue.routing import NO_RULES, ServiceRules
from cloudcounter.hub.http_auth import LoginGate, LoginThrottle, authenticate
from cloudcounter.hub import appointments_api
from cloudcounter.hub.appointments import HubAppointments, appointments_ctx
from cloudcounter.hub.loans import HubLoans, loans_ctx
from cloudcounter.hub.media_gateway import HubMedia
from cloudcounter.hub.settings import Settings
from cloudcounter.hub.tasks import TaskRegistry
from cloudcounter.queue.dispatcher import Dispatcher, QueueConfig
from cloudcounter.queue.store import MemoryQueueStore
from cloudcounter.recordings import api as recording_api
from cloudcounter.signaling.clientinfo import networks
from cloudcounter.signaling.namespaces import (
    AgentNamespace, CustomerNamespace, SupervisorNamespace,
)
from cloudcounter.signaling.security import Security
from cloudcounter.signaling.fanout import make_manager
from cloudcounter.signaling.session_guard import SessionGuard
from cloudcounter.signaling.server import HubSocketServer, JsonPacket
from cloudcounter.signaling.notify import AGENT_NS, CUSTOMER_NS, SignalingListener

log = logging.getLogger(__name__)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
PAGES = {"/customer": "customer.html", "/agent": "agent.html", "/audit": "audit.html",
         "/lead": "lead.html", "/admin": "admin.html"}


def queue_config(s: Settings) -> QueueConfig:
    return QueueConfig(offer_timeout_s=s.offer_timeout_s, max_missed_offers=s.max_missed_offers,
                       wrap_up_s=s.wrap_up_s, customer_grace_s=s.customer_grace_s,
                       position_interval_s=s.position_interval_s,
                       exclusion_s=s.decline_exclusion_s, max_wait_s=s.max_queue_wait_s,
                       max_queue_length=s.max_queue_length,
                       callback_answer_s=s.callback_answer_s)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=256 * 1024, middlewares=[
        middlewares.security_headers, middlewares.errors, middlewares.limits,
        middlewares.same_origin, authenticate])
    app[SETTINGS] = settings
    manager = None
    if settings.socketio_manager == "redis":  # emits reach clients on every node
        manager = make_manager(settings.redis_url, settings.redis_max_connections,
                               settings.socketio_channel)
    sio = HubSocketServer(async_mode="aiohttp", serializer=JsonPacket, transports=["websocket"],
                               max_http_buffer_size=1_000_000, logger=False,
                               engineio_logger=False, ping_interval=10, ping_timeout=10,
                               client_manager=manager)
    sio.attach(app, socketio_path="socket.io")
    owned = TaskRegistry()
    sio.eio.start_background_task = owned.wrap(sio.eio.start_background_task)  # type: ignore
    engine = make_engine(settings.database_url)
    sm = make_sessionmaker(engine)
    # several hub nodes write one call's timeline: heads read, writers take turns
    journal = DbJournal(sm, shared=settings.socketio_manager == "redis")
    ctx = HubContext(settings=settings, sio=sio, sm=sm, journal=journal)
    ctx.security = Security(
        sessions=SessionStore(sm, session_ttl_s=settings.staff_session_ttl_s,
                              cache_s=settings.session_cache_s),
        log=SecurityLog(sm), trusted=networks(settings.trusted_proxies),
        max_connections_per_address=settings.max_connections_per_address,
        call_requests_per_customer_per_min=settings.call_requests_per_customer_per_min,
        call_requests_per_address_per_min=settings.call_requests_per_address_per_min)
    journal.on_dead_letter = lambda call_id, op, error: ctx.security.event(
        "journal.dead_letter", "failed", "system", target=call_id, op=op, error=error)
    app[api.CTX] = ctx
    app[api.THROTTLE] = LoginThrottle()
    app[api.GATE] = LoginGate(settings.login_concurrency, settings.login_queue)
    sio.register_namespace(CustomerNamespace(CUSTOMER_NS, ctx))
    sio.register_namespace(AgentNamespace(AGENT_NS, ctx))
    supervisors = SupervisorNamespace(SUPERVISOR_NS, ctx)
    sio.register_namespace(supervisors)
    ctx.wallboard = Wallboard(ctx)
    journal.listeners.append(ctx.wallboard.on_event)
    ctx.flows = FlowService(sm, HubFlowPort(ctx))
    ctx.loans = HubLoans(ctx)  # the car-loan interview and the credit system
    ctx.appointments = HubAppointments(ctx)
    ops_api.install(ctx)  # metrics (a journal listener) and webhooks (the journal's hook)
    app[admin_catalogue_api.ENROLLER] = admin_catalogue_api.Enroller()

    async def database(app: web.Application) -> AsyncIterator[None]:
        await ctx.load_services()
        yield
        await engine.dispose()

    async def security_log_ctx(app: web.Application) -> AsyncIterator[None]:
        await ctx.security.log.start()
        yield
        await ctx.security.log.stop()

    async def journal_ctx(app: web.Application) -> AsyncIterator[None]:
        await journal.start()
        yield
        await journal.stop()

    async def session_watch_ctx(app: web.Application) -> AsyncIterator[None]:
        # sockets of a revoked session are told and closed: at once for a revocation in
        # this process, within the interval for one made elsewhere (CLI, another node)
        guards = {name: ns for name, ns in sio.namespace_handlers.items()
                  if isinstance(ns, SessionGuard)}
        wakes = {name: asyncio.Event() for name in guards}  # one each: each clears its own

        def revoked(ids: set[str], reason: str) -> None:
            for wake in wakes.values():
                wake.set()
        ctx.security.sessions.listeners.append(revoked)
        tasks = [asyncio.create_task(ns.watch_sessions(settings.session_check_interval_s,
                                                       wakes[name]),
                                     name=f"session-watch{name}")
                 for name, ns in guards.items()]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def recovery_ctx(app: web.Application) -> AsyncIterator[None]:
        # what a killed hub left open: its calls end now (before this hub takes calls), its
        # recordings are finalized in the background (cloudcounter.recordings.recovery)
        await recovery.end_open_calls(sm, journal)
        task = asyncio.create_task(recovery.finalize_open_recordings(
            sm, journal, settings.at_rest_key_bytes), name="recordings-recovery")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def queue_ctx(app: web.Application) -> AsyncIterator[None]:
        def rules(service: str) -> tuple[ServiceRules, float]:
            svc = ctx.services.get(service)  # read at routing time: edits apply at once
            return (svc.routing, float(svc.target_answer_s)) if svc else (NO_RULES, 60.0)
        ctx.dispatcher = Dispatcher(MemoryQueueStore(), SignalingListener(ctx), journal,
                                    queue_config(settings), rules=rules)
        await ctx.dispatcher.start()
        yield
        await ctx.dispatcher.stop()

    async def flows_ctx(app: web.Application) -> AsyncIterator[None]:
        await ctx.flows.start()
        yield
        await ctx.flows.stop()

    async def media_ctx(app: web.Application) -> AsyncIterator[None]:
        if settings.media_workers > 0 or settings.media_worker_redis:
            async with media_workers(ctx):  # issue 16: media on worker processes
                yield
            return
        media = HubMedia(ctx)
        ctx.media = media
        yield
        await media.stop()

    async def wallboard_ctx(app: web.Application) -> AsyncIterator[None]:
        ctx.wallboard.start(supervisors.push_wallboard, settings.wallboard_interval_s)
        yield
        await ctx.wallboard.stop()

    async def analysis_ctx(app: web.Application) -> AsyncIterator[None]:
        # Identity and liveness checks in calls; the vision pool starts with the first
        # call's media. CLOUDCOUNTER_VISION_WORKERS=0 turns analysis off.
        from cloudcounter.hub.analysis.manager import AnalysisManager

        manager = AnalysisManager(ctx) if settings.vision_workers > 0 else None
        ctx.analysis = manager
        if manager is not None:
            getattr(ctx.media, "listeners", []).append(manager)
            if settings.vision_prestart:
                manager.ensure_pool()  # its workers load the models in the background
        yield
        if manager is not None:
            await manager.stop()

    async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
        from cloudcounter.hub import cluster
        ctx.cluster = await cluster.start(ctx)  # one node: local presence, no Redis
        yield
        await ctx.cluster.stop()

    async def fanout_ctx(app: web.Application) -> AsyncIterator[None]:
        # listen to the other nodes' emits from the start (python-socketio would start at
        # the first connection), and close the Redis client at the end
        if manager is not None:
            sio.manager_initialized = True
            manager.initialize()
        yield
        if manager is not None:
            await manager.close()

    app.cleanup_ctx.extend([database, security_log_ctx, journal_ctx, recovery_ctx, flows_ctx,
                            loans_ctx,
                            appointments_ctx, queue_ctx, media_ctx, wallboard_ctx,
                            analysis_ctx, ops_api.operations_ctx,
                            admin_catalogue_api.enroller_ctx, session_watch_ctx, fanout_ctx,
                            cluster_ctx])
    from cloudcounter.audit.jobs import supervision_ctx  # post-event supervision's job
    app.cleanup_ctx.append(supervision_ctx)
    app.on_startup.append(_freeze_startup_objects)
    app.on_cleanup.append(_unfreeze)
    app.on_shutdown.append(_disconnect_all(sio, owned))
    app.add_routes(api.routes)
    app.add_routes(admin_api.routes)
    app.add_routes(admin_catalogue_api.routes)
    app.add_routes(admin_webhooks_api.routes)
    app.add_routes(ops_api.routes)
    app.add_routes(recording_api.routes)
    app.add_routes(appointments_api.routes)  # the roster of loan agents
    app.add_routes(media_worker_routes)  # the media workers: list, drain (admins)
    from cloudcounter.audit import api as audit_api  # post-event supervision
    app.add_routes(audit_api.all_routes())
    _static(app, settings)
    return app


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move everything allocated at start-up (aiortc, OpenCV, dlib, SQLAlchemy...) out of
    the cyclic garbage collector's sight: full collections then scan only what calls
    allocate, instead of pausing the event loop for a walk over the whole heap."""
    gc.collect()
    gc.freeze()


async def _unfreeze(app: web.Application) -> None:
    gc.unfreeze()  # an app made by a test must not pin its objects for the whole run


def _disconnect_all(sio: socketio.AsyncServer, owned: TaskRegistry):  # type: ignore[no-untyped-def]
    async def shutdown(app: web.Application) -> None:
        for namespace in ("/customer", "/agent", SUPERVISOR_NS):
            for sid in list(sio.manager.get_participants(namespace, None)):
                await sio.disconnect(sid[0], namespace=namespace)
        await sio.shutdown()
        await owned.cancel_all()
    return shutdown


def _static(app: web.Application, settings: Settings) -> None:
    web_dir = Path(settings.web_dir).resolve()
    vendor = Path(settings.node_modules_dir).resolve() / "socket.io-client" / "dist"

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/customer")

    def page(name: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.StreamResponse:
            path = web_dir / name
            if not path.is_file():
                raise web.HTTPNotFound(text="web client not installed")
            return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
        return handler

    async def socketio_client(request: web.Request) -> web.StreamResponse:
        path = vendor / "socket.io.min.js"
        if not path.is_file():
            raise web.HTTPNotFound(text="run `make setup`: npm dependencies are missing")
        return web.FileResponse(path)

    app.router.add_get("/", root)
    for route, name in PAGES.items():
        app.router.add_get(route, page(name))
    app.router.add_get("/vendor/socket.io.min.js", socketio_client)
    if web_dir.is_dir():
        app.router.add_static("/static/", web_dir, follow_symlinks=False)


# -- media worker processes (issue 16; docs/media.md, "Media workers") ---------------------
media_worker_routes = web.RouteTableDef()


@contextlib.asynccontextmanager
async def media_workers(ctx: HubContext) -> AsyncIterator[None]:
    """The worker pool, its local processes (``media_workers``) and, with
    ``media_worker_redis``, the workers registered on Redis; the gateway over them."""
    from cloudcounter.hub.media_gateway import WorkerMedia
    from cloudcounter.media.workers.supervisor import Supervisor, WorkerPool

    s = ctx.settings
    pool = WorkerPool(s.media_worker_capacity, s.media_worker_lease_s)
    media = WorkerMedia(ctx, pool)
    ctx.media = media
    supervisor = Supervisor(pool, s.media_workers, s.node_id, s.media_worker_capacity)
    discovery = None
    if s.media_worker_redis:
        from cloudcounter.media.workers.redis_transport import RedisDiscovery
        discovery = RedisDiscovery(pool, s.redis_url, f"{s.node_id}-hub", s.media_worker_lease_s)
        await discovery.start()
    await supervisor.start()
    try:
        yield
    finally:
        await media.stop()
        await supervisor.stop()
        if discovery is not None:
            await discovery.stop()
        await pool.stop()


@media_worker_routes.get("/api/admin/media-workers")
async def list_media_workers(request: web.Request) -> web.Response:
    api.staff(request, "admin")
    pool = getattr(request.app[api.CTX].media, "pool", None)
    return web.json_response({"workers": pool.snapshot() if pool is not None else []})


@media_worker_routes.post(r"/api/admin/media-workers/{worker:[A-Za-z0-9_./-]{1,120}}/drain")
async def drain_media_worker(request: web.Request) -> web.Response:
    from cloudcounter.errors import NotFound

    who = api.staff(request, "admin")
    pool = getattr(request.app[api.CTX].media, "pool", None)
    if pool is None:
        raise NotFound("this hub runs no media workers", code="unknown_worker")
    worker = request.match_info["worker"]
    calls = await pool.drain(worker)
    log.warning("media worker %s draining (%d call(s) left), asked by %s", worker, calls,
                who.actor)
    return web.json_response({"worker": worker, "draining": True, "calls": calls})
