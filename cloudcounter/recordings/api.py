"""Auditor HTTP API: search recorded calls, read a call's timeline, play its recordings.

Auditors and admins only (evidence: also the call's agent). Nothing here can be read
without leaving a trace: every search is a security event (``calls.searched``), every
view of a call goes on its timeline (``audit.viewed``), and every recording or evidence
file is logged once per viewing session (the staff session and the file, within
``CLOUDCOUNTER_VIEWING_SESSION_S``) whatever the ``Range`` of the request, on the call's
timeline (``recording.accessed``, ``evidence.accessed``) and in the security log. Ids in
URLs are opaque (``rec_`` + 24 hex digits) and checked whole: nothing else resolves.
Sealed files (``CLOUDCOUNTER_AT_REST_KEY``) are decrypted chunk by chunk for the range
asked.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ConfigDict, Field, ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import aliased

from cloudcounter.db.models import CallEvent, CallSession, Customer, Recording, ServiceType, User
from cloudcounter.errors import Forbidden, InvalidMessage, NotFound
from cloudcounter.hub.api import AUDIT_ROLES, CTX, staff
from cloudcounter.hub.http_auth import client
from cloudcounter.recordings import crypto
from cloudcounter.signaling.edge import schema_problems
from cloudcounter.signaling.schemas import Message

routes = web.RouteTableDef()
REC_ID = re.compile(r"rec_[0-9a-f]{24}")
CALL_ID = re.compile(r"call_[0-9a-f]{16}")
RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)
READ_BATCH = 16  # chunks decrypted per thread hop (1 MiB)


def iso(v: datetime | None) -> str | None:
    if v is None:
        return None
    return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat()


def recording_row(r: Recording) -> dict[str, Any]:
    return {"id": r.public_id, "participant": r.participant,
            "url": f"/api/recordings/{r.public_id}",
            "duration_s": r.duration_s, "started_at": iso(r.started_at), "offset_s": r.offset_s,
            "segment": r.segment, "sha256": r.sha256,
            "size_bytes": r.size_bytes, "codecs": r.codecs, "error": r.error}


class CallQuery(Message):
    model_config = ConfigDict(extra="ignore", frozen=True)
    q: str = Field(default="", max_length=100)
    service: str = Field(default="", pattern=r"^[a-z0-9_]{0,32}$")
    agent: str = Field(default="", max_length=64)
    date_from: date | None = None
    date_to: date | None = None
    limit: int = 50
    offset: int = Field(default=0, ge=0, le=10**9)


def call_query(request: web.Request) -> CallQuery:
    raw = {k: v for k, v in request.query.items() if v != ""}
    if "q" in raw:
        raw["q"] = raw["q"].strip()[:100]
    try:
        q = CallQuery.model_validate(raw)
    except ValidationError as exc:
        raise InvalidMessage("bad search (dates are YYYY-MM-DD, limit and offset whole "
                             "numbers, no control characters)", code="invalid_query",
                             problems=schema_problems(exc)) from None
    return q.model_copy(update={"limit": max(1, min(200, q.limit))})


def call_id_of(request: web.Request) -> str:
    call_id = request.match_info["call_id"]
    if not CALL_ID.fullmatch(call_id):
        raise NotFound("no such call")
    return call_id


@routes.get("/api/calls")
async def search_calls(request: web.Request) -> web.Response:
    ident = staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    q = call_query(request)
    agent = aliased(User)
    stmt = (select(CallSession, Customer.name, ServiceType.name, agent.username)
            .join(Customer, Customer.id == CallSession.customer_id)
            .join(ServiceType, ServiceType.code == CallSession.service_code)
            .outerjoin(agent, agent.id == CallSession.agent_id)
            .where(CallSession.state == "ended"))
    if q.q:
        like = f"%{q.q}%"
        stmt = stmt.where(or_(Customer.name.ilike(like), CallSession.id.ilike(like),
                              agent.username.ilike(like), ServiceType.name.ilike(like),
                              CallSession.outcome.ilike(like)))
    if q.service:
        stmt = stmt.where(CallSession.service_code == q.service)
    if q.agent:
        stmt = stmt.where(agent.username == q.agent)
    if q.date_from:
        stmt = stmt.where(CallSession.requested_at >= datetime.combine(q.date_from, time(),
                                                                       timezone.utc))
    if q.date_to:
        stmt = stmt.where(CallSession.requested_at <
                          datetime.combine(q.date_to + timedelta(days=1), time(), timezone.utc))
    async with ctx.sm() as s:
        total = await s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = (await s.execute(stmt.order_by(CallSession.requested_at.desc())
                                .limit(q.limit).offset(q.offset))).all()
        ids = [r[0].id for r in rows]
        recs = (await s.scalars(select(Recording).where(Recording.call_id.in_(ids))
                                .order_by(Recording.segment, Recording.participant))).all() \
            if ids else []
    by_call: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_call.setdefault(r.call_id, []).append(recording_row(r))
    # the results hold notes and recording lists: who searched what, and what they saw
    ctx.security.event("calls.searched", "ok", ident.actor, client(request).address,
                       "calls", ident.user_id,
                       query=q.model_dump(mode="json", exclude_defaults=True),
                       total=total, returned=ids)
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
    call_id = call_id_of(request)
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
    ctx.security.event("call.viewed", "ok", ident.actor, client(request).address, call_id,
                       ident.user_id)
    recordings = [recording_row(r) for r in recs]
    return web.json_response({
        "call": call_summary(row[0], row[1], row[2], row[3], recordings),
        "recordings": recordings,
        "timeline": [{"seq": e.seq, "at": iso(e.at), "actor": e.actor, "kind": e.kind,
                      "payload": e.payload} for e in events]})


def _accessed(request: web.Request, call_id: str, kind: str, resource: str,
              payload: dict[str, Any]) -> None:
    """Log an access to a recorded file once per viewing session (whatever the range)."""
    ctx = request.app[CTX]
    ident = staff(request, "agent", *AUDIT_ROLES)
    if not ctx.security.first_view(ident.session_id, resource,
                                   ctx.settings.viewing_session_s):
        return
    ctx.journal.event(call_id, ident.actor, kind, payload)
    ctx.security.event(kind, "ok", ident.actor, client(request).address, resource,
                       ident.user_id, call_id=call_id,
                       range=request.headers.get("Range", "")[:64])


@routes.get("/api/recordings/{rec_id}")
async def play_recording(request: web.Request) -> web.StreamResponse:
    """Serve a recording with range requests (seeking in a browser video element)."""
    staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    rec_id = request.match_info["rec_id"]
    if not REC_ID.fullmatch(rec_id):
        raise NotFound("no such recording")
    async with ctx.sm() as s:
        rec = (await s.scalars(select(Recording).where(Recording.public_id == rec_id))).first()
    if rec is None:
        raise NotFound("no such recording")
    path = Path(rec.path)
    if not await asyncio.to_thread(path.is_file):
        raise NotFound("recording file is missing", code="recording_missing")
    _accessed(request, rec.call_id, "recording.accessed", rec.public_id,
              {"recording_id": rec.public_id, "participant": rec.participant})
    headers = {"Content-Type": "video/webm", "Cache-Control": "private, no-store"}
    if await asyncio.to_thread(crypto.is_encrypted, path):
        return await serve_sealed(request, path, headers)
    return web.FileResponse(path, headers=headers)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single-range ``Range`` header; None to send
    the whole file (no header, several ranges, or a header that does not parse)."""
    m = RANGE.fullmatch(header.replace(" ", ""))
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if len(first) > 18 or len(last) > 18:
        return None
    if not first:  # the last N bytes
        n = int(last)
        return max(0, size - n), size
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if last and int(last) < start:
        return None
    return start, end


