"""The database side of the business: script and rule versions, a call's steps,
confirmations and approvals, customers' account changes.

Every write is one transaction: a refused or failed write leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.business.flow import Approval, Prompt, StepChange
from cloudcounter.business.risk import RuleSet, parse_rules
from cloudcounter.business.scripts import Script, parse_script, script_from_row
from cloudcounter.db.models import (
    CallApproval, CallConfirmation, CallStep, CustomerAccountChange, RiskRuleSet, ServiceScript,
    ServiceType,
)
from cloudcounter.errors import Conflict, InvalidMessage, InvalidState, NotFound

#: account changes older than this are not loaded for the risk signals
CHANGES_WINDOW_DAYS = 365


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def aware(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class AccountChange:
    kind: str
    changed_at: float
    channel: str


class BusinessStore:
    def __init__(self, sm: async_sessionmaker) -> None:
        self.sm = sm
        self._scripts: dict[int, Script] = {}  # versions never change: cached by id
        self._rules: dict[int, RuleSet] = {}

    # -- scripts ---------------------------------------------------------------------------
    async def current_script(self, service: str) -> Script | None:
        async with self.sm() as s:
            return await self._current_script(s, service)

    async def _current_script(self, s: AsyncSession, service: str) -> Script | None:
        row = (await s.execute(
            select(ServiceScript.id, ServiceScript.version)
            .where(ServiceScript.service_code == service)
            .order_by(ServiceScript.version.desc()).limit(1))).first()
        if row is None:
            return None
        if row.id not in self._scripts:
            full = await s.get(ServiceScript, row.id)
            assert full is not None
            self._scripts[row.id] = script_from_row(service, full.title, full.steps,
                                                    full.version, full.id)
        return self._scripts[row.id]

    async def answer_inputs(self, service: str, customer_id: str, now: float
                            ) -> tuple[Script | None, RuleSet, list[AccountChange]]:
        """What answering a call reads (the current script and risk rules, the customer's
        recent account changes), in one session: the answer's path reads it per call."""
        async with self.sm() as s:
            return (await self._current_script(s, service), await self._current_rules(s),
                    await self._account_changes(s, customer_id, now))

    async def script(self, service: str, version: int | None = None) -> Script:
        if version is None:
            script = await self.current_script(service)
            if script is None:
                raise NotFound(f"service {service!r} has no script", code="no_script")
            return script
        async with self.sm() as s:
            row = (await s.scalars(select(ServiceScript).where(
                ServiceScript.service_code == service, ServiceScript.version == version))).first()
        if row is None:
            raise NotFound(f"service {service!r} has no script version {version}",
                           code="no_script")
        return script_from_row(service, row.title, row.steps, row.version, row.id)

    async def versions(self, service: str) -> list[dict[str, Any]]:
        async with self.sm() as s:
            rows = (await s.scalars(select(ServiceScript).where(
                ServiceScript.service_code == service).order_by(ServiceScript.version))).all()
        return [{"version": r.version, "title": r.title, "steps": len(r.steps),
                 "sha256": r.sha256, "created_at": aware(r.created_at).isoformat(),
                 "created_by": r.created_by, "note": r.note} for r in rows]

    async def import_script(self, service: str, data: Any, actor: str,
                            note: str | None = None) -> Script:
        """Validate and store ``data`` as the service's next script version (all or
        nothing). Importing the same content as the current version adds nothing."""
        script = parse_script(data, service)
        async with self.sm() as s, s.begin():
            if await s.get(ServiceType, service) is None:
                raise NotFound(f"unknown service {service!r}", code="unknown_service")
            current = (await s.scalars(select(ServiceScript).where(
                ServiceScript.service_code == service)
                .order_by(ServiceScript.version.desc()).limit(1))).first()
            if current is not None and current.sha256 == script.sha256:
                return script_from_row(service, current.title, current.steps,
                                       current.version, current.id)
            version = (current.version if current is not None else 0) + 1
            row = ServiceScript(service_code=service, version=version, title=script.title,
                                steps=[st.to_dict() for st in script.steps],
                                sha256=script.sha256, created_by=actor, note=note)
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:
                raise Conflict("another import of this service's script ran at the same "
                               "time; try again", code="concurrent_import") from None
            return Script(service, script.title, script.steps, version, row.id)

    # -- risk rules ------------------------------------------------------------------------
    async def current_rules(self) -> RuleSet:
        async with self.sm() as s:
            return await self._current_rules(s)

    async def _current_rules(self, s: AsyncSession) -> RuleSet:
        version = await s.scalar(select(func.max(RiskRuleSet.version)))
        if version is None:
            raise InvalidState("no risk rule set in the database (run `cloudcounter db "
                               "upgrade`)", code="no_rules")
        if version not in self._rules:
            row = await s.get(RiskRuleSet, version)
            assert row is not None
            self._rules[version] = parse_rules(row.rules, version)
        return self._rules[version]

    async def rules(self, version: int | None = None) -> RuleSet:
        if version is None:
            return await self.current_rules()
        async with self.sm() as s:
            row = await s.get(RiskRuleSet, version)
        if row is None:
            raise NotFound(f"no risk rule set version {version}", code="no_rules")
        return parse_rules(row.rules, version)

    async def import_rules(self, data: Any, actor: str, note: str | None = None) -> RuleSet:
        rules = parse_rules(data)
        async with self.sm() as s, s.begin():
            current = (await s.scalars(select(RiskRuleSet)
                                       .order_by(RiskRuleSet.version.desc()).limit(1))).first()
            if current is not None and current.sha256 == rules.sha256:
                return parse_rules(current.rules, current.version)
            version = (current.version if current is not None else 0) + 1
            s.add(RiskRuleSet(version=version, rules=rules.to_dict(), sha256=rules.sha256,
                              created_by=actor, note=note))
            try:
                await s.flush()
            except IntegrityError:
                raise Conflict("another import of the rules ran at the same time; try again",
                               code="concurrent_import") from None
        return parse_rules(rules.to_dict(), version)

    # -- customers' account changes ------------------------------------------------------------
    async def account_changes(self, customer_id: str, now: float) -> list[AccountChange]:
        async with self.sm() as s:
            return await self._account_changes(s, customer_id, now)

    @staticmethod
    async def _account_changes(s: AsyncSession, customer_id: str, now: float
                               ) -> list[AccountChange]:
        since = utc(now) - timedelta(days=CHANGES_WINDOW_DAYS)
        rows = (await s.scalars(select(CustomerAccountChange).where(
            CustomerAccountChange.customer_id == customer_id,
            CustomerAccountChange.changed_at >= since)
            .order_by(CustomerAccountChange.changed_at.desc()).limit(50))).all()
        return [AccountChange(r.kind, aware(r.changed_at).timestamp(), r.channel) for r in rows]

    async def add_account_change(self, customer_id: str, kind: str, changed_at: float,
                                 channel: str, call_id: str | None = None,
                                 detail: str | None = None) -> None:
        async with self.sm() as s, s.begin():
            s.add(CustomerAccountChange(customer_id=customer_id, kind=kind,
                                        changed_at=utc(changed_at), channel=channel,
                                        call_id=call_id, detail=detail))

    # -- a call's records ------------------------------------------------------------------------
    async def record_prompt(self, call_id: str, prompt: Prompt, script_id: int | None,
                            position: Mapping[str, Any] | None) -> None:
        async with self.sm() as s, s.begin():
            s.add(CallConfirmation(
                call_id=call_id, step_id=prompt.step_id, prompt_id=prompt.prompt_id,
                kind=prompt.kind, text=prompt.text, text_sha256=prompt.sha256,
                script_id=script_id, shown_at=utc(prompt.shown_at),
                shown_segment=position.get("segment") if position else None,
                shown_offset_s=position.get("offset_s") if position else None))

    async def record_step(self, call_id: str, change: StepChange, script_id: int | None,
                          position: Mapping[str, Any] | None,
                          text: tuple[str, str, str] | None = None,
                          account_change: tuple[str, str] | None = None) -> None:
        """The step row, and for an answer its confirmation row (the prompt's row gets the
        answer; a spoken answer without a prompt gets a row of its own), in one
        transaction. ``text`` is (kind, text, sha256) of the statement or question."""
        seg = position.get("segment") if position else None
        off = position.get("offset_s") if position else None
        async with self.sm() as s, s.begin():
            s.add(CallStep(call_id=call_id, step_id=change.step_id, kind=change.kind,
                           state=change.state.value, method=change.method, actor=change.actor,
                           at=utc(change.at), answer=change.answer, note=change.note,
                           details=dict(change.details), segment=seg, offset_s=off))
            answered = {"answered_at": utc(change.at), "answer": change.answer,
                        "answered_by": change.actor, "method": change.method,
                        "note": change.note, "answered_segment": seg, "answered_offset_s": off}
            if change.prompt is not None:
                result = await s.execute(
                    update(CallConfirmation)
                    .where(CallConfirmation.prompt_id == change.prompt.prompt_id,
                           CallConfirmation.answered_at.is_(None))
                    .values(**answered))
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    raise Conflict("this prompt was answered already", code="prompt_not_open")
            elif text is not None and change.answer is not None:
                kind, body, sha = text
                s.add(CallConfirmation(call_id=call_id, step_id=change.step_id, kind=kind,
                                       text=body, text_sha256=sha, script_id=script_id,
                                       **answered))
            if account_change is not None:
                customer_id, kind = account_change
                s.add(CustomerAccountChange(customer_id=customer_id, kind=kind,
                                            changed_at=utc(change.at), channel="video_counter",
                                            call_id=call_id,
                                            detail=f"step {change.step_id} by {change.actor}"))
            try:
                await s.flush()
            except IntegrityError:
                raise InvalidState(f"step {change.step_id!r} is recorded already",
                                   code="step_not_open") from None

    async def record_skips(self, call_id: str, changes: list[StepChange]) -> None:
        if not changes:
            return
        async with self.sm() as s, s.begin():
            for c in changes:
                s.add(CallStep(call_id=call_id, step_id=c.step_id, kind=c.kind,
                               state=c.state.value, method=c.method, actor=c.actor,
                               at=utc(c.at), note=c.note, details={}))

    # -- approvals -----------------------------------------------------------------------------
    async def add_approval(self, call_id: str, requested_by: int, note: str,
                           flow_risk: Mapping[str, Any], now: float) -> int:
        async with self.sm() as s, s.begin():
            row = CallApproval(call_id=call_id, state="pending", requested_by=requested_by,
                               requested_at=utc(now), request_note=note,
                               risk_score=flow_risk["score"], risk_level=flow_risk["level"],
                               risk_reasons=flow_risk["reasons"],
                               risk_rules_version=flow_risk["rules_version"])
            s.add(row)
            await s.flush()
            return int(row.id)

    async def decide_approval(self, a: Approval, approved: bool, lead_id: int,
                              note: str | None, now: float) -> None:
        async with self.sm() as s, s.begin():
            result = await s.execute(
                update(CallApproval).where(CallApproval.id == a.approval_id,
                                           CallApproval.state == "pending")
                .values(state="approved" if approved else "refused", decided_by=lead_id,
                        decided_at=utc(now), decision_note=note))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise InvalidState("this request is decided already", code="approval_decided")

    async def withdraw_approval(self, approval_id: int) -> None:
        async with self.sm() as s, s.begin():
            await s.execute(update(CallApproval).where(CallApproval.id == approval_id,
                                                       CallApproval.state == "pending")
                            .values(state="withdrawn"))


def checked_kind(kind: str) -> str:
    if not kind or len(kind) > 32 or not kind.replace("_", "").isalnum():
        raise InvalidMessage("an account change kind is a short code (contact_details, "
                             "phone, email, address...)", code="invalid_kind")
    return kind
