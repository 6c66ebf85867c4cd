"""Review tasks, checklists, findings and their rectification (docs/supervision.md).

The rules of the workflow, in one place for the API and the CLI:

* a task per selected call (:func:`run_sampling`, :func:`select_manually`), due after
  ``due_working_days`` working days, states ``open → in_review → findings_raised → closed``;
* four eyes: a task is never assigned to, started or answered by anyone who took part in
  the call (:func:`participants`: its agent, the leads of its approvals, every staff actor
  of its timeline other than viewers) — ``four_eyes``;
* findings go to the call's agent, who responds; the reviewing auditor accepts or rejects
  the response; a finding past its due date is escalated (team leads see it);
* every action is a ``review_actions`` row (who, when) and an event on the call's
  hash-chained timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Protocol

from sqlalchemy import case, func, select
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.audit import sampling
from cloudcounter.audit.checklists import default_checklists
from cloudcounter.db.audit_models import Finding, ReviewAction, ReviewItem, ReviewTask
from cloudcounter.db.models import CallApproval, CallEvent, CallSession, CallStep, User
from cloudcounter.errors import Conflict, Forbidden, InvalidMessage, InvalidState, NotFound

OPEN_FINDING = ("open", "responded", "rejected")
#: timeline kinds that are not taking part (viewing, exporting, reviewing, holds)
NOT_PARTICIPATION = ("audit.", "recording.accessed", "evidence.accessed", "review.",
                     "finding.", "retention.")


class Who(Protocol):
    @property
    def user_id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def actor(self) -> str: ...


@dataclass(frozen=True)
class System:
    """The sampling job or the CLI acting (no staff account)."""
    actor: str
    user_id: int | None = None
    role: str = "system"
    username: str = ""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(v: datetime) -> datetime:
    return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v


def due_after(start: datetime, working_days: int) -> datetime:
    """The end (UTC) of the ``working_days``-th working day (Monday to Friday) after
    ``start``'s day."""
    day, n = start.date(), 0
    while n < max(1, working_days):
        day += timedelta(days=1)
        if day.weekday() < 5:
            n += 1
    return datetime.combine(day, time(23, 59, 59), timezone.utc)


