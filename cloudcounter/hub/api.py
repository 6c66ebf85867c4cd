"""HTTP API: login, service catalogue, demo tokens, call records for auditors."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from cloudcounter.agents import accounts
from cloudcounter.db import repo
from cloudcounter.db.models import Customer
from cloudcounter.errors import CloudCounterError, InvalidMessage, NotFound, Unauthenticated
from cloudcounter.hub.auth import StaffIdentity, mint_customer_token, mint_staff_token
from cloudcounter.hub.context import HubContext
from cloudcounter.hub.http_auth import LoginThrottle, require_staff
from cloudcounter.signaling.namespaces import SESSION_COOKIE
from cloudcounter.signaling.edge import schema_problems
from cloudcounter.signaling.schemas import PROTOCOL_TEXT, PROTOCOL_VERSION

CTX: web.AppKey[HubContext] = web.AppKey("ctx", HubContext)
THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("throttle", LoginThrottle)
AUDIT_ROLES = ("auditor", "admin")
routes = web.RouteTableDef()


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class DemoToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=40)


async def body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidMessage("body must be JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage("body does not match the schema",
                             problems=schema_problems(exc)) from None


def staff(request: web.Request, *roles: str) -> StaffIdentity:
    return require_staff(request, request.app[CTX].settings.secret_key, roles)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except CloudCounterError as exc:
        return web.json_response({"error": exc.to_dict()}, status=exc.http_status)
    except web.HTTPRequestEntityTooLarge:
        return web.json_response({"error": {"code": "message_too_large",
                                            "message": "request body too large"}}, status=413)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    analysis = request.app[CTX].analysis
    return web.json_response({"ok": True, "protocol": PROTOCOL_VERSION,
                              "protocol_version": PROTOCOL_TEXT,
                              "vision": analysis.state if analysis is not None else "off"})


@routes.get("/api/services")
async def services(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return web.json_response({"services": [s.to_dict() for s in ctx.services.values()]})


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    ctx, throttle = request.app[CTX], request.app[THROTTLE]
    req: Login = await body(request, Login)
    throttle.check(req.username)
    try:
        user = await accounts.authenticate(ctx.sm, req.username, req.password)
    except Unauthenticated:
        throttle.failed(req.username)
        raise
    throttle.succeeded(req.username)
    ident = accounts.identity(user)
    token = mint_staff_token(ctx.settings.secret_key, ident, ctx.settings.staff_token_ttl_s)
    resp = web.json_response({"token": token, "user": {
        "username": user.username, "role": user.role, "display_name": user.display_name,
        "skills": user.skill_codes}})
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict",
                    max_age=ctx.settings.staff_token_ttl_s, path="/",
                    secure=request.secure)
    return resp


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    resp = web.json_response({"ok": True})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    ident = staff(request, "agent", "auditor", "admin", "lead")
    return web.json_response({"username": ident.username, "role": ident.role,
                              "display_name": ident.display_name, "skills": list(ident.skills)})


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
    staff(request, "agent", "admin", "auditor")
    return web.json_response(await request.app[CTX].dispatcher.snapshot())
