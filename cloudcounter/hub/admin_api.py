"""Administrators' HTTP API: staff accounts (disable, enable, end sessions, role), the
security event log and the journal's dead letters. Admins only; every action is a
security event (``admin.*``) with who, what and from where."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from aiohttp import web
from pydantic import Field, ValidationError
from sqlalchemy import func, select

from cloudcounter.agents import accounts
from cloudcounter.db import journal, security_log
from cloudcounter.db.models import Role, User
from cloudcounter.db.security_models import StaffSession
from cloudcounter.errors import Conflict, InvalidMessage
from cloudcounter.hub.api import body, staff
from cloudcounter.hub.context import CTX
from cloudcounter.hub.http_auth import client
from cloudcounter.signaling.edge import schema_problems
from cloudcounter.signaling.schemas import Message

routes = web.RouteTableDef()
USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"


class RoleChange(Message):
    role: Role


class EventQuery(Message):
    kind: str | None = Field(default=None, max_length=48, pattern=r"^[a-z_.]+\*?$")
    actor: str | None = Field(default=None, max_length=80)
    outcome: str | None = Field(default=None, pattern=r"^(ok|refused|failed)$")
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    before_id: int | None = Field(default=None, ge=1)


def _username(request: web.Request) -> str:
    name = request.match_info["username"]
    if not re.fullmatch(USERNAME, name):
        raise InvalidMessage("not a username", code="unknown_user")
    return name


@routes.get("/api/admin/users")
async def list_users(request: web.Request) -> web.Response:
    staff(request, "admin")
    ctx = request.app[CTX]
    now = datetime.now(timezone.utc)
    async with ctx.sm() as s:
        users = (await s.scalars(select(User).order_by(User.username))).all()
        live = dict((await s.execute(
            select(StaffSession.user_id, func.count()).where(
                StaffSession.revoked_at.is_(None), StaffSession.expires_at > now)
            .group_by(StaffSession.user_id))).all())
    return web.json_response({"users": [{
        "username": u.username, "display_name": u.display_name, "role": u.role,
        "disabled": u.disabled, "skills": u.skill_codes, "totp_enrolled": bool(u.totp_secret),
        "live_sessions": int(live.get(u.id, 0))} for u in users]})


async def _account_action(request: web.Request, action: str) -> web.Response:
    admin = staff(request, "admin")
    ctx = request.app[CTX]
    username = _username(request)
    sessions = ctx.security.sessions
    if action == "disable":
        if username == admin.username:
            raise Conflict("an administrator cannot disable their own account",
                           code="cannot_disable_self")
        user = await accounts.set_disabled(ctx.sm, username, True)
        ended = await sessions.revoke(reason="account_disabled", by=admin.actor,
                                      user_id=user.id)
    elif action == "enable":
        user = await accounts.set_disabled(ctx.sm, username, False)
        sessions.invalidate_user(user.id, "account_enabled")
        ended = set()
    elif action == "end-sessions":
        user = await accounts.get_account(ctx.sm, username)
        ended = await sessions.revoke(reason="ended_by_admin", by=admin.actor,
                                      user_id=user.id)
    else:
        data: RoleChange = await body(request, RoleChange)
        user = await accounts.set_role(ctx.sm, username, data.role)
        sessions.invalidate_user(user.id, "role_changed")
        ended = set()
    ctx.security.event(f"admin.{action.replace('-', '_')}", "ok", admin.actor,
                       client(request).address, username, admin.user_id,
                       sessions_ended=len(ended), role=user.role)
    return web.json_response({"username": user.username, "role": user.role,
                              "disabled": user.disabled, "sessions_ended": len(ended)})


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


@routes.get("/api/admin/security-events")
async def security_events(request: web.Request) -> web.Response:
    admin = staff(request, "admin")
    ctx = request.app[CTX]
    try:
        q = EventQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise InvalidMessage("bad query", code="invalid_query",
                             problems=schema_problems(exc)) from None
    await ctx.security.log.flush()  # what just happened is in the answer
    events = await security_log.query(ctx.sm, kind=q.kind, actor=q.actor, outcome=q.outcome,
                                      since=q.since, until=q.until, limit=q.limit,
                                      before_id=q.before_id)
    ctx.security.event("admin.security_events_read", "ok", admin.actor,
                       client(request).address, "security_events", admin.user_id,
                       query=q.model_dump(mode="json", exclude_none=True), returned=len(events))
    return web.json_response({"events": events})


@routes.get("/api/admin/journal/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    staff(request, "admin")
    ctx = request.app[CTX]
    return web.json_response({"dead_letters": await journal.dead_letters(ctx.sm)})
