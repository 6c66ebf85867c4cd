"""The auditor's HTTP API of post-event supervision (docs/supervision.md, docs/api.md).

Auditors and admins (retention rules and the purge: admins). Nothing here changes or
deletes a timeline event: the only writes to timelines are new events (``audit.exported``,
``retention.*``) appended through the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select

from cloudcounter.audit import retention
from cloudcounter.audit.package import export_call
from cloudcounter.audit.verify import verify_call
from cloudcounter.db.audit_models import AuditDigest
from cloudcounter.errors import NotFound
from cloudcounter.hub.api import AUDIT_ROLES, CTX, body, staff
from cloudcounter.hub.http_auth import client
from cloudcounter.recordings.api import call_id_of
from cloudcounter.signaling.schemas import CallId, Message, Reason

routes = web.RouteTableDef()


@routes.get("/api/audit/calls/{call_id}/verify")
async def verify(request: web.Request) -> web.Response:
    """Verify a call's hash chain, its recordings (rows and files) and its digest."""
    staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    call_id = call_id_of(request)
    breaks = await verify_call(ctx.sm, call_id, ctx.settings.at_rest_key_bytes)
    return web.json_response({"call_id": call_id, "ok": not breaks,
                              "breaks": [b.to_dict() for b in breaks]})


@routes.get("/api/audit/digests")
async def digests(request: web.Request) -> web.Response:
    """The daily digest log, newest first (at most 400 days)."""
    staff(request, *AUDIT_ROLES)
    async with request.app[CTX].sm() as s:
        rows = (await s.scalars(select(AuditDigest).order_by(AuditDigest.id.desc())
                                .limit(400))).all()
    out: list[dict[str, Any]] = [
        {"day": d.day.isoformat(), "calls": len(d.entries), "root": d.root,
         "prev_root": d.prev_root, "signed": d.signature is not None, "key_id": d.key_id,
         "created_at": d.created_at.isoformat(), "created_by": d.created_by} for d in rows]
    return web.json_response({"digests": out})


@routes.get("/api/audit/calls/{call_id}/package")
async def package(request: web.Request) -> web.StreamResponse:
    """The call's evidence package (zip, signed manifest); the export goes on the call's
    timeline (``audit.exported``) and in the security log."""
    ident = staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    call_id = call_id_of(request)
    directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="cc-export-"))
    out = directory / f"{call_id}.zip"
    try:
        manifest = await export_call(ctx.sm, ctx.journal, call_id, out,
                                     ctx.settings.at_rest_key_bytes,
                                     ctx.settings.audit_key_bytes, ident.actor)
        ctx.security.event("call.exported", "ok", ident.actor, client(request).address,
                           call_id, ident.user_id, manifest_sha256=manifest["sha256"])
        size = (await asyncio.to_thread(out.stat)).st_size
        resp = web.StreamResponse(headers={
            "Content-Type": "application/zip", "Cache-Control": "private, no-store",
            "Content-Disposition": f'attachment; filename="{call_id}.zip"',
            "Content-Length": str(size)})
        await resp.prepare(request)
        f = await asyncio.to_thread(open, out, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                await resp.write(chunk)
        finally:
            await asyncio.to_thread(f.close)
        await resp.write_eof()
        return resp
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(out.unlink, missing_ok=True)
            await asyncio.to_thread(directory.rmdir)


class RetentionDays(Message):
    days: int = Field(ge=1, le=36500)


class NewHold(Message):
    call_id: CallId
    reason: Reason


class Purge(Message):
    dry_run: bool = True


@routes.get("/api/audit/retention")
async def retention_rules(request: web.Request) -> web.Response:
    staff(request, *AUDIT_ROLES)
    ctx = request.app[CTX]
    return web.json_response({"rules": await retention.rules(
        ctx.sm, ctx.settings.retention_default_days)})


@routes.post("/api/audit/retention/{code}")
async def set_retention(request: web.Request) -> web.Response:
    ident = staff(request, "admin")
    req = await body(request, RetentionDays)
    code = request.match_info["code"][:32]
    ctx = request.app[CTX]
    rule = await retention.set_rule(ctx.sm, code, req.days, ident.actor)
    ctx.security.event("retention.changed", "ok", ident.actor, client(request).address, code,
                       ident.user_id, days=req.days)
    return web.json_response({"rule": rule})


@routes.get("/api/audit/holds")
async def legal_holds(request: web.Request) -> web.Response:
    staff(request, *AUDIT_ROLES)
    return web.json_response({"holds": await retention.holds(request.app[CTX].sm)})


@routes.post("/api/audit/holds")
async def add_hold(request: web.Request) -> web.Response:
    ident = staff(request, *AUDIT_ROLES)
    req = await body(request, NewHold)
    ctx = request.app[CTX]
    hold = await retention.add_hold(ctx.sm, req.call_id, req.reason, ident.actor)
    ctx.journal.event(req.call_id, ident.actor, "retention.hold_added",
                      {"hold_id": hold["id"], "reason": req.reason})
    return web.json_response({"hold": hold}, status=201)


@routes.post("/api/audit/holds/{hold_id}/release")
async def release_hold(request: web.Request) -> web.Response:
    ident = staff(request, *AUDIT_ROLES)
    raw = request.match_info["hold_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound("no such active hold", code="unknown_hold")
    ctx = request.app[CTX]
    hold = await retention.release_hold(ctx.sm, int(raw), ident.actor)
    ctx.journal.event(hold["call_id"], ident.actor, "retention.hold_released",
                      {"hold_id": hold["id"]})
    return web.json_response({"hold": hold})


@routes.post("/api/audit/purge")
async def purge(request: web.Request) -> web.Response:
    """The purge job (admin); a dry run unless ``dry_run`` is false."""
    ident = staff(request, "admin")
    req = await body(request, Purge)
    ctx = request.app[CTX]
    report = await retention.purge(ctx.sm, ctx.journal, ctx.settings.retention_default_days,
                                   ident.actor, dry_run=req.dry_run)
    if not req.dry_run:
        ctx.security.event("retention.purged", "ok", ident.actor, client(request).address,
                           "", ident.user_id, calls=len(report.purged))
    return web.json_response(report.to_dict())


def all_routes() -> list[Any]:
    """This module's routes and the review workflow's (cloudcounter.audit.review_api)."""
    from cloudcounter.audit import review_api
    return [*routes, *review_api.routes]
