"""The review workflow's HTTP API (docs/supervision.md, docs/api.md).

Roles and ownership on every request: auditors (and admins) select, assign and read
tasks; only the assigned auditor, who took no part in the call, reviews it (``four_eyes``,
``not_assignee``); agents read and answer their own findings only (another agent's
finding does not exist for them: ``unknown_finding``); team leads read every finding and
the summary. Nothing here deletes anything.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field, StringConstraints, ValidationError

from cloudcounter.audit import review
from cloudcounter.errors import InvalidMessage, NotFound
from cloudcounter.hub.api import AUDIT_ROLES, CTX, body, staff
from cloudcounter.signaling.edge import schema_problems
from cloudcounter.signaling.schemas import CallId, LongText, Message, Reason, StepId

routes = web.RouteTableDef()
Text = Annotated[LongText, StringConstraints(min_length=1)]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class ManualSelection(Message):
    call_id: CallId
    reason: Reason


class Assign(Message):
    username: str = Field(min_length=1, max_length=64)


class ItemAnswer(Message):
    result: Literal["pass", "fail", "na"]
    comment: LongText = ""
    recording_time_s: float | None = Field(default=None, ge=0, le=86400)


class NewFinding(Message):
    severity: Literal["low", "medium", "high", "critical"]
    category: Code
    description: Text
    item_id: StepId | None = None
    recording_time_s: float | None = Field(default=None, ge=0, le=86400)


class Complete(Message):
    summary: LongText = ""


class Response(Message):
    text: Text


class Decision(Message):
    accept: bool
    text: LongText = ""


class TaskQuery(Message):
    model_config = ConfigDict(extra="ignore", frozen=True)
    mine: bool = False
    overdue: bool = False
    rule: Code | None = None
    state: Literal["open", "in_review", "findings_raised", "closed"] | None = None
    call_id: CallId | None = None


class Period(Message):
    model_config = ConfigDict(extra="ignore", frozen=True)
    date_from: date | None = None
    date_to: date | None = None
    format: Literal["json", "csv"] = "json"


def query(request: web.Request, model: type[Message]) -> Any:
    try:
        return model.model_validate({k: v for k, v in request.query.items() if v != ""})
    except ValidationError as exc:
        raise InvalidMessage("bad query", code="invalid_query",
                             problems=schema_problems(exc)) from None


def int_id(request: web.Request, name: str, what: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound(f"no such {what}", code=f"unknown_{what}")
    return int(raw)


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


@routes.get("/api/review/tasks")
async def tasks(request: web.Request) -> web.Response:
    who = staff(request, *AUDIT_ROLES)
    q = query(request, TaskQuery)
    return ok({"tasks": await review.list_tasks(request.app[CTX].sm, who, q.mine, q.overdue,
                                                 q.rule, q.state, call_id=q.call_id)})


@routes.post("/api/review/tasks")
async def select_call(request: web.Request) -> web.Response:
    who = staff(request, *AUDIT_ROLES)
    req = await body(request, ManualSelection)
    ctx = request.app[CTX]
    return ok({"task": await review.select_manually(ctx.sm, ctx.journal, who, req.call_id,
                                                    req.reason)}, 201)


@routes.get("/api/review/tasks/{task_id}")
async def task(request: web.Request) -> web.Response:
    who = staff(request, *AUDIT_ROLES)
    return ok(await review.task_detail(request.app[CTX].sm, who,
                                       int_id(request, "task_id", "task")))


@routes.post("/api/review/tasks/{task_id}/assign")
async def assign(request: web.Request) -> web.Response:
    who = staff(request, *AUDIT_ROLES)
    req = await body(request, Assign)
    ctx = request.app[CTX]
    return ok({"task": await review.assign(ctx.sm, ctx.journal, who,
                                           int_id(request, "task_id", "task"), req.username)})


@routes.post("/api/review/tasks/{task_id}/start")
async def start(request: web.Request) -> web.Response:
    who = staff(request, "auditor")
    ctx = request.app[CTX]
    return ok({"task": await review.start_review(ctx.sm, ctx.journal, who,
                                                 int_id(request, "task_id", "task"))})


@routes.put("/api/review/tasks/{task_id}/items/{item_id}")
async def answer(request: web.Request) -> web.Response:
    who = staff(request, "auditor")
    req = await body(request, ItemAnswer)
    ctx = request.app[CTX]
    item = request.match_info["item_id"][:48]
    return ok({"item": await review.answer_item(ctx.sm, ctx.journal, who,
                                                int_id(request, "task_id", "task"), item,
                                                req.result, req.comment,
                                                req.recording_time_s)})


@routes.post("/api/review/tasks/{task_id}/findings")
async def new_finding(request: web.Request) -> web.Response:
    who = staff(request, "auditor")
    req = await body(request, NewFinding)
    ctx = request.app[CTX]
    return ok({"finding": await review.raise_finding(
        ctx.sm, ctx.journal, who, int_id(request, "task_id", "task"), req.severity,
        req.category, req.description, req.item_id, req.recording_time_s)}, 201)


@routes.post("/api/review/tasks/{task_id}/complete")
async def complete(request: web.Request) -> web.Response:
    who = staff(request, "auditor")
    req = await body(request, Complete)
    ctx = request.app[CTX]
    return ok({"task": await review.complete_review(ctx.sm, ctx.journal, who,
                                                    int_id(request, "task_id", "task"),
                                                    req.summary)})


@routes.get("/api/review/findings")
async def findings(request: web.Request) -> web.Response:
    who = staff(request, "agent", "lead", *AUDIT_ROLES)
    state = request.query.get("state") or None
    if state not in (None, "open", "responded", "accepted", "rejected"):
        raise InvalidMessage("state is open, responded, accepted or rejected",
                             code="invalid_query")
    return ok({"findings": await review.list_findings(request.app[CTX].sm, who, state)})


@routes.get("/api/review/findings/{finding_id}")
async def finding(request: web.Request) -> web.Response:
    who = staff(request, "agent", "lead", *AUDIT_ROLES)
    return ok(await review.finding_thread(request.app[CTX].sm, who,
                                          int_id(request, "finding_id", "finding")))


@routes.post("/api/review/findings/{finding_id}/respond")
async def respond(request: web.Request) -> web.Response:
    who = staff(request, "agent")
    req = await body(request, Response)
    ctx = request.app[CTX]
    return ok({"finding": await review.respond(ctx.sm, ctx.journal, who,
                                               int_id(request, "finding_id", "finding"),
                                               req.text)})


@routes.post("/api/review/findings/{finding_id}/decision")
async def decision(request: web.Request) -> web.Response:
    who = staff(request, "auditor")
    req = await body(request, Decision)
    ctx = request.app[CTX]
    return ok({"finding": await review.decide(ctx.sm, ctx.journal, who,
                                              int_id(request, "finding_id", "finding"),
                                              req.accept, req.text)})


@routes.get("/api/review/summary")
async def summary(request: web.Request) -> web.Response:
    """Coverage per agent and service, findings by category and severity, time to
    rectify (default: the last 30 days); ``?format=csv`` for the coverage as CSV."""
    staff(request, "lead", *AUDIT_ROLES)
    q = query(request, Period)
    end = q.date_to or date.today()
    start = q.date_from or end - timedelta(days=30)
    if start > end or (end - start).days > 366:
        raise InvalidMessage("date_from must be before date_to, at most a year apart",
                             code="invalid_query")
    data = await review.summary(request.app[CTX].sm, start, end + timedelta(days=1))
    if q.format == "csv":
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["agent", "service", "calls", "selected", "closed", "coverage"])
        for c in data["coverage"]:
            w.writerow([c["agent"] or "", c["service"], c["calls"], c["selected"], c["closed"],
                        c["coverage"]])
        w.writerow([])
        w.writerow(["category", "severity", "findings"])
        for f in data["findings"]:
            w.writerow([f["category"], f["severity"], f["count"]])
        return web.Response(text=out.getvalue(), content_type="text/csv", headers={
            "Content-Disposition": 'attachment; filename="supervision-summary.csv"'})
    return ok(data)