def task_dict(t: ReviewTask, now: datetime | None = None,
              names: dict[int, str] | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {"id": t.id, "call_id": t.call_id, "state": t.state, "rule": t.rule_id,
            "rule_version": t.rule_version, "reason": t.reason, "draw": round(t.draw, 6),
            "selected_at": aware(t.selected_at).isoformat(), "selected_by": t.selected_by,
            "assignee": (names or {}).get(t.assignee_id or -1),
            "due_at": aware(t.due_at).isoformat(),
            "overdue": t.state != "closed" and aware(t.due_at) < now,
            "checklist_version": t.checklist_version, "summary": t.summary,
            "started_at": aware(t.started_at).isoformat() if t.started_at else None,
            "closed_at": aware(t.closed_at).isoformat() if t.closed_at else None}


def finding_dict(f: Finding, now: datetime | None = None,
                 names: dict[int, str] | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {"id": f.id, "task_id": f.task_id, "call_id": f.call_id,
            "agent": (names or {}).get(f.agent_id or -1), "severity": f.severity,
            "category": f.category, "description": f.description, "item_id": f.item_id,
            "recording_time_s": f.recording_time_s, "state": f.state,
            "created_at": aware(f.created_at).isoformat(),
            "due_at": aware(f.due_at).isoformat(),
            "overdue": f.state in OPEN_FINDING and aware(f.due_at) < now,
            "escalated_at": aware(f.escalated_at).isoformat() if f.escalated_at else None,
            "resolved_at": aware(f.resolved_at).isoformat() if f.resolved_at else None}


async def usernames(s: AsyncSession) -> dict[int, str]:
    return {i: u for i, u in (await s.execute(select(User.id, User.username))).all()}


# -- four eyes --------------------------------------------------------------------------------
async def participants(s: AsyncSession, call_id: str) -> set[int]:
    """Staff who took part in the call: its agent, who asked for or decided its approvals,
    and every staff actor of its timeline (not viewers, exporters or reviewers)."""
    call = await s.get(CallSession, call_id)
    ids: set[int] = {call.agent_id} if call is not None and call.agent_id else set()
    for req, dec in (await s.execute(select(CallApproval.requested_by, CallApproval.decided_by)
                                     .where(CallApproval.call_id == call_id))).all():
        ids |= {i for i in (req, dec) if i}
    names = set()
    for actor, kind in (await s.execute(select(CallEvent.actor, CallEvent.kind)
                                        .where(CallEvent.call_id == call_id))).all():
        if kind.startswith(NOT_PARTICIPATION):
            continue
        role, _, name = actor.partition(":")
        if role in ("agent", "lead", "auditor", "admin") and name:
            names.add(name)
    if names:
        ids |= set((await s.scalars(select(User.id).where(User.username.in_(names)))).all())
    return ids


async def _four_eyes(s: AsyncSession, call_id: str, user_id: int) -> None:
    if user_id in await participants(s, call_id):
        raise Forbidden("four eyes: nobody reviews a call they took part in",
                        code="four_eyes")


async def _auto_assignee(s: AsyncSession, call_id: str) -> int | None:
    """The active auditor with the fewest open tasks who did not take part (ties: name)."""
    excluded = await participants(s, call_id)
    load = dict((await s.execute(select(ReviewTask.assignee_id, func.count())
                                 .where(ReviewTask.state != "closed",
                                        ReviewTask.assignee_id.is_not(None))
                                 .group_by(ReviewTask.assignee_id))).all())
    auditors = (await s.execute(select(User.id, User.username).where(
        User.role == "auditor", User.disabled.is_(False)))).all()
    ranked = sorted((load.get(i, 0), name, i) for i, name in auditors if i not in excluded)
    return ranked[0][2] if ranked else None


# -- actions ----------------------------------------------------------------------------------
def _act(s: AsyncSession, journal: Any, task: ReviewTask, who: Any, action: str, text: str = "",
         finding: Finding | None = None, **details: Any) -> None:
    s.add(ReviewAction(task_id=task.id, finding_id=finding.id if finding else None,
                       at=utcnow(), actor=who.actor, user_id=who.user_id, action=action,
                       text=text, details=details))
    kind = ("finding." if action.startswith("finding_") else "review.") + \
        action.removeprefix("finding_")
    payload = {"task_id": task.id, **({"finding_id": finding.id} if finding else {}),
               **details}
    if text:
        payload["text"] = text[:2000]
    # on the timeline once the transaction commits (a refused action leaves no event)
    pending = s.info.setdefault("timeline", [])
    if not pending:
        def emit(session: Any) -> None:
            for event in session.info.pop("timeline", []):
                journal.event(*event)
        sa_event.listen(s.sync_session, "after_commit", emit, once=True)
    pending.append((task.call_id, who.actor, kind, payload))


async def _task(s: AsyncSession, task_id: int, lock: bool = True) -> ReviewTask:
    stmt = select(ReviewTask).where(ReviewTask.id == task_id)
    if lock:
        stmt = stmt.with_for_update()
    task = (await s.scalars(stmt)).first()
    if task is None:
        raise NotFound("no such review task", code="unknown_task")
    return task


async def _create_task(s: AsyncSession, journal: Any, sel: sampling.Selection, who: Any,
                       rules: sampling.RuleSet, now: datetime) -> ReviewTask:
    task = ReviewTask(call_id=sel.call_id, rule_id=sel.rule_id, rule_version=sel.rule_version,
                      reason=sel.reason, draw=sel.draw, selected_at=now,
                      selected_by=who.actor, state="open",
                      due_at=due_after(now, rules.due_working_days),
                      checklist_version=default_checklists().version)
    s.add(task)
    await s.flush()
    task.assignee_id = await _auto_assignee(s, sel.call_id)
    _act(s, journal, task, who, "selected", rule=sel.rule_id, rule_version=sel.rule_version,
         reason=sel.reason, draw=round(sel.draw, 6))
    if task.assignee_id is not None:
        name = (await s.get(User, task.assignee_id)).username  # type: ignore[union-attr]
        _act(s, journal, task, who, "assigned", assignee=name)
    return task


async def run_sampling(sm: async_sessionmaker, journal: Any, start: date, end: date,
                       who: Any, rules: sampling.RuleSet | None = None,
                       now: datetime | None = None) -> list[dict[str, Any]]:
    """Select among the ended calls requested from ``start`` to ``end`` (exclusive) that
    have no task yet; the weekly minimum counts the tasks the weeks already have. Running
    it again selects nothing new (idempotent)."""
    rules = rules or sampling.default_rules()
    now = now or utcnow()
    lo = datetime.combine(start, time(), timezone.utc)
    hi = datetime.combine(end, time(), timezone.utc)
    async with sm() as s, s.begin():
        rows = (await s.execute(
            select(CallSession, User.username).outerjoin(User, User.id == CallSession.agent_id)
            .outerjoin(ReviewTask, ReviewTask.call_id == CallSession.id)
            .where(CallSession.state == "ended", CallSession.requested_at >= lo,
                   CallSession.requested_at < hi, ReviewTask.id.is_(None)))).all()
        candidates = []
        for call, agent in rows:
            events = (await s.scalars(select(CallEvent).where(
                CallEvent.call_id == call.id))).all()
            steps = (await s.scalars(select(CallStep).where(CallStep.call_id == call.id))).all()
            candidates.append(sampling.Candidate(
                call.id, agent, aware(call.requested_at).date(),
                sampling.call_signals(call, events, steps)))
        # tasks the touched weeks already have, per agent
        week_lo = datetime.combine(start - timedelta(days=start.weekday()), time(),
                                   timezone.utc)
        week_hi = datetime.combine(end + timedelta(days=7 - end.weekday()), time(),
                                   timezone.utc)
        already: dict[tuple[str, tuple[int, int]], int] = {}
        for agent, at in (await s.execute(
                select(User.username, CallSession.requested_at)
                .join(CallSession, CallSession.agent_id == User.id)
                .join(ReviewTask, ReviewTask.call_id == CallSession.id)
                .where(CallSession.requested_at >= week_lo,
                       CallSession.requested_at < week_hi))).all():
            key = (agent, sampling.week_of(aware(at).date()))
            already[key] = already.get(key, 0) + 1
        out = []
        names = await usernames(s)
        for sel in sampling.select_period(candidates, rules, already):
            task = await _create_task(s, journal, sel, who, rules, now)
            out.append(task_dict(task, now, names))
    return out


async def select_manually(sm: async_sessionmaker, journal: Any, who: Who, call_id: str,
                          reason: str) -> dict[str, Any]:
    rules = sampling.default_rules()
    now = utcnow()
    async with sm() as s, s.begin():
        call = await s.get(CallSession, call_id)
        if call is None:
            raise NotFound("no such call", code="unknown_call")
        if call.state != "ended":
            raise InvalidState("the call has not ended", code="call_not_ended")
        if (await s.scalars(select(ReviewTask.id).where(ReviewTask.call_id == call_id))).first():
            raise Conflict("the call is already selected for review", code="already_selected")
        sel = sampling.Selection(call_id, sampling.MANUAL, rules.version,
                                 f"Selected by {who.username}: {reason}",
                                 sampling.draw(call_id, rules.version))
        task = await _create_task(s, journal, sel, who, rules, now)
        return task_dict(task, now, await usernames(s))


async def assign(sm: async_sessionmaker, journal: Any, who: Who, task_id: int,
                 username: str) -> dict[str, Any]:
    async with sm() as s, s.begin():
        task = await _task(s, task_id)
        if task.state == "closed":
            raise InvalidState("the review is closed", code="task_closed")
        user = (await s.scalars(select(User).where(User.username == username))).first()
        if user is None or user.role != "auditor" or user.disabled:
            raise InvalidMessage(f"{username!r} is not an active auditor",
                                 code="not_an_auditor")
        await _four_eyes(s, task.call_id, user.id)
        task.assignee_id = user.id
        _act(s, journal, task, who, "assigned", assignee=user.username)
        return task_dict(task, names=await usernames(s))


def _assignee(task: ReviewTask, who: Who) -> None:
    if task.assignee_id != who.user_id:
        raise Forbidden("only the assigned auditor reviews the call", code="not_assignee")


async def start_review(sm: async_sessionmaker, journal: Any, who: Who,
                       task_id: int) -> dict[str, Any]:
    async with sm() as s, s.begin():
        task = await _task(s, task_id)
        _assignee(task, who)
        await _four_eyes(s, task.call_id, who.user_id)
        if task.state != "open":
            raise InvalidState(f"the review is {task.state}", code="bad_task_state")
        task.state, task.started_at = "in_review", utcnow()
        _act(s, journal, task, who, "started")
        return task_dict(task, names=await usernames(s))


async def answer_item(sm: async_sessionmaker, journal: Any, who: Who, task_id: int,
                      item_id: str, result: str, comment: str,
                      recording_time_s: float | None) -> dict[str, Any]:
    async with sm() as s, s.begin():
        task = await _task(s, task_id)
        _assignee(task, who)
        await _four_eyes(s, task.call_id, who.user_id)
        if task.state != "in_review":
            raise InvalidState("answer the checklist while the review is in progress",
                               code="bad_task_state")
        call = await s.get(CallSession, task.call_id)
        items = {i.id for i in default_checklists().for_service(call.service_code)}  # type: ignore[union-attr]
        if item_id not in items:
            raise InvalidMessage(f"no checklist item {item_id!r} for this service",
                                 code="unknown_item")
        if result == "fail" and not comment.strip():
            raise InvalidMessage("a failed item needs a comment", code="comment_required")
        row = (await s.scalars(select(ReviewItem).where(ReviewItem.task_id == task_id,
                                                        ReviewItem.item_id == item_id))).first()
        if row is None:
            row = ReviewItem(task_id=task_id, item_id=item_id, by=who.user_id)
            s.add(row)
        row.result, row.comment, row.recording_time_s = result, comment, recording_time_s
        row.at, row.by = utcnow(), who.user_id
        _act(s, journal, task, who, "item_answered", comment, item=item_id, result=result,
             recording_time_s=recording_time_s)
        return {"item_id": item_id, "result": result, "comment": comment,
                "recording_time_s": recording_time_s}


async def raise_finding(sm: async_sessionmaker, journal: Any, who: Who, task_id: int,
                        severity: str, category: str, description: str,
                        item_id: str | None, recording_time_s: float | None,
                        due_days: int = 5) -> dict[str, Any]:
    if category not in default_checklists().categories:
        raise InvalidMessage(f"unknown category {category!r}", code="unknown_category")
    async with sm() as s, s.begin():
        task = await _task(s, task_id)
        _assignee(task, who)
        await _four_eyes(s, task.call_id, who.user_id)
        if task.state not in ("in_review", "findings_raised"):
            raise InvalidState(f"the review is {task.state}", code="bad_task_state")
        call = await s.get(CallSession, task.call_id)
        now = utcnow()
        f = Finding(task_id=task.id, call_id=task.call_id, agent_id=call.agent_id,  # type: ignore[union-attr]
                    severity=severity, category=category, description=description,
                    item_id=item_id, recording_time_s=recording_time_s, state="open",
                    created_at=now, created_by=who.user_id, due_at=due_after(now, due_days))
        s.add(f)
        await s.flush()
        _act(s, journal, task, who, "finding_recorded", description, f, severity=severity,
             category=category, recording_time_s=recording_time_s)
        return finding_dict(f, now, await usernames(s))


async def complete_review(sm: async_sessionmaker, journal: Any, who: Who, task_id: int,
                          summary: str) -> dict[str, Any]:
    async with sm() as s, s.begin():
        task = await _task(s, task_id)
        _assignee(task, who)
        await _four_eyes(s, task.call_id, who.user_id)
        if task.state != "in_review":
            raise InvalidState(f"the review is {task.state}", code="bad_task_state")
        call = await s.get(CallSession, task.call_id)
        want = {i.id for i in default_checklists().for_service(call.service_code)}  # type: ignore[union-attr]
        have = set((await s.scalars(select(ReviewItem.item_id)
                                    .where(ReviewItem.task_id == task_id))).all())
        if want - have:
            raise InvalidState(f"checklist items not answered: {', '.join(sorted(want - have))}",
                               code="checklist_incomplete")
        open_ = (await s.scalar(select(func.count()).select_from(Finding).where(
            Finding.task_id == task_id, Finding.state.in_(OPEN_FINDING)))) or 0
        now = utcnow()
        task.summary, task.completed_at = summary, now
        task.state = "findings_raised" if open_ else "closed"
        if not open_:
            task.closed_at = now
        _act(s, journal, task, who, "completed", summary, state=task.state, findings=open_)
        return task_dict(task, now, await usernames(s))


async def _finding(s: AsyncSession, finding_id: int) -> tuple[Finding, ReviewTask]:
    f = (await s.scalars(select(Finding).where(Finding.id == finding_id)
                         .with_for_update())).first()
    if f is None:
        raise NotFound("no such finding", code="unknown_finding")
    return f, await _task(s, f.task_id)


async def respond(sm: async_sessionmaker, journal: Any, who: Who, finding_id: int,
                  text: str) -> dict[str, Any]:
    """The call's agent answers a finding (open or rejected)."""
    async with sm() as s, s.begin():
        f, task = await _finding(s, finding_id)
        if f.agent_id != who.user_id:
            raise NotFound("no such finding", code="unknown_finding")  # not even its existence
        if f.state not in ("open", "rejected"):
            raise InvalidState(f"the finding is {f.state}", code="bad_finding_state")
        f.state = "responded"
        _act(s, journal, task, who, "finding_responded", text, f)
        return finding_dict(f, names=await usernames(s))


async def decide(sm: async_sessionmaker, journal: Any, who: Who, finding_id: int,
                 accept: bool, text: str) -> dict[str, Any]:
    """The reviewing auditor accepts the agent's response (the finding is resolved; the
    review closes with its last finding) or rejects it (back to the agent)."""
    async with sm() as s, s.begin():
        f, task = await _finding(s, finding_id)
        _assignee(task, who)
        if f.state != "responded":
            raise InvalidState("only a response is accepted or rejected",
                               code="bad_finding_state")
        now = utcnow()
        if accept:
            f.state, f.resolved_at = "accepted", now
        else:
            f.state = "rejected"
        _act(s, journal, task, who, "finding_accepted" if accept else "finding_rejected",
             text, f)
        await s.flush()
        if accept and task.state == "findings_raised":
            left = (await s.scalar(select(func.count()).select_from(Finding).where(
                Finding.task_id == task.id, Finding.state.in_(OPEN_FINDING)))) or 0
            if not left:
                task.state, task.closed_at = "closed", now
                _act(s, journal, task, who, "closed")
        return finding_dict(f, now, await usernames(s))


async def escalate_overdue(sm: async_sessionmaker, journal: Any, who: Any,
                           now: datetime | None = None) -> list[int]:
    """Mark findings past their due date and still open (once each); returns their ids."""
    now = now or utcnow()
    async with sm() as s, s.begin():
        rows = (await s.scalars(select(Finding).where(
            Finding.state.in_(OPEN_FINDING), Finding.due_at < now,
            Finding.escalated_at.is_(None)).with_for_update())).all()
        for f in rows:
            f.escalated_at = now
            _act(s, journal, await _task(s, f.task_id), who, "finding_escalated", "", f,
                 due_at=aware(f.due_at).isoformat())
        return [f.id for f in rows]


# -- reading -----------------------------------------------------------------------------------
async def list_tasks(sm: async_sessionmaker, who: Who, mine: bool = False,
                     overdue: bool = False, rule: str | None = None,
                     state: str | None = None, limit: int = 200,
                     now: datetime | None = None,
                     call_id: str | None = None) -> list[dict[str, Any]]:
    now = now or utcnow()
    stmt = select(ReviewTask)
    if call_id:
        stmt = stmt.where(ReviewTask.call_id == call_id)
    if mine:
        stmt = stmt.where(ReviewTask.assignee_id == who.user_id)
    if overdue:
        stmt = stmt.where(ReviewTask.state != "closed", ReviewTask.due_at < now)
    if rule:
        stmt = stmt.where(ReviewTask.rule_id == rule)
    if state:
        stmt = stmt.where(ReviewTask.state == state)
    async with sm() as s:
        rows = (await s.scalars(stmt.order_by(ReviewTask.due_at, ReviewTask.id)
                                .limit(limit))).all()
        names = await usernames(s)
    return [task_dict(t, now, names) for t in rows]


async def task_detail(sm: async_sessionmaker, who: Who, task_id: int) -> dict[str, Any]:
    async with sm() as s:
        task = await _task(s, task_id, lock=False)
        call = await s.get(CallSession, task.call_id)
        items = (await s.scalars(select(ReviewItem).where(ReviewItem.task_id == task_id))).all()
        findings = (await s.scalars(select(Finding).where(Finding.task_id == task_id)
                                    .order_by(Finding.id))).all()
        actions = (await s.scalars(select(ReviewAction).where(ReviewAction.task_id == task_id)
                                   .order_by(ReviewAction.id))).all()
        names = await usernames(s)
    answers = {i.item_id: i for i in items}
    checklist = [{"id": it.id, "text": it.text,
                  **({"result": answers[it.id].result, "comment": answers[it.id].comment,
                      "recording_time_s": answers[it.id].recording_time_s}
                     if it.id in answers else {"result": None})}
                 for it in default_checklists().for_service(call.service_code)]  # type: ignore[union-attr]
    return {"task": task_dict(task, names=names), "checklist": checklist,
            "categories": list(default_checklists().categories),
            "findings": [finding_dict(f, names=names) for f in findings],
            "actions": [action_dict(a) for a in actions]}


def action_dict(a: ReviewAction) -> dict[str, Any]:
    return {"at": aware(a.at).isoformat(), "actor": a.actor, "action": a.action,
            "finding_id": a.finding_id, "text": a.text, "details": a.details}


async def list_findings(sm: async_sessionmaker, who: Who, state: str | None = None,
                        limit: int = 200) -> list[dict[str, Any]]:
    """Agents: their own findings only; leads, auditors, admins: all (leads: their team,
    which is every agent while the hub has one team)."""
    stmt = select(Finding)
    if who.role == "agent":
        stmt = stmt.where(Finding.agent_id == who.user_id)
    if state == "open":
        stmt = stmt.where(Finding.state.in_(OPEN_FINDING))
    elif state:
        stmt = stmt.where(Finding.state == state)
    async with sm() as s:
        rows = (await s.scalars(stmt.order_by(Finding.due_at, Finding.id).limit(limit))).all()
        names = await usernames(s)
    return [finding_dict(f, names=names) for f in rows]


async def finding_thread(sm: async_sessionmaker, who: Who, finding_id: int) -> dict[str, Any]:
    async with sm() as s:
        f = (await s.scalars(select(Finding).where(Finding.id == finding_id))).first()
        if f is None or (who.role == "agent" and f.agent_id != who.user_id):
            raise NotFound("no such finding", code="unknown_finding")
        actions = (await s.scalars(select(ReviewAction).where(
            ReviewAction.finding_id == finding_id).order_by(ReviewAction.id))).all()
        names = await usernames(s)
    return {"finding": finding_dict(f, names=names),
            "thread": [action_dict(a) for a in actions]}


async def package_review(s: AsyncSession, call_id: str) -> dict[str, Any] | None:
    """The review of a call for its evidence package (None: not selected)."""
    task = (await s.scalars(select(ReviewTask).where(ReviewTask.call_id == call_id))).first()
    if task is None:
        return None
    items = (await s.scalars(select(ReviewItem).where(ReviewItem.task_id == task.id))).all()
    findings = (await s.scalars(select(Finding).where(Finding.task_id == task.id))).all()
    actions = (await s.scalars(select(ReviewAction).where(ReviewAction.task_id == task.id)
                               .order_by(ReviewAction.id))).all()
    names = await usernames(s)
    return {"task": task_dict(task, names=names),
            "checklist": [{"item_id": i.item_id, "result": i.result, "comment": i.comment,
                           "recording_time_s": i.recording_time_s,
                           "by": names.get(i.by)} for i in items],
            "findings": [finding_dict(f, names=names) for f in findings],
            "actions": [action_dict(a) for a in actions]}


async def summary(sm: async_sessionmaker, start: date, end: date) -> dict[str, Any]:
    """Review coverage per agent and service, findings by category and severity, and the
    time to rectify, for calls requested from ``start`` to ``end`` (exclusive)."""
    lo = datetime.combine(start, time(), timezone.utc)
    hi = datetime.combine(end, time(), timezone.utc)
    async with sm() as s:
        rows = (await s.execute(
            select(User.username, CallSession.service_code, func.count(CallSession.id),
                   func.count(ReviewTask.id),
                   func.sum(case((ReviewTask.state == "closed", 1), else_=0)))
            .outerjoin(User, User.id == CallSession.agent_id)
            .outerjoin(ReviewTask, ReviewTask.call_id == CallSession.id)
            .where(CallSession.state == "ended", CallSession.requested_at >= lo,
                   CallSession.requested_at < hi)
            .group_by(User.username, CallSession.service_code))).all()
        fs = (await s.execute(
            select(Finding, User.username).outerjoin(User, User.id == Finding.agent_id)
            .join(CallSession, CallSession.id == Finding.call_id)
            .where(CallSession.requested_at >= lo, CallSession.requested_at < hi))).all()
    coverage = [{"agent": a, "service": svc, "calls": n, "selected": sel,
                 "closed": int(closed or 0),
                 "coverage": round(sel / n, 4) if n else 0.0}
                for a, svc, n, sel, closed in rows]
    by_cat: dict[tuple[str, str], int] = {}
    times = []
    for f, _agent in fs:
        by_cat[(f.category, f.severity)] = by_cat.get((f.category, f.severity), 0) + 1
        if f.resolved_at is not None:
            times.append((aware(f.resolved_at) - aware(f.created_at)).total_seconds() / 3600)
    times.sort()
    return {"from": start.isoformat(), "to": end.isoformat(), "coverage": coverage,
            "findings": [{"category": c, "severity": sv, "count": n}
                         for (c, sv), n in sorted(by_cat.items())],
            "rectify_hours": {"count": len(times),
                              "median": times[len(times) // 2] if times else None,
                              "max": times[-1] if times else None},
            "open_findings": sum(1 for f, _ in fs if f.state in OPEN_FINDING)}
