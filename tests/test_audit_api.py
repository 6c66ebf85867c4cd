"""The supervision HTTP API (docs/supervision.md): roles, error codes, and no API that
deletes or changes a timeline event."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from tests.conftest import Hub
from tests.test_audit_chain import make_call

pytestmark = pytest.mark.integration
CID = "call_00000000000000f1"


async def test_verify_a_call_over_http(hub: Hub, tmp_path: Path) -> None:
    await make_call(hub.ctx.sm, CID, tmp_path)
    status, body, _ = await hub.get(f"/api/audit/calls/{CID}/verify")
    assert status == 200 and body == {"call_id": CID, "ok": True, "breaks": []}
    for user in ("alice", "leo"):  # agents and leads: refused
        status, body, _ = await hub.get(f"/api/audit/calls/{CID}/verify", user=user)
        assert status == 403 and body["error"]["code"] == "forbidden"
    status, body, _ = await hub.get("/api/audit/calls/not-a-call/verify")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = await hub.get("/api/audit/calls/call_ffffffffffffffff/verify")
    assert status == 400 and body["error"]["code"] == "unknown_call"
    async with hub.ctx.sm() as s, s.begin():
        await s.execute(text("UPDATE call_events SET kind = 'call.note' WHERE call_id = :c "
                             "AND seq = 2"), {"c": CID})
    status, body, _ = await hub.get(f"/api/audit/calls/{CID}/verify", user="admin")
    assert status == 200 and body["ok"] is False
    assert [(b["kind"], b["seq"]) for b in body["breaks"]] == [("changed", 2)]
    status, body, _ = await hub.get("/api/audit/digests")
    assert status == 200 and body == {"digests": []}


async def test_no_api_deletes_or_changes_timeline_events(hub: Hub, tmp_path: Path) -> None:
    """Every route of the app that could reach a call's timeline refuses DELETE/PUT/PATCH:
    no such route exists, whoever asks."""
    await make_call(hub.ctx.sm, CID, tmp_path)
    timeline_routes = [r for r in hub.app.router.routes() if r.resource is not None
                       and ("call" in r.resource.canonical or "audit" in r.resource.canonical
                            or "timeline" in r.resource.canonical)]
    assert timeline_routes
    assert not [r for r in timeline_routes if r.method in ("DELETE", "PUT", "PATCH")]
    token = await hub.agent_token("admin")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as h:
        for method in ("DELETE", "PUT", "PATCH"):
            for path in (f"/api/calls/{CID}", f"/api/audit/calls/{CID}/verify",
                         f"/api/calls/{CID}/timeline/1"):
                async with h.request(method, hub.url + path) as r:
                    assert r.status in (404, 405), (method, path, r.status)
    await hub.ctx.journal.flush()
    async with hub.ctx.sm() as s:
        n = (await s.execute(text("SELECT count(*) FROM call_events WHERE call_id = :c"),
                             {"c": CID})).scalar_one()
    assert n == 5
