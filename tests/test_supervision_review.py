"""The review loop on both databases (docs/supervision.md): a day of calls with mixed risk
selected with reasons, assigned by four eyes, reviewed against the checklist, a finding
rectified and closed, an overdue finding escalated; every action recorded with who and
when, and on the hash-chained timeline."""

# ruff: noqa: F811 - the tests take test_db's fixtures (sm, on both backends) by name
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from cloudcounter.audit import review
from cloudcounter.audit.review import System
from cloudcounter.audit.verify import verify_call
from cloudcounter.db.audit_models import ReviewAction
from cloudcounter.db.journal import DbJournal
from cloudcounter.db.models import CallEvent, Customer, User
from cloudcounter.errors import CloudCounterError
from cloudcounter.hub.auth import StaffIdentity
from cloudcounter.queue.model import Call
from tests.test_db import db_url, pg_url, sm  # noqa: F401

DAY = date(2026, 11, 24)  # a Tuesday
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc).timestamp()


async def people(sm: Any) -> dict[str, StaffIdentity]:
    out = {}
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_r", name="R"))
        for name, role in (("ana", "agent"), ("ben", "agent"), ("otto", "auditor"),
                           ("audrey", "auditor"), ("leo", "lead")):
            u = User(username=name, display_name=name, password_hash="x", role=role)
            s.add(u)
            await s.flush()
            out[name] = StaffIdentity(u.id, name, role)
    return out


async def calls(sm: Any, journal: DbJournal, who: dict[str, StaffIdentity]) -> dict[str, str]:
    """A day: ana's high-risk call, ana's call with a failed check, four quiet calls of
    ana's, one quiet call of ben's that otto (then an agent) handled with him."""
    spec = {
        "high": ("ana", "high", []),
        "failed": ("ana", "low", [("check.result", {"kind": "identity",
                                                     "verdict": "no_match"})]),
        "q1": ("ana", "low", []), "q2": ("ana", "low", []), "q3": ("ana", "low", []),
        "q4": ("ana", "low", []),
        "otto": ("ben", "low", [("call.note", {"by": "otto"})]),
    }
    ids = {}
    for i, (key, (agent, risk, events)) in enumerate(spec.items()):
        cid = f"call_{0xab00 + i:016x}"
        ids[key] = cid
        journal.call_created(Call(cid, "cus_r", "card_loss", "cards", 0, 0.0, 1), T0 + i)
        journal.call_updated(cid, state="ended", agent_id=who[agent].user_id, risk_level=risk,
                             ended_at=T0 + i + 60)
        journal.event(cid, f"agent:{agent}", "call.answered", {}, at=T0 + i + 1)
        for kind, payload in events:
            journal.event(cid, "system", kind, payload, at=T0 + i + 2)
        if key == "otto":
            journal.event(cid, "agent:otto", "agent.note", {"text": "helped"}, at=T0 + i + 3)
        journal.event(cid, f"agent:{agent}", "call.ended", {}, at=T0 + i + 60)
    await journal.flush()
    return ids


def code(exc: pytest.ExceptionInfo[CloudCounterError]) -> str:
    return exc.value.code


