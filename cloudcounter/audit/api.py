"""The auditor's HTTP API of post-event supervision (docs/supervision.md, docs/api.md).

Auditors and admins only. Nothing here changes or deletes a timeline event: the only
writes are new events (``audit.exported``) appended through the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from cloudcounter.audit.package import export_call
from cloudcounter.audit.verify import verify_call
from cloudcounter.db.audit_models import AuditDigest
from cloudcounter.hub.api import AUDIT_ROLES, CTX, staff
from cloudcounter.hub.http_auth import client
from cloudcounter.recordings.api import call_id_of

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


def all_routes() -> list[Any]:
    """This module's routes and the review workflow's (cloudcounter.audit.review_api)."""
    from cloudcounter.audit import review_api
    return [*routes, *review_api.routes]
