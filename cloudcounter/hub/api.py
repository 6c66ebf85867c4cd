"""HTTP API: login, service catalogue, demo tokens, call records for auditors."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, ValidationError
from sqlalchemy import select

from cloudcounter.agents import accounts
from cloudcounter.db import repo
from cloudcounter.db.models import Customer
from cloudcounter.errors import (
    CloudCounterError, InvalidMessage, NotFound, RateLimited,
)
from cloudcounter.hub.auth import (
    StaffIdentity, mint_customer_token, mint_staff_token, verify_staff_token,
)
from cloudcounter.hub.context import CTX
from cloudcounter.hub.http_auth import (
    REFRESH_COOKIE, LoginGate, LoginThrottle, clear_session_cookies, client, current_staff,
    require_staff, set_session_cookies, token_from_request,
)
from cloudcounter.hub.middlewares import json_body
from cloudcounter.hub.settings import STAFF_ROLES
from cloudcounter.signaling.edge import schema_problems
from cloudcounter.signaling.schemas import (
    PROTOCOL_TEXT, PROTOCOL_VERSION, SUPPORTED_VERSIONS, Message,
)

__all__ = ["CTX", "routes"]
THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("throttle", LoginThrottle)
GATE: web.AppKey[LoginGate] = web.AppKey("login_gate", LoginGate)
AUDIT_ROLES = ("auditor", "admin")
routes = web.RouteTableDef()


class Login(Message):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    otp: str | None = Field(default=None, max_length=16)


class Refresh(Message):
    refresh_token: str | None = Field(default=None, max_length=128)


class DemoToken(Message):
    customer_id: str = Field(min_length=1, max_length=40)


async def body(request: web.Request, model: type[Message]) -> Any:
    data = await json_body(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage("body does not match the schema",
                             problems=schema_problems(exc)) from None


def staff(request: web.Request, *roles: str) -> StaffIdentity:
    return require_staff(request, roles)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    analysis = request.app[CTX].analysis
    return web.json_response({"ok": True, "protocol": PROTOCOL_VERSION,
                              "protocol_version": PROTOCOL_TEXT,
                              "protocols": sorted(SUPPORTED_VERSIONS),
                              "vision": analysis.state if analysis is not None else "off"})


@routes.get("/api/services")
async def services(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return web.json_response({"services": [s.to_dict() for s in ctx.services.values()]})


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    req: Login = await body(request, Login)
    who = client(request)
    security = ctx.security
    try:
        attempt = request.app[THROTTLE].begin(req.username, who.address)
    except RateLimited:
        security.event("login.throttled", "refused", "anonymous", who.address, req.username)
        raise
    try:
        user = await accounts.authenticate(ctx.sm, req.username, req.password,
                                           gate=request.app[GATE])
        await accounts.check_second_factor(
            ctx.sm, user, req.otp, user.role in ctx.settings.totp_required_roles)
    except CloudCounterError as exc:
        if exc.code in ("bad_credentials", "bad_otp"):
            attempt.failed()
            security.event("login.failed", "failed", "anonymous", who.address, req.username,
                           code=exc.code)
        else:  # busy, or a second factor still to come: not a judgement
            attempt.abandoned()
            if exc.code == "totp_enrolment_required":
                security.event("login.failed", "refused", "anonymous", who.address,
                               req.username, code=exc.code)
        raise
    except BaseException:
        attempt.abandoned()
        raise
    attempt.succeeded()
    grant = await security.sessions.open(user, who.address, who.user_agent)
    ident = grant.identity
    security.event("login.succeeded", "ok", ident.actor, who.address, ident.username,
                   ident.user_id, session=ident.session_id, second_factor=bool(req.otp))
    return session_response(request, ident, grant.refresh_token, grant.expires_at)


def session_response(request: web.Request, ident: StaffIdentity, refresh: str,
                     expires_at: float) -> web.Response:
    settings = request.app[CTX].settings
    token = mint_staff_token(settings.secret_key, ident, settings.staff_token_ttl_s)
    resp = web.json_response({
        "token": token, "expires_in_s": settings.staff_token_ttl_s, "refresh_token": refresh,
        "session_expires_at": int(expires_at), "user": user_view(ident)})
    set_session_cookies(resp, request, token, refresh, expires_at)
    return resp


def user_view(ident: StaffIdentity) -> dict[str, Any]:
    return {"username": ident.username, "role": ident.role, "display_name": ident.display_name,
            "skills": list(ident.skills)}


@routes.post("/api/session/refresh")
async def refresh_session(request: web.Request) -> web.Response:
    """A new access token (and refresh token) for a live session."""
    ctx = request.app[CTX]
    req: Refresh = await body(request, Refresh) if request.body_exists else Refresh()
    token = req.refresh_token or request.cookies.get(REFRESH_COOKIE, "")
    who = client(request)
    try:
        grant = await ctx.security.sessions.refresh(token)
    except CloudCounterError as exc:
        resp = web.json_response({"error": exc.to_dict()}, status=exc.http_status)
        clear_session_cookies(resp)
        ctx.security.refused(exc, "POST /api/session/refresh", "", who.address)
        return resp
    ctx.security.event("session.refreshed", "ok", grant.identity.actor, who.address,
                       grant.identity.session_id, grant.identity.user_id)
    return session_response(request, grant.identity, grant.refresh_token, grant.expires_at)


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    """Ends the session of the token presented, even an expired one (it stops working at
    once, everywhere)."""
    ctx = request.app[CTX]
    ident = current_staff(request)
    if ident is None:
        token, _ = token_from_request(request)
        try:
            ident = verify_staff_token(ctx.settings.secret_key, token, allow_expired=True) \
                if token else None
        except CloudCounterError:
            ident = None
    if ident is not None and ident.session_id:
        ended = await ctx.security.sessions.revoke(reason="logout", by=ident.actor,
                                                   session_id=ident.session_id)
        if ended:
            ctx.security.event("session.revoked", "ok", ident.actor, client(request).address,
                               ident.session_id, ident.user_id, reason="logout")
    resp = web.json_response({"ok": True})
    clear_session_cookies(resp)
    return resp


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    ident = staff(request, *STAFF_ROLES)
    return web.json_response(user_view(ident))


@routes.get("/api/demo/customers")
async def demo_customers(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if not ctx.settings.demo:
        raise NotFound("demo mode is off", code="demo_disabled")
    async with ctx.sm() as s:
        rows = (await s.scalars(select(Customer).order_by(Customer.name))).all()
    return web.json_response({"customers": [{"id": c.id, "name": c.name} for c in rows]})


@routes.post("/api/demo/customer-token")
async def demo_customer_token(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if not ctx.settings.demo:
        raise NotFound("demo mode is off", code="demo_disabled")
    req: DemoToken = await body(request, DemoToken)
    await repo.get_customer(ctx.sm, req.customer_id)
    from cloudcounter.hub.demo import DEMO_SUBJECTS
    token = mint_customer_token(ctx.settings.customer_token_secret, req.customer_id,
                                ctx.settings.customer_token_ttl_s,
                                subject=DEMO_SUBJECTS.get(req.customer_id))
    return web.json_response({"token": token})


@routes.get("/api/queue")
async def queue_snapshot(request: web.Request) -> web.Response:
    staff(request, "agent", "admin", "auditor", "lead")
    return web.json_response(await request.app[CTX].dispatcher.snapshot())
