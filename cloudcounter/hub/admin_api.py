"""Administrators' HTTP API: staff accounts, the security event log (the admin audit log is
its ``admin.*`` events) and the journal's dead letters. Admins only; each change and its
``admin.*`` security event commit together (:mod:`cloudcounter.hub.admin`). The service
catalogue and customers are in :mod:`cloudcounter.hub.admin_catalogue_api`, webhooks in
:mod:`cloudcounter.hub.admin_webhooks_api`. Documented in docs/api.md and docs/openapi.yaml.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field, ValidationError

from cloudcounter.db import journal, security_log
from cloudcounter.errors import InvalidMessage, NotFound
from cloudcounter.hub.admin import users
from cloudcounter.hub.admin.audit import Actor
from cloudcounter.hub.admin.schemas import PasswordSet, RoleChange, UserCreate, UserUpdate
from cloudcounter.hub.api import body, staff
from cloudcounter.hub.context import CTX
from cloudcounter.hub.http_auth import client
from cloudcounter.signaling.edge import schema_problems
from cloudcounter.signaling.schemas import Message

routes = web.RouteTableDef()
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"
MAX_ID = 2**31 - 1


class EventQuery(Message):
    kind: str | None = Field(default=None, max_length=48, pattern=r"^[a-z_.]+\*?$")
    actor: str | None = Field(default=None, max_length=80)
    outcome: str | None = Field(default=None, pattern=r"^(ok|refused|failed)$")
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    before_id: int | None = Field(default=None, ge=1)


def admin(request: web.Request) -> Actor:
    """The signed-in administrator, as the actor of a change."""
    ident = staff(request, "admin")
    return Actor(ident.actor, client(request).address, ident.user_id, ident.username)


def query(request: web.Request, model: type[Message]) -> Any:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise InvalidMessage("bad query", code="invalid_query",
                             problems=schema_problems(exc)) from None


def path_id(request: web.Request, name: str) -> int:
    value = int(request.match_info[name])  # the route's pattern is \d+
    if not 0 < value <= MAX_ID:
        raise NotFound(f"no such {name.replace('_', ' ')}", code="not_found")
    return value


def path_text(request: web.Request, name: str, pattern: str, code: str) -> str:
    value = request.match_info[name]
    if not re.fullmatch(pattern, value):
        raise NotFound(f"no such {name.replace('_', ' ')}", code=code)
    return value


def _username(request: web.Request) -> str:
    return path_text(request, "username", USERNAME, "unknown_user")


# -- staff accounts ------------------------------------------------------------------
@routes.get("/api/admin/users")
async def list_users(request: web.Request) -> web.Response:
    staff(request, "admin")
    return web.json_response({"users": await users.list_users(request.app[CTX].sm)})


@routes.post("/api/admin/users")
async def create_user(request: web.Request) -> web.Response:
    who = admin(request)
    req: UserCreate = await body(request, UserCreate)
    user, password = await users.create_user(request.app[CTX].sm, who, req)
    return web.json_response({"user": user, **({"password": password} if password else {})},
                             status=201)


@routes.patch("/api/admin/users/{username}")
async def update_user(request: web.Request) -> web.Response:
    who = admin(request)
    username = _username(request)
    req: UserUpdate = await body(request, UserUpdate)
    ctx = request.app[CTX]
    return web.json_response({"user": await users.update_user(
        ctx.sm, who, username, req, ctx.security.sessions)})


async def _account_action(request: web.Request, action: str) -> web.Response:
    who = admin(request)
    ctx = request.app[CTX]
    username = _username(request)
    sessions = ctx.security.sessions
    ended = 0
    if action in ("disable", "enable"):
        user, ended = await users.set_disabled(ctx.sm, who, username, action == "disable",
                                               sessions)
    elif action == "end-sessions":
        user, ended = await users.end_sessions(ctx.sm, who, username, sessions)
    else:
        data: RoleChange = await body(request, RoleChange)
        user = await users.update_user(ctx.sm, who, username, UserUpdate(role=data.role),
                                       sessions, kind="admin.role")
    return web.json_response({"username": user["username"], "role": user["role"],
                              "disabled": user["disabled"], "sessions_ended": ended,
                              "user": user})


@routes.post("/api/admin/users/{username}/disable")
async def disable_user(request: web.Request) -> web.Response:
    return await _account_action(request, "disable")


@routes.post("/api/admin/users/{username}/enable")
async def enable_user(request: web.Request) -> web.Response:
    return await _account_action(request, "enable")


@routes.post("/api/admin/users/{username}/end-sessions")
async def end_sessions(request: web.Request) -> web.Response:
    return await _account_action(request, "end-sessions")


@routes.post("/api/admin/users/{username}/role")
async def change_role(request: web.Request) -> web.Response:
    return await _account_action(request, "role")


@routes.post("/api/admin/users/{username}/password")
async def set_password(request: web.Request) -> web.Response:
    """Set (or, without one, generate) a new password; the account's sessions end."""
    who = admin(request)
    username = _username(request)
    req: PasswordSet = await body(request, PasswordSet) if request.body_exists \
        else PasswordSet()
    ctx = request.app[CTX]
    user, generated, ended = await users.set_password(ctx.sm, who, username, req.password,
                                                      ctx.security.sessions)
    return web.json_response({"user": user, "sessions_ended": ended,
                              **({"password": generated} if generated else {})})


@routes.post("/api/admin/users/{username}/totp")
async def enrol_totp(request: web.Request) -> web.Response:
    """A new TOTP secret for the account (shown once: hand it over out of band)."""
    who = admin(request)
    user, secret, uri = await users.enrol_totp(request.app[CTX].sm, who, _username(request))
    return web.json_response({"user": user, "secret": secret, "uri": uri})


# -- the security event log (and the admin audit log) -----------------------------------
@routes.get("/api/admin/security-events")
async def security_events(request: web.Request) -> web.Response:
    ident = staff(request, "admin")
    ctx = request.app[CTX]
    q: EventQuery = query(request, EventQuery)
    await ctx.security.log.flush()  # what just happened is in the answer
    events = await security_log.query(ctx.sm, kind=q.kind, actor=q.actor, outcome=q.outcome,
                                      since=q.since, until=q.until, limit=q.limit,
                                      before_id=q.before_id)
    ctx.security.event("admin.security_events_read", "ok", ident.actor,
                       client(request).address, "security_events", ident.user_id,
                       query=q.model_dump(mode="json", exclude_none=True), returned=len(events))
    return web.json_response({"events": events})


@routes.get("/api/admin/journal/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    staff(request, "admin")
    ctx = request.app[CTX]
    return web.json_response({"dead_letters": await journal.dead_letters(ctx.sm)})
