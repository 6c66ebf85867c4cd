"""Administrators' HTTP API for the roster of loan agents (interview appointments'
capacity). Admins only; every change is an ``admin.roster_*`` security event in its
transaction."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field, StringConstraints

from cloudcounter.business.appointments import parse_day, parse_hhmm
from cloudcounter.hub.admin.audit import audited
from cloudcounter.hub.admin_api import admin, path_text, query
from cloudcounter.hub.api import body, staff
from cloudcounter.hub.context import CTX
from cloudcounter.signaling.schemas import Message

routes = web.RouteTableDef()
DAY = r"^\d{4}-\d\d-\d\d$"
USERNAME = r"^[A-Za-z0-9_.-]{1,64}$"
Day = Annotated[str, StringConstraints(pattern=DAY)]
HhMm = Annotated[str, StringConstraints(pattern=r"^\d\d:\d\d$")]


class RosterQuery(Message):
    day: Day | None = None
    days: Annotated[int, Field(ge=1, le=31)] = 7


class ShiftSet(Message):
    username: Annotated[str, StringConstraints(pattern=USERNAME)]
    day: Day
    start: HhMm
    end: HhMm


@routes.get("/api/admin/roster")
async def get_roster(request: web.Request) -> web.Response:
    staff(request, "admin")
    q: RosterQuery = query(request, RosterQuery)
    ctx = request.app[CTX]
    first = parse_day(q.day) if q.day else ctx.appointments.now().date()
    return web.json_response({"roster": await ctx.appointments.book.roster(first, q.days)})


@routes.put("/api/admin/roster")
async def set_shift(request: web.Request) -> web.Response:
    who = admin(request)
    req: ShiftSet = await body(request, ShiftSet)
    ctx = request.app[CTX]
    day, start, end = parse_day(req.day), parse_hhmm(req.start), parse_hhmm(req.end)
    async with audited(ctx.sm, who, "admin.roster_set", req.username) as a:
        shift = await ctx.appointments.book.set_shift(req.username, day, start, end, a.session)
        a.details = dict(shift)
    return web.json_response({"shift": shift})


@routes.delete("/api/admin/roster/{username}/{day}")
async def clear_shift(request: web.Request) -> web.Response:
    who = admin(request)
    username = path_text(request, "username", USERNAME, "unknown_user")
    day = parse_day(path_text(request, "day", DAY, "invalid_date"))
    ctx = request.app[CTX]
    async with audited(ctx.sm, who, "admin.roster_cleared", username) as a:
        n = await ctx.appointments.book.clear_shift(username, day, a.session)
        a.details = {"day": day.isoformat(), "removed": n}
    return web.json_response({"removed": n})
