"""A day of simulated calls through post-event supervision (docs/supervision.md): a real
hub, simulated customers, agents and a team lead (mixed risk: a high-risk call approved by
the lead, checks done by hand, a declined confirmation, steps skipped at wrap-up); the
daily job selects them with their reasons; the declined call is reviewed by an auditor who
did not take part, a finding is rectified by the agent and accepted, the review closes;
the record and its evidence package prove themselves."""

from __future__ import annotations

import asyncio
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cloudcounter.audit.jobs import run_once
from cloudcounter.audit.package import verify_package
from cloudcounter.sim.lead import run_lead
from tests.conftest import Hub
from tests.test_audit_api import req
from tests.test_hub_flows import scripted_call

pytestmark = pytest.mark.integration


async def test_a_day_of_simulated_calls_through_supervision(hub: Hub, tmp_path: Path) -> None:
    calls: dict[str, Any] = {}
    # a high-risk call: the agent's concern, approved by the team lead (who takes part)
    ready = asyncio.Event()
    lead = asyncio.create_task(run_lead(hub.url, await hub.agent_token("leo"), "approve",
                                        count=1, timeout=60, note="checked", ready=ready))
    await ready.wait()
    res, agent = await scripted_call(hub, concern="the customer reads from a paper",
                                     approval_wait=30)
    assert (await lead).error is None and agent.approvals == ["approved"], agent
    calls["high"] = res.call_id
    for name, kw in (("clean", {}), ("declined", {"confirm": "no"}),
                     ("skipped", {"steps": "skip-required"})):
        res, agent = await scripted_call(hub, **kw)
        assert res.completed and agent.error is None, (name, res, agent)
        calls[name] = res.call_id
    await hub.ctx.journal.flush()

    result = await run_once(hub.ctx, now=datetime.now(timezone.utc) + timedelta(days=1))
    assert result["selected"] >= 2 and len(result["digest"]) == 64, result
    status, reply = await req(hub, "GET", "/api/review/tasks", "audrey")
    tasks = {t["call_id"]: t for t in reply["tasks"]}
    assert tasks[calls["high"]]["rule"] == "risk_high_or_block"
    assert tasks[calls["declined"]]["rule"] == "confirmation_declined"
    assert tasks[calls["skipped"]]["rule"] == "step_overridden"
    # without media the simulated agent does the identity and liveness steps by hand:
    # an override of the automatic checks, which the rules select
    assert tasks[calls["clean"]]["rule"] == "step_overridden"
    task = tasks[calls["declined"]]
    assert task["assignee"] == "audrey"  # four eyes: alice handled it

    tid = task["id"]
    assert (await req(hub, "POST", f"/api/review/tasks/{tid}/start", "audrey"))[0] == 200
    status, detail = await req(hub, "GET", f"/api/review/tasks/{tid}", "audrey")
    for item in detail["checklist"]:
        result_ = "fail" if item["id"] == "statements_confirmed" else "pass"
        status, reply = await req(hub, "PUT", f"/api/review/tasks/{tid}/items/{item['id']}",
                                  "audrey", {"result": result_, "comment": "declined, not "
                                             "explained" if result_ == "fail" else ""})
        assert status == 200, reply
    status, reply = await req(hub, "POST", f"/api/review/tasks/{tid}/findings", "audrey",
                              {"severity": "medium", "category": "disclosure",
                               "description": "The agent did not explain the statement "
                               "before the customer declined", "item_id":
                               "statements_confirmed"})
    fid = reply["finding"]["id"]
    status, reply = await req(hub, "POST", f"/api/review/tasks/{tid}/complete", "audrey",
                              {"summary": "one finding"})
    assert reply["task"]["state"] == "findings_raised"
    status, reply = await req(hub, "POST", f"/api/review/findings/{fid}/respond", "alice",
                              {"text": "I explain it first now"})
    assert status == 200
    status, reply = await req(hub, "POST", f"/api/review/findings/{fid}/decision", "audrey",
                              {"accept": True, "text": "ok"})
    assert reply["finding"]["state"] == "accepted"
    status, detail = await req(hub, "GET", f"/api/review/tasks/{tid}", "audrey")
    assert detail["task"]["state"] == "closed"

    await hub.ctx.journal.flush()
    for cid in calls.values():
        status, body, _ = await hub.get(f"/api/audit/calls/{cid}/verify")
        assert body["ok"] is True, body
    status, blob, _ = await hub.get(f"/api/audit/calls/{calls['declined']}/package")
    pkg = tmp_path / "declined.zip"
    pkg.write_bytes(blob)
    rep = verify_package(pkg, None)
    assert rep.ok, rep.problems
    with zipfile.ZipFile(pkg) as z:
        assert "review.json" in z.namelist() and "checks.json" in z.namelist()
    status, reply = await req(hub, "GET", "/api/review/summary", "leo")
    assert {"category": "disclosure", "severity": "medium", "count": 1} in reply["findings"]
