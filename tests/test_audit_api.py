"""The supervision HTTP API (docs/supervision.md): roles, error codes, and no API that
deletes or changes a timeline event."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text

from cloudcounter.audit.package import verify_package
from cloudcounter.db.models import CallEvent

from tests.conftest import Hub
from tests.test_audit_chain import make_call, sql

pytestmark = pytest.mark.integration
CID = "call_00000000000000f1"
CID2 = "call_00000000000000f2"
CID3 = "call_00000000000000f3"


async def verify_over_http(hub: Hub, tmp_path: Path) -> None:
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
    await sql(hub.ctx.sm, "UPDATE call_events SET kind = 'call.note' WHERE call_id = :c "
              "AND seq = 2", c=CID)
    status, body, _ = await hub.get(f"/api/audit/calls/{CID}/verify", user="admin")
    assert status == 200 and body["ok"] is False
    assert [(b["kind"], b["seq"]) for b in body["breaks"]] == [("changed", 2)]
    status, body, _ = await hub.get("/api/audit/digests")
    assert status == 200 and body == {"digests": []}


async def no_api_deletes_or_changes_timeline_events(hub: Hub, tmp_path: Path) -> None:
    """Every route of the app that could reach a call's timeline refuses DELETE/PUT/PATCH:
    no such route exists, whoever asks."""
    await make_call(hub.ctx.sm, CID3, tmp_path)
    timeline_routes = [r for r in hub.app.router.routes() if r.resource is not None
                       and ("call" in r.resource.canonical or "audit" in r.resource.canonical
                            or "timeline" in r.resource.canonical)]
    assert timeline_routes
    assert not [r for r in timeline_routes if r.method in ("DELETE", "PUT", "PATCH")]
    token = await hub.agent_token("admin")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as h:
        for method in ("DELETE", "PUT", "PATCH"):
            for path in (f"/api/calls/{CID3}", f"/api/audit/calls/{CID3}/verify",
                         f"/api/calls/{CID3}/timeline/1"):
                async with h.request(method, hub.url + path) as r:
                    assert r.status in (404, 405), (method, path, r.status)
    await hub.ctx.journal.flush()
    async with hub.ctx.sm() as s:
        n = (await s.execute(text("SELECT count(*) FROM call_events WHERE call_id = :c"),
                             {"c": CID3})).scalar_one()
    assert n == 6


async def call_of(hub: Hub, cid: str, agent: str) -> None:
    from cloudcounter.db.models import Customer
    from cloudcounter.queue.model import Call
    async with hub.ctx.sm() as s, s.begin():
        uid = (await s.execute(text("SELECT id FROM users WHERE username = :u"),
                               {"u": agent})).scalar_one()
        if await s.get(Customer, "cus_t") is None:
            s.add(Customer(id="cus_t", name="T"))
    j = hub.ctx.journal
    j.call_created(Call(cid, "cus_t", "card_loss", "cards", 0, 0.0, 1), 1_764_000_000.0)
    j.call_updated(cid, state="ended", agent_id=uid, ended_at=1_764_000_100.0)
    j.event(cid, f"agent:{agent}", "call.answered", {})
    j.event(cid, f"agent:{agent}", "call.ended", {})
    await j.flush()


TOKENS: dict[tuple[str, str], str] = {}  # a sign-in costs a password hash: once per user


async def req(hub: Hub, method: str, path: str, user: str, json: Any = None) -> tuple[int, Any]:
    if (hub.url, user) not in TOKENS:
        TOKENS[(hub.url, user)] = await hub.agent_token(user)
    token = TOKENS[(hub.url, user)]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as h:
        async with h.request(method, hub.url + path, json=json) as r:
            return r.status, await (r.json() if r.content_type == "application/json"
                                    else r.text())


async def review_workflow_over_http_and_who_may_do_what(hub: Hub) -> None:
    mine, theirs = "call_00000000000000b1", "call_00000000000000b2"
    await call_of(hub, mine, "alice")
    await call_of(hub, theirs, "audrey")  # audrey handled this one (before she audited)

    def err(reply: Any) -> str:
        return reply["error"]["code"]
    status, reply = await req(hub, "GET", "/api/review/tasks", "alice")
    assert status == 403 and err(reply) == "forbidden"
    status, reply = await req(hub, "POST", "/api/review/tasks", "audrey",
                              {"call_id": mine, "reason": "bad\u0000"})
    assert status == 400
    status, reply = await req(hub, "POST", "/api/review/tasks", "audrey",
                              {"call_id": mine, "reason": "complaint by the customer"})
    assert status == 201 and reply["task"]["rule"] == "manual", reply
    assert reply["task"]["assignee"] == "audrey" and "complaint" in reply["task"]["reason"]
    tid = reply["task"]["id"]
    status, reply = await req(hub, "POST", "/api/review/tasks", "audrey",
                              {"call_id": mine, "reason": "again"})
    assert status == 409 and err(reply) == "already_selected"
    # four eyes: nobody eligible for audrey's own call, and she cannot take it
    status, reply = await req(hub, "POST", "/api/review/tasks", "admin",
                              {"call_id": theirs, "reason": "sample"})
    assert status == 201 and reply["task"]["assignee"] is None
    other = reply["task"]["id"]
    status, reply = await req(hub, "POST", f"/api/review/tasks/{other}/assign", "admin",
                              {"username": "audrey"})
    assert status == 403 and err(reply) == "four_eyes"
    status, reply = await req(hub, "POST", f"/api/review/tasks/{other}/start", "audrey")
    assert status == 403 and err(reply) == "not_assignee"
    status, reply = await req(hub, "POST", "/api/review/tasks/999999/start", "audrey")
    assert status == 404 and err(reply) == "unknown_task"

    # the review
    assert (await req(hub, "POST", f"/api/review/tasks/{tid}/start", "audrey"))[0] == 200
    status, reply = await req(hub, "PUT", f"/api/review/tasks/{tid}/items/liveness_passed",
                              "audrey", {"result": "maybe"})
    assert status == 400
    for item in ("identity_verified", "liveness_passed", "statements_confirmed",
                 "outcome_matches_evidence", "recording_complete"):
        status, reply = await req(hub, "PUT", f"/api/review/tasks/{tid}/items/{item}",
                                  "audrey", {"result": "pass"})
        assert status == 200, reply
    status, reply = await req(hub, "POST", f"/api/review/tasks/{tid}/complete", "audrey", {})
    assert status == 409 and err(reply) == "checklist_incomplete"
    await req(hub, "PUT", f"/api/review/tasks/{tid}/items/anti_coercion_asked", "audrey",
              {"result": "fail", "comment": "not asked", "recording_time_s": 31.5})
    status, reply = await req(hub, "POST", f"/api/review/tasks/{tid}/findings", "audrey",
                              {"severity": "high", "category": "coercion",
                               "description": "Not asked", "item_id": "anti_coercion_asked",
                               "recording_time_s": 31.5})
    assert status == 201
    fid = reply["finding"]["id"]
    status, reply = await req(hub, "POST", f"/api/review/tasks/{tid}/complete", "audrey",
                              {"summary": "one finding"})
    assert status == 200 and reply["task"]["state"] == "findings_raised"

    # an agent sees only their own findings
    status, reply = await req(hub, "GET", "/api/review/findings", "bob")
    assert status == 200 and reply["findings"] == []
    status, reply = await req(hub, "GET", f"/api/review/findings/{fid}", "bob")
    assert status == 404 and err(reply) == "unknown_finding"
    status, reply = await req(hub, "POST", f"/api/review/findings/{fid}/respond", "bob",
                              {"text": "not mine"})
    assert status == 404 and err(reply) == "unknown_finding"
    status, reply = await req(hub, "GET", "/api/review/findings?state=open", "alice")
    assert [f["id"] for f in reply["findings"]] == [fid]
    status, reply = await req(hub, "GET", "/api/review/findings", "leo")
    assert [f["id"] for f in reply["findings"]] == [fid]
    status, reply = await req(hub, "POST", f"/api/review/findings/{fid}/respond", "alice",
                              {"text": "I ask them now"})
    assert status == 200 and reply["finding"]["state"] == "responded"
    status, reply = await req(hub, "POST", f"/api/review/findings/{fid}/decision", "alice",
                              {"accept": True})
    assert status == 403
    status, reply = await req(hub, "POST", f"/api/review/findings/{fid}/decision", "audrey",
                              {"accept": True, "text": "ok"})
    assert status == 200 and reply["finding"]["state"] == "accepted"
    status, reply = await req(hub, "GET", f"/api/review/tasks/{tid}", "audrey")
    assert reply["task"]["state"] == "closed"
    assert [a["action"] for a in reply["actions"]][-2:] == ["finding_accepted", "closed"]
    status, reply = await req(hub, "GET", f"/api/review/findings/{fid}", "alice")
    assert [a["actor"] for a in reply["thread"]] == ["auditor:audrey", "agent:alice",
                                                     "auditor:audrey"]

    # the evidence package holds the review
    token = await hub.agent_token("audrey")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as h:
        async with h.get(f"{hub.url}/api/audit/calls/{mine}/package") as r:
            assert r.status == 200
            blob = await r.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        rv = json.loads(z.read("review.json"))
    assert rv["task"]["state"] == "closed" and rv["findings"][0]["state"] == "accepted"
    assert {c["item_id"]: c["result"] for c in rv["checklist"]}["anti_coercion_asked"] == "fail"

    # the summary, for leads too; not for agents
    status, csv_text = await req(hub, "GET", "/api/review/summary?date_from=2025-11-01"
                                 "&date_to=2025-11-30&format=csv", "leo")
    assert status == 200 and "alice,card_loss,1,1,1,1.0" in csv_text, csv_text
    status, reply = await req(hub, "GET", "/api/review/summary", "alice")
    assert status == 403
    status, reply = await req(hub, "GET", "/api/review/summary?date_from=2025-13-01", "leo")
    assert status == 400 and err(reply) == "invalid_query"


async def retention_and_holds_over_http(hub: Hub, tmp_path: Path) -> None:
    await make_call(hub.ctx.sm, CID2, tmp_path)
    status, reply = await req(hub, "POST", "/api/audit/retention/card_loss", "audrey",
                              {"days": 30})
    assert status == 403
    status, reply = await req(hub, "POST", "/api/audit/retention/card_loss", "admin",
                              {"days": 0})
    assert status == 400
    status, reply = await req(hub, "POST", "/api/audit/retention/card_loss", "admin",
                              {"days": 30})
    assert status == 200 and reply["rule"]["days"] == 30
    status, reply = await req(hub, "GET", "/api/audit/retention", "audrey")
    assert {"service": "card_loss", "days": 30, "source": "rule"}.items() <= \
        [r for r in reply["rules"] if r["service"] == "card_loss"][0].items()
    status, reply = await req(hub, "POST", "/api/audit/holds", "audrey",
                              {"call_id": CID2, "reason": "court order"})
    assert status == 201
    hid = reply["hold"]["id"]
    status, reply = await req(hub, "POST", "/api/audit/purge", "admin", {})
    assert status == 200 and reply["dry_run"] is True
    assert [k["call_id"] for k in reply["kept"]] == [CID2]  # 2023: expired, but held
    status, reply = await req(hub, "POST", "/api/audit/purge", "audrey", {"dry_run": False})
    assert status == 403
    status, reply = await req(hub, "POST", f"/api/audit/holds/{hid}/release", "audrey")
    assert status == 200 and reply["hold"]["released_by"] == "auditor:audrey"
    status, reply = await req(hub, "POST", f"/api/audit/holds/{hid}/release", "audrey")
    assert status == 404 and reply["error"]["code"] == "unknown_hold"
    status, reply = await req(hub, "POST", "/api/audit/purge", "admin", {"dry_run": False})
    assert CID2 in [p["call_id"] for p in reply["purged"]]
    status, reply, _ = await hub.get(f"/api/audit/calls/{CID2}/verify")
    assert reply["ok"] is True, reply


async def the_hubs_daily_supervision_job(hub: Hub) -> None:
    from datetime import datetime, timezone

    from cloudcounter.audit.jobs import run_once
    await call_of(hub, "call_00000000000000b7", "alice")  # 2025-11-24
    now = datetime(2025, 11, 25, 1, 0, tzinfo=timezone.utc)
    first = await run_once(hub.ctx, now=now)
    assert first["selected"] == 1 and len(first["digest"]) == 64, first
    again = await run_once(hub.ctx, now=now)
    assert again["selected"] == 0 and again["digest"] == "digest_exists"
    status, reply = await req(hub, "GET", "/api/review/tasks?call_id=call_00000000000000b7",
                              "audrey")
    assert reply["tasks"][0]["rule"] in ("agent_minimum", "random_share")
    status, body, _ = await hub.get("/api/audit/digests")
    assert [d["day"] for d in body["digests"]] == ["2025-11-24"]
    status, body, _ = await hub.get("/api/audit/calls/call_00000000000000b7/verify")
    assert body["ok"] is True, body


async def download_a_package_over_http(hub: Hub, tmp_path: Path) -> None:
    cid = "call_00000000000000f4"
    await make_call(hub.ctx.sm, cid, tmp_path)
    status, body, headers = await hub.get(f"/api/audit/calls/{cid}/package")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    pkg = tmp_path / "dl.zip"
    pkg.write_bytes(body)
    rep = verify_package(pkg, b"h" * 40)
    assert rep.ok and rep.signed, rep.problems
    status, body, _ = await hub.get(f"/api/audit/calls/{cid}/package", user="alice")
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body, _ = await hub.get("/api/audit/calls/call_ffffffffffffffff/package")
    assert status == 400 and body["error"]["code"] == "unknown_call"
    await hub.ctx.journal.flush()
    async with hub.ctx.sm() as s:
        kinds = (await s.scalars(select(CallEvent.kind).where(CallEvent.call_id == cid)
                                 .order_by(CallEvent.seq))).all()
    assert kinds[-1] == "audit.exported"


async def test_the_supervision_api_on_one_hub(hub_factory: Any, tmp_path: Path) -> None:
    """One hub for every part (a hub start costs seconds): verify, no deleting API, the
    package download, the review workflow and who may do what, retention and holds, and
    the daily job last (it samples the day the review's calls are on)."""
    hub: Hub = await hub_factory(audit_key="h" * 40)
    await verify_over_http(hub, tmp_path)
    await no_api_deletes_or_changes_timeline_events(hub, tmp_path)
    await download_a_package_over_http(hub, tmp_path)
    await review_workflow_over_http_and_who_may_do_what(hub)
    await retention_and_holds_over_http(hub, tmp_path)
    await the_hubs_daily_supervision_job(hub)