async def test_a_day_selected_reviewed_rectified_and_closed(sm) -> None:  # type: ignore[no-untyped-def]
    journal = DbJournal(sm)
    who = await people(sm)
    ids = await calls(sm, journal, who)
    job = System("system:sampling")
    now = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
    tasks = await review.run_sampling(sm, journal, DAY, DAY + timedelta(days=1), job,
                                      now=now)
    by_call = {t["call_id"]: t for t in tasks}
    assert by_call[ids["high"]]["rule"] == "risk_high_or_block"
    assert by_call[ids["failed"]]["rule"] == "check_failed"
    assert by_call[ids["otto"]]["rule"] in ("agent_minimum", "random_share")  # ben's only
    ana_quiet = [by_call[ids[k]] for k in ("q1", "q2", "q3", "q4") if ids[k] in by_call]
    # ana already has two rule selections this week: the minimum adds none
    assert all(t["rule"] == "random_share" for t in ana_quiet)
    assert all(t["reason"] and t["rule_version"] == 1 for t in tasks)
    assert all(t["due_at"].startswith("2026-11-26") for t in tasks)  # next working day
    # four eyes: otto took part in ben's call, so audrey has it; the load is spread
    assert by_call[ids["otto"]]["assignee"] == "audrey"
    assert {t["assignee"] for t in tasks} <= {"audrey", "otto"}
    again = await review.run_sampling(sm, journal, DAY, DAY + timedelta(days=1), job, now=now)
    assert again == []  # idempotent

    otto_task = by_call[ids["otto"]]["id"]
    with pytest.raises(CloudCounterError) as e:
        await review.assign(sm, journal, who["audrey"], otto_task, "otto")
    assert code(e) == "four_eyes"
    with pytest.raises(CloudCounterError) as e:
        await review.assign(sm, journal, who["audrey"], otto_task, "ana")
    assert code(e) == "not_an_auditor"
    with pytest.raises(CloudCounterError) as e:
        await review.start_review(sm, journal, who["otto"], otto_task)
    assert code(e) == "not_assignee"

    # manual selection with a reason
    with pytest.raises(CloudCounterError) as e:
        await review.select_manually(sm, journal, who["audrey"], ids["high"], "again")
    assert code(e) == "already_selected"

    # the review of ana's high-risk call by its auditor
    t = by_call[ids["high"]]
    reviewer = who[t["assignee"]]
    other = who["otto" if reviewer.username == "audrey" else "audrey"]
    tid = t["id"]
    with pytest.raises(CloudCounterError) as e:
        await review.answer_item(sm, journal, reviewer, tid, "identity_verified", "pass", "",
                                 None)
    assert code(e) == "bad_task_state"  # not started
    await review.start_review(sm, journal, reviewer, tid)
    with pytest.raises(CloudCounterError) as e:
        await review.answer_item(sm, journal, other, tid, "identity_verified", "pass", "", None)
    assert code(e) == "not_assignee"
    with pytest.raises(CloudCounterError) as e:
        await review.answer_item(sm, journal, reviewer, tid, "moon_phase", "pass", "", None)
    assert code(e) == "unknown_item"
    with pytest.raises(CloudCounterError) as e:
        await review.answer_item(sm, journal, reviewer, tid, "anti_coercion_asked", "fail",
                                 " ", 12.5)
    assert code(e) == "comment_required"
    await review.answer_item(sm, journal, reviewer, tid, "identity_verified", "pass", "", None)
    with pytest.raises(CloudCounterError) as e:
        await review.complete_review(sm, journal, reviewer, tid, "done")
    assert code(e) == "checklist_incomplete"
    for item in ("liveness_passed", "statements_confirmed", "outcome_matches_evidence",
                 "recording_complete"):
        await review.answer_item(sm, journal, reviewer, tid, item, "pass", "ok", None)
    await review.answer_item(sm, journal, reviewer, tid, "anti_coercion_asked", "fail",
                             "not asked", 42.0)
    with pytest.raises(CloudCounterError) as e:
        await review.raise_finding(sm, journal, reviewer, tid, "high", "astrology", "x", None,
                                   None)
    assert code(e) == "unknown_category"
    f = await review.raise_finding(sm, journal, reviewer, tid, "high", "coercion",
                                   "The anti-coercion questions were not asked",
                                   "anti_coercion_asked", 42.0)
    assert f["agent"] == "ana" and f["state"] == "open"
    done = await review.complete_review(sm, journal, reviewer, tid, "one finding")
    assert done["state"] == "findings_raised"

    # who sees the finding: ana and the lead, not ben
    assert [x["id"] for x in await review.list_findings(sm, who["ana"])] == [f["id"]]
    assert await review.list_findings(sm, who["ben"]) == []
    assert [x["id"] for x in await review.list_findings(sm, who["leo"])] == [f["id"]]
    with pytest.raises(CloudCounterError) as e:
        await review.finding_thread(sm, who["ben"], f["id"])
    assert code(e) == "unknown_finding"
    with pytest.raises(CloudCounterError) as e:
        await review.respond(sm, journal, who["ben"], f["id"], "not mine")
    assert code(e) == "unknown_finding"
    with pytest.raises(CloudCounterError) as e:
        await review.decide(sm, journal, reviewer, f["id"], True, "nothing to accept")
    assert code(e) == "bad_finding_state"

    # the rectification loop
    await review.respond(sm, journal, who["ana"], f["id"], "I will ask them")
    with pytest.raises(CloudCounterError) as e:
        await review.decide(sm, journal, other, f["id"], True, "")
    assert code(e) == "not_assignee"
    await review.decide(sm, journal, reviewer, f["id"], False, "Show it on the next call")
    await review.respond(sm, journal, who["ana"], f["id"], "Done on call_x, see 00:42")
    accepted = await review.decide(sm, journal, reviewer, f["id"], True, "Thank you")
    assert accepted["state"] == "accepted" and accepted["resolved_at"]
    detail = await review.task_detail(sm, reviewer, tid)
    assert detail["task"]["state"] == "closed"
    thread = await review.finding_thread(sm, who["ana"], f["id"])
    assert [(a["action"], a["actor"]) for a in thread["thread"]] == [
        ("finding_recorded", reviewer.actor), ("finding_responded", "agent:ana"),
        ("finding_rejected", reviewer.actor), ("finding_responded", "agent:ana"),
        ("finding_accepted", reviewer.actor)]
    assert all(a["at"] for a in thread["thread"])
    answered = {c["id"]: c["result"] for c in detail["checklist"]}
    assert answered["anti_coercion_asked"] == "fail" and None not in answered.values()

    # every action is on the call's timeline, and the chain is whole
    await journal.flush()
    async with sm() as s:
        kinds = (await s.scalars(select(CallEvent.kind).where(CallEvent.call_id == ids["high"])
                                 .order_by(CallEvent.seq))).all()
        n_actions = len((await s.scalars(select(ReviewAction).where(
            ReviewAction.task_id == tid))).all())
    assert [k for k in kinds if k.startswith(("review.", "finding."))][:3] == [
        "review.selected", "review.assigned", "review.started"]
    assert kinds[-2:] == ["finding.accepted", "review.closed"]
    assert len([k for k in kinds if k.startswith(("review.", "finding."))]) == n_actions
    assert await verify_call(sm, ids["high"], files=False) == []

    # escalation of an overdue finding, once
    t2 = by_call[ids["failed"]]
    r2 = who[t2["assignee"]]
    await review.start_review(sm, journal, r2, t2["id"])
    f2 = await review.raise_finding(sm, journal, r2, t2["id"], "medium", "identity",
                                    "The mismatch was not documented", "identity_verified",
                                    None)
    late = datetime.now(timezone.utc) + timedelta(days=30)
    assert await review.escalate_overdue(sm, journal, job, now=late) == [f2["id"]]
    assert await review.escalate_overdue(sm, journal, job, now=late) == []
    before = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    assert await review.list_tasks(sm, r2, overdue=True, now=before) == []
    overdue = await review.list_tasks(sm, r2, mine=True, overdue=True, now=late)
    assert t2["id"] in [x["id"] for x in overdue] and all(x["overdue"] for x in overdue)
    summary = await review.summary(sm, DAY, DAY + timedelta(days=1))
    assert {"category": "coercion", "severity": "high", "count": 1} in summary["findings"]
    assert summary["rectify_hours"]["count"] == 1 and summary["open_findings"] == 1
    ana_cov = [c for c in summary["coverage"] if c["agent"] == "ana"][0]
    assert ana_cov["calls"] == 6 and ana_cov["selected"] >= 2
