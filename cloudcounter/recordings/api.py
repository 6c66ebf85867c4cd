"""Auditor HTTP API: search recorded calls, read a call's timeline, play its recordings.

Auditors and admins only; every view of a call and every playback goes on the call's
timeline.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased

from cloudcounter.db.models import CallEvent, CallSession, Customer, Recording, ServiceType, User
from cloudcounter.errors import InvalidMessage, NotFound
from cloudcounter.hub.api import AUDIT_ROLES, CTX, staff

routes = web.RouteTableDef()


def iso(v: datetime | None) -> str | None:
    if v is None:
        return None
    return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat()


def recording_row(r: Recording) -> dict[str, Any]:
    return {"id": r.id, "participant": r.participant, "url": f"/api/recordings/{r.id}",
            "duration_s": r.duration_s, "started_at": iso(r.started_at), "offset_s": r.offset_s,
            "segment": r.segment, "sha256": r.sha256,
            "size_bytes": r.size_bytes, "codecs": r.codecs, "error": r.error}


def _date(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(f"{field} must be YYYY-MM-DD", code="invalid_query") from None


def _int(value: str | None, default: int, lo: int, hi: int, field: str) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise InvalidMessage(f"{field} must be a whole number", code="invalid_query") from None
    return max(lo, min(hi, n))


@routes.get("/api/calls")
async def search_calls(request: web.Request) -> web.Response:
    staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    q = request.query
    agent = aliased(User)
    stmt = (select(CallSession, Customer.name, ServiceType.name, agent.username)
            .join(Customer, Customer.id == CallSession.customer_id)
            .join(ServiceType, ServiceType.code == CallSession.service_code)
            .outerjoin(agent, agent.id == CallSession.agent_id)
            .where(CallSession.state == "ended"))
    if text := q.get("q", "").strip()[:100]:
        like = f"%{text}%"
        stmt = stmt.where(or_(Customer.name.ilike(like), CallSession.id.ilike(like),
                              agent.username.ilike(like), ServiceType.name.ilike(like),
                              CallSession.outcome.ilike(like)))
    if service := q.get("service"):
        stmt = stmt.where(CallSession.service_code == service[:32])
    if who := q.get("agent"):
        stmt = stmt.where(agent.username == who[:64])
    if d := _date(q.get("date_from"), "date_from"):
        stmt = stmt.where(CallSession.requested_at >= datetime.combine(d, time(), timezone.utc))
    if d := _date(q.get("date_to"), "date_to"):
        stmt = stmt.where(CallSession.requested_at <
                          datetime.combine(d + timedelta(days=1), time(), timezone.utc))
    limit = _int(q.get("limit"), 50, 1, 200, "limit")
    offset = _int(q.get("offset"), 0, 0, 10**9, "offset")
    async with ctx.sm() as s:
        total = await s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = (await s.execute(stmt.order_by(CallSession.requested_at.desc())
                                .limit(limit).offset(offset))).all()
        ids = [r[0].id for r in rows]
        recs = (await s.scalars(select(Recording).where(Recording.call_id.in_(ids))
                                .order_by(Recording.segment, Recording.participant))).all() \
            if ids else []
    by_call: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_call.setdefault(r.call_id, []).append(recording_row(r))
    return web.json_response({"total": total, "calls": [
        call_summary(c, cname, sname, uname, by_call.get(c.id, [])) for c, cname, sname, uname
        in rows]})


def call_summary(c: CallSession, customer_name: str, service_name: str, agent: str | None,
                 recordings: list[dict[str, Any]]) -> dict[str, Any]:
    duration = None
    if c.answered_at and c.ended_at:
        duration = round((c.ended_at - c.answered_at).total_seconds(), 1)
    return {"id": c.id, "requested_at": iso(c.requested_at), "answered_at": iso(c.answered_at),
            "ended_at": iso(c.ended_at), "service": c.service_code, "service_name": service_name,
            "agent": agent, "customer_id": c.customer_id, "customer_name": customer_name,
            "duration_s": duration, "outcome": c.outcome, "end_reason": c.end_reason,
            "state": c.state, "notes": c.notes, "recordings": recordings,
            "script_version": c.script_version, "business_state": c.business_state,
            "subject": c.subject,
            "risk": None if c.risk_level is None else {
                "score": c.risk_score, "level": c.risk_level, "reasons": c.risk_reasons or [],
                "rules_version": c.risk_rules_version},
            "risk_level": c.risk_level}


@routes.get("/api/calls/{call_id}")
async def call_detail(request: web.Request) -> web.Response:
    ident = staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    call_id = request.match_info["call_id"][:40]
    agent = aliased(User)
    async with ctx.sm() as s:
        row = (await s.execute(
            select(CallSession, Customer.name, ServiceType.name, agent.username)
            .join(Customer, Customer.id == CallSession.customer_id)
            .join(ServiceType, ServiceType.code == CallSession.service_code)
            .outerjoin(agent, agent.id == CallSession.agent_id)
            .where(CallSession.id == call_id))).first()
        if row is None:
            raise NotFound("no such call")
        events = (await s.scalars(select(CallEvent).where(CallEvent.call_id == call_id)
                                  .order_by(CallEvent.seq))).all()
        recs = (await s.scalars(select(Recording).where(Recording.call_id == call_id)
                                .order_by(Recording.segment, Recording.participant))).all()
    ctx.journal.event(call_id, ident.actor, "audit.viewed", {})
    recordings = [recording_row(r) for r in recs]
    return web.json_response({
        "call": call_summary(row[0], row[1], row[2], row[3], recordings),
        "recordings": recordings,
        "timeline": [{"seq": e.seq, "at": iso(e.at), "actor": e.actor, "kind": e.kind,
                      "payload": e.payload} for e in events]})


@routes.get("/api/recordings/{rec_id}")
async def play_recording(request: web.Request) -> web.StreamResponse:
    """Serve a recording with range requests (seeking in a browser video element)."""
    ident = staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    try:
        rec_id = int(request.match_info["rec_id"])
    except ValueError:
        raise NotFound("no such recording") from None
    async with ctx.sm() as s:
        rec = await s.get(Recording, rec_id)
    if rec is None:
        raise NotFound("no such recording")
    path = Path(rec.path)
    if not await asyncio.to_thread(path.is_file):
        raise NotFound("recording file is missing", code="recording_missing")
    # One timeline entry per playback (its first request starts at byte 0), not one per
    # range request of the same playback.
    rng = request.headers.get("Range", "").replace(" ", "")
    if not rng or rng.startswith("bytes=0-"):
        ctx.journal.event(rec.call_id, ident.actor, "recording.accessed",
                          {"recording_id": rec.id, "participant": rec.participant})
    return web.FileResponse(path, headers={"Content-Type": "video/webm",
                                           "Cache-Control": "private, no-store"})


@routes.get("/api/calls/{call_id}/evidence/{name}")
async def evidence_frame(request: web.Request) -> web.StreamResponse:
    """The JPEG frame an identity or liveness check used (saved beside the recordings).

    Auditors and admins, and the agent who handled the call; each access is on the
    call's timeline. Only well-formed names of this call's evidence are looked up.
    """
    from cloudcounter.errors import Forbidden
    from cloudcounter.hub.analysis.evidence import valid_name

    ident = staff(request, "agent", *AUDIT_ROLES)
    ctx = request.app[CTX]
    call_id, name = request.match_info["call_id"][:40], request.match_info["name"][:80]
    if not valid_name(call_id, name):
        raise NotFound("no such evidence")
    async with ctx.sm() as s:
        row = await s.get(CallSession, call_id)
        paths = (await s.scalars(select(Recording.path)
                                 .where(Recording.call_id == call_id))).all()
    if row is None:
        raise NotFound("no such evidence")
    if ident.role == "agent":
        live = await ctx.dispatcher.store.get_call(call_id)
        handled = {row.agent_id, live.agent_id if live is not None else None}
        if ident.user_id not in handled:
            raise Forbidden("only the agent who handled the call may see its evidence")
    for directory in sorted({Path(p).parent for p in paths}):
        path = directory / name
        if await asyncio.to_thread(path.is_file):
            break
    else:
        raise NotFound("evidence file is missing", code="evidence_missing")
    ctx.journal.event(call_id, ident.actor, "evidence.accessed", {"file": name})
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg",
                                           "Cache-Control": "private, no-store"})