async def serve_sealed(request: web.Request, path: Path,
                       headers: dict[str, str]) -> web.StreamResponse:
    key = request.app[CTX].settings.at_rest_key_bytes
    if key is None:
        raise crypto.AtRestError("this file is sealed but no CLOUDCOUNTER_AT_REST_KEY is set")
    reader = await asyncio.to_thread(crypto.EncryptedReader, path, key)
    try:
        size = reader.size
        wanted = byte_range(request.headers.get("Range", ""), size)
        resp = web.StreamResponse(headers={**headers, "Accept-Ranges": "bytes"})
        if wanted is None:
            start, end = 0, size
        elif wanted[0] >= size:
            return web.Response(status=416, headers={**headers,
                                                     "Content-Range": f"bytes */{size}"})
        else:
            start, end = wanted
            resp.set_status(206)
            resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        resp.content_length = end - start
        await resp.prepare(request)
        def read(a: int, b: int) -> bytes:
            return b"".join(reader.read_range(a, b))

        if request.method != "HEAD":
            pos = start
            while pos < end:
                stop = min(end, pos + READ_BATCH * crypto.CHUNK)
                await resp.write(await asyncio.to_thread(read, pos, stop))
                pos = stop
        await resp.write_eof()
        return resp
    finally:
        reader.close()


@routes.get("/api/calls/{call_id}/evidence/{name}")
async def evidence_frame(request: web.Request) -> web.StreamResponse:
    """The JPEG frame an identity or liveness check used (saved beside the recordings).

    Auditors and admins, and the agent who handled the call; each access is on the
    call's timeline. Only well-formed names of this call's evidence are looked up.
    """
    from cloudcounter.hub.analysis.evidence import valid_name

    ident = staff(request, "agent", *AUDIT_ROLES)
    ctx = request.app[CTX]
    call_id, name = call_id_of(request), request.match_info["name"][:80]
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
    _accessed(request, call_id, "evidence.accessed", name, {"file": name})
    headers = {"Content-Type": "image/jpeg", "Cache-Control": "private, no-store"}
    if await asyncio.to_thread(crypto.is_encrypted, path):
        key = ctx.settings.at_rest_key_bytes
        if key is None:
            raise crypto.AtRestError("this file is sealed but no CLOUDCOUNTER_AT_REST_KEY is set")

        def read() -> bytes:
            with crypto.EncryptedReader(path, key) as r:
                return r.read_all()
        return web.Response(body=await asyncio.to_thread(read), headers=headers)
    return web.FileResponse(path, headers=headers)
