"""The flows of the calls in progress: the hub's one entry point to the business.

:class:`FlowService` keeps a :class:`~.flow.CallFlow` per answered call (single node, like
the queue), records every change durably (:class:`~.store.BusinessStore`) before it
becomes state, and talks to the rest of the hub through :class:`FlowPort` (the timeline,
the sockets of the call's agent and customer and of the supervisors, the position in the
recordings). Operations on one call run one at a time (a lock per call). Check results
and alerts from the analysis arrive through a bounded queue and one owned task; a second
task re-assesses calls while a continuity alert lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Mapping, Protocol

from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.business.flow import (
    Approval, ApprovalState, CallFlow, FlowState, Prompt, StepChange, StepState, WrapupPlan,
)
from cloudcounter.business.risk import Assessment, CallSignals, RuleSet, days_between
from cloudcounter.business.scripts import Script, StepKind
from cloudcounter.business.store import AccountChange, BusinessStore
from cloudcounter.business.subject import subject_facts
from cloudcounter.errors import InvalidState, NotFound

log = logging.getLogger(__name__)
CONTACT_KINDS = frozenset({"contact_details", "phone", "email", "address"})
ANALYSIS_QUEUE = 10_000
TICK_S = 1.0
FORGET_AFTER_S = 3600.0  # an ended flow never wrapped up is dropped after this


class FlowPort(Protocol):
    """What the business needs from the hub."""

    def journal(self, call_id: str, actor: str, kind: str, payload: dict[str, Any]) -> None: ...
    def call_updated(self, call_id: str, **fields: Any) -> None: ...
    async def call_row(self) -> None: ...
    def position(self, call_id: str) -> dict[str, Any] | None: ...
    async def to_agent(self, agent_id: int, event: str, data: dict[str, Any]) -> None: ...
    async def to_customer(self, customer_id: str, event: str, data: dict[str, Any]) -> None: ...
    async def to_leads(self, event: str, data: dict[str, Any]) -> None: ...


@dataclass
class Pending:
    """What is known of a call before it is answered."""

    customer_id: str
    service: str
    subject: dict[str, Any] | None
    address: str | None
    prompts: bool


@dataclass(frozen=True)
class Prepared:
    script: Script | None
    rules: RuleSet
    changes: tuple[AccountChange, ...]


@dataclass
class _Call:
    flow: CallFlow
    customer_name: str
    agent_name: str
    address: str | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended_at: float | None = None


def new_prompt_id() -> str:
    return "prm_" + secrets.token_hex(8)


class FlowService:
    def __init__(self, sm: async_sessionmaker, port: FlowPort,
                 clock: Any = time.time) -> None:
        self.store = BusinessStore(sm)
        self.port = port
        self.clock = clock
        self.calls: dict[str, _Call] = {}
        self.pending: dict[str, Pending] = {}
        self._approvals: dict[int, str] = {}  # approval id -> call id
        self._queue: asyncio.Queue[tuple[str, str, dict[str, Any], float]] = asyncio.Queue(
            ANALYSIS_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._analysis_loop(), name="flows-analysis"),
                       asyncio.create_task(self._tick_loop(), name="flows-tick")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    # -- the call's life -----------------------------------------------------------------------
    def call_requested(self, call_id: str, customer_id: str, service: str,
                       subject: dict[str, Any] | None, address: str | None,
                       prompts: bool) -> None:
        self.pending[call_id] = Pending(customer_id, service, subject, address, prompts)
        if subject:
            self.port.call_updated(call_id, subject=subject)

    async def prepare(self, call_id: str, customer_id: str, service: str) -> Prepared | None:
        """Read what the call's flow needs (before the answer, so that a failing read
        leaves the offer as it was). None when the call already has its flow."""
        if call_id in self.calls:
            return None
        script, rules, changes = await self.store.answer_inputs(service, customer_id,
                                                                self.clock())
        return Prepared(script, rules, tuple(changes))

    async def answered(self, call_id: str, customer_id: str, service: str,
                       prepared: Prepared | None, *, agent_id: int, agent_actor: str,
                       agent_name: str, profile: Mapping[str, Any],
                       service_name: str) -> dict[str, Any]:
        now = self.clock()
        call = self.calls.get(call_id)
        if call is not None:  # answered again after a re-queue: the flow goes on
            async with call.lock:
                f = call.flow
                f.agent_id, f.agent_actor, f.live = agent_id, agent_actor, True
                call.agent_name, call.ended_at = agent_name, None
                self.port.journal(call_id, agent_actor, "flow.resumed", {
                    "script_version": f.script_version, "open_required": f.open_required()})
                return f.snapshot()
        assert prepared is not None
        pending = self.pending.pop(call_id, None) or Pending(customer_id, service, None, None,
                                                             True)
        facts: dict[str, str | None] = {
            "customer_name": profile.get("name"), "card_last4": profile.get("card_last4"),
            "phone_masked": profile.get("phone_masked"), "service_name": service_name,
            "today": datetime.fromtimestamp(now, timezone.utc).date().isoformat(),
            **subject_facts(pending.subject)}
        contact = [c.changed_at for c in prepared.changes if c.kind in CONTACT_KINDS]
        signals = CallSignals(
            service=service, customer_risk=str(profile.get("risk_level") or "low"),
            amount=(pending.subject or {}).get("amount"),
            days_since_contact_change=days_between(max(contact), now) if contact else None,
            days_since_account_change=(days_between(max(c.changed_at for c in prepared.changes),
                                                    now) if prepared.changes else None))
        flow = CallFlow(call_id, customer_id, service, prepared.script, facts, signals,
                        prepared.rules, agent_id=agent_id, agent_actor=agent_actor,
                        customer_prompts=pending.prompts)
        call = _Call(flow, str(profile.get("name") or ""), agent_name, pending.address)
        self.calls[call_id] = call
        script = prepared.script
        if script is not None:
            self.port.journal(call_id, agent_actor, "script.started", {
                "script_id": script.script_id, "version": script.version,
                "title": script.title, "sha256": script.sha256, "steps": len(script.steps)})
            self.port.call_updated(call_id, script_id=script.script_id,
                                   script_version=script.version)
        assessment = flow.reassess(now)
        if assessment is not None:
            self._risk_recorded(call, assessment, None)
        return flow.snapshot()

    async def customer_connected(self, call_id: str, address: str | None,
                                 prompts: bool) -> dict[str, Any] | None:
        """The customer (re)connected during the call; returns the prompt to show again."""
        pending = self.pending.get(call_id)
        if pending is not None:
            if address and pending.address and address != pending.address:
                pending.address = address  # before the answer: not a mid-call change
            pending.prompts = prompts
            return None
        call = self.calls.get(call_id)
        if call is None:
            return None
        async with call.lock:
            f = call.flow
            f.customer_prompts = prompts
            if address and call.address and address != call.address:
                self.port.journal(call_id, f"customer:{f.customer_id}", "network.changed",
                                  {"previous": call.address, "address": address})
                f.apply_signals(address_changes=f.signals.address_changes + 1)
                self._reassess(call)
            if address:
                call.address = address
            await self._push(call)
            return f.prompt.to_customer(call_id, f.script_version) if f.prompt else None

    def open_prompt(self, call_id: str) -> dict[str, Any] | None:
        call = self.calls.get(call_id)
        if call is None or call.flow.prompt is None:
            return None
        return call.flow.prompt.to_customer(call_id, call.flow.script_version)

    async def call_requeued(self, call_id: str) -> None:
        await self._customer_gone(call_id, "agent_lost")

    async def call_ended(self, call_id: str) -> None:
        self.pending.pop(call_id, None)
        await self._customer_gone(call_id, "call_ended")

    async def _customer_gone(self, call_id: str, reason: str) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        async with call.lock:
            f = call.flow
            if not f.live:
                return
            f.live = False
            call.ended_at = self.clock()
            self._withdraw_prompt(call, reason, tell_customer=False)
            self._reassess(call)
            self.port.call_updated(call_id, business_state=_business(f))
            await self._push(call)

    # -- agent actions -------------------------------------------------------------------------
    def _agent_call(self, call_id: str, agent_id: int) -> _Call:
        call = self.calls.get(call_id)
        if call is None or call.flow.agent_id != agent_id or call.flow.state is FlowState.CLOSED:
            raise NotFound("no such call", code="unknown_call")
        return call

    def snapshot(self, call_id: str, agent_id: int) -> dict[str, Any]:
        return self._agent_call(call_id, agent_id).flow.snapshot()

    async def prompt(self, call_id: str, agent_id: int, step_id: str) -> dict[str, Any]:
        call = self._agent_call(call_id, agent_id)
        async with call.lock:
            f = call.flow
            now = self.clock()
            prompt = f.plan_prompt(step_id, new_prompt_id(), now)
            position = self.port.position(call_id)
            await self.port.call_row()
            await self.store.record_prompt(call_id, prompt, _script_id(f), position)
            replaced = f.apply_prompt(prompt)
            if replaced is not None:
                self.port.journal(call_id, f.agent_actor, "prompt.withdrawn", {
                    "prompt_id": replaced.prompt_id, "step_id": replaced.step_id,
                    "reason": "shown_again"})
            self.port.journal(call_id, f.agent_actor, "prompt.shown", {
                "prompt_id": prompt.prompt_id, "step_id": step_id, "kind": prompt.kind,
                "text": prompt.text, "sha256": prompt.sha256,
                "script_version": f.script_version, "recording": position})
            await self.port.to_customer(f.customer_id, "prompt:show",
                                        prompt.to_customer(call_id, f.script_version))
            await self._push(call)
            return {"prompt_id": prompt.prompt_id, "sha256": prompt.sha256,
                    "customer_prompts": f.customer_prompts}

    async def complete(self, call_id: str, agent_id: int, step_id: str, answer: str | None,
                       note: str | None) -> dict[str, Any]:
        call = self._agent_call(call_id, agent_id)
        async with call.lock:
            f = call.flow
            change = f.plan_agent_step(step_id, f.agent_actor, self.clock(), answer, note)
            await self._record(call, change)
            return {"step": f.steps[step_id].to_dict()}

    async def concern(self, call_id: str, agent_id: int, note: str) -> dict[str, Any]:
        call = self._agent_call(call_id, agent_id)
        async with call.lock:
            f = call.flow
            if f.state is FlowState.CLOSED:
                raise InvalidState("the call is wrapped up", code="flow_closed")
            self.port.journal(call_id, f.agent_actor, "risk.concern",
                              {"note": note, "recording": self.port.position(call_id)})
            f.apply_signals(agent_concern=True)
            self._reassess(call)
            await self._push(call)
            return {"risk": f.assessment.to_dict() if f.assessment else None}

    async def external_signal(self, call_id: str, agent_id: int, name: str, value: Any
                              ) -> None:
        """A risk signal from another part of the business (the car-loan interview's
        contradictions): the call is assessed again."""
        call = self.calls.get(call_id)
        if call is None or call.flow.agent_id != agent_id:
            return
        async with call.lock:
            f = call.flow
            f.apply_signals(extra={**f.signals.extra, name: value})
            self._reassess(call)
            await self._push(call)

    # -- the customer's answers ----------------------------------------------------------------
    async def customer_answer(self, call_id: str, customer_id: str, prompt_id: str,
                              step_id: str, sha256: str, answer: str) -> dict[str, Any]:
        call = self.calls.get(call_id)
        if call is None or call.flow.customer_id != customer_id:
            raise NotFound("no such call", code="unknown_call")
        async with call.lock:
            f = call.flow
            change = f.plan_customer_answer(prompt_id, step_id, sha256, answer,
                                            f"customer:{customer_id}", self.clock())
            await self._record(call, change)
            return {"step_id": step_id, "answer": answer,
                    "state": f.steps[step_id].state.value}

    # -- analysis results ----------------------------------------------------------------------
    def analysis_event(self, call_id: str, kind: str, payload: dict[str, Any]) -> None:
        """From the in-call analysis (synchronous: queued for the flows' task)."""
        if kind not in ("check.result", "analysis.alert") or call_id not in self.calls:
            return
        try:
            self._queue.put_nowait((call_id, kind, payload, self.clock()))
        except asyncio.QueueFull:
            log.error("call %s: flow queue full, %s dropped", call_id, kind)

    async def _analysis_loop(self) -> None:
        while True:
            call_id, kind, payload, at = await self._queue.get()
            try:
                await self._analysis(call_id, kind, payload, at)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call %s: %s not applied to the flow", call_id, kind)

    async def _analysis(self, call_id: str, kind: str, payload: dict[str, Any],
                        at: float) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        async with call.lock:
            f = call.flow
            if kind == "analysis.alert":
                f.apply_alert(str(payload.get("signal")), at)
                self._reassess(call)
                await self._push(call)
                return
            check, verdict = str(payload.get("kind")), str(payload.get("verdict"))
            f.apply_check_result(check, verdict, payload.get("details") or {})
            change = f.plan_check(check, verdict, payload.get("check_id"), at)
            if change is not None:
                await self._record(call, change)
            else:
                self._reassess(call)
                await self._push(call)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock()
            for call_id, call in list(self.calls.items()):
                try:
                    if call.ended_at is not None and now - call.ended_at > FORGET_AFTER_S:
                        self._forget(call_id)
                    elif call.flow.live and call.flow.signals.alert_open \
                            and not call.lock.locked():
                        async with call.lock:
                            if self._reassess(call):
                                await self._push(call)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("call %s: risk tick failed", call_id)

    # -- maker-checker -------------------------------------------------------------------------
    async def request_approval(self, call_id: str, agent_id: int,
                               note: str) -> dict[str, Any]:
        call = self._agent_call(call_id, agent_id)
        async with call.lock:
            f = call.flow
            self._reassess(call)
            f.plan_approval(agent_id)
            assert f.assessment is not None
            now = self.clock()
            await self.port.call_row()
            approval_id = await self.store.add_approval(call_id, agent_id, note,
                                                        f.assessment.to_dict(), now)
            a = Approval(approval_id, agent_id, f.agent_actor, now, note, f.assessment)
            f.add_approval(a)
            self._approvals[approval_id] = call_id
            self.port.journal(call_id, f.agent_actor, "approval.requested", {
                "approval_id": approval_id, "agent": f.agent_actor, "note": note,
                "risk": f.assessment.to_dict(), "recording": self.port.position(call_id)})
            await self.port.to_leads("approval:requested", self._approval_view(call, a))
            await self._push(call)
            return {"approval_id": approval_id}

    async def decide(self, approval_id: int, lead_id: int, lead_actor: str, approved: bool,
                     note: str | None) -> dict[str, Any]:
        call_id = self._approvals.get(approval_id)
        call = self.calls.get(call_id) if call_id else None
        if call is None or call_id is None:
            raise NotFound("no such approval request", code="unknown_approval")
        async with call.lock:
            f = call.flow
            a = f.plan_decision(approval_id, lead_id)
            now = self.clock()
            await self.store.decide_approval(a, approved, lead_id, note, now)
            f.apply_decision(a, approved, lead_id, lead_actor, note, now)
            decision = "approved" if approved else "refused"
            self.port.journal(call_id, lead_actor, "approval.decided", {
                "approval_id": approval_id, "decision": decision, "agent": a.requested_actor,
                "lead": lead_actor, "note": note, "risk": a.assessment.to_dict()})
            view = self._approval_view(call, a)
            await self.port.to_agent(f.agent_id, "approval:decided", view)
            await self.port.to_leads("approval:decided", view)
            await self._push(call)
            return view

    def pending_approvals(self) -> list[dict[str, Any]]:
        out = []
        for call in self.calls.values():
            a = call.flow.approval
            if a is not None and a.state is ApprovalState.PENDING:
                out.append(self._approval_view(call, a))
        return sorted(out, key=lambda v: v["requested_at"])

    def _approval_view(self, call: _Call, a: Approval) -> dict[str, Any]:
        f = call.flow
        return {**a.to_dict(), "call_id": f.call_id, "service": f.service,
                "customer": {"id": f.customer_id, "name": call.customer_name,
                             "risk_level": f.signals.customer_risk},
                "agent": {"actor": a.requested_actor, "display_name": call.agent_name},
                "live": f.live,
                "current_risk": f.assessment.to_dict() if f.assessment else None}

    # -- wrap-up -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def wrapping_up(self, call_id: str, agent_id: int, outcome: str,
                          skip_reason: str | None) -> AsyncIterator[WrapupPlan | None]:
        """Guard a wrap-up: raises (changing nothing) when the outcome is not allowed; the
        caller finishes the wrap-up inside the block, then the flow closes."""
        call = self.calls.get(call_id)
        if call is None or call.flow.agent_id != agent_id:
            yield None
            return
        async with call.lock:
            f = call.flow
            self._reassess(call)
            plan = f.plan_wrapup(outcome, skip_reason)
            yield plan
            now = self.clock()
            skips = f.apply_wrapup(plan, f.agent_actor, now)
            try:
                if skips:
                    await self.port.call_row()
                    await self.store.record_skips(call_id, skips)
            except Exception:  # the wrap-up is done and its details are on the timeline
                log.exception("call %s: skipped steps not stored", call_id)
            a = f.withdraw_approval()
            if a is not None:
                await self.store.withdraw_approval(a.approval_id)
                self.port.journal(call_id, f.agent_actor, "approval.withdrawn",
                                  {"approval_id": a.approval_id, "reason": "wrapped_up"})
                await self.port.to_leads("approval:withdrawn", self._approval_view(call, a))
            self.port.call_updated(call_id, business_state=plan.business_state)
        self._forget(call_id)

    def _forget(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None:
            for a in call.flow.approvals:
                self._approvals.pop(a.approval_id, None)

    # -- recording a change --------------------------------------------------------------------
    async def _record(self, call: _Call, change: StepChange) -> None:
        f = call.flow
        call_id = f.call_id
        run = f.steps[change.step_id]
        position = self.port.position(call_id)
        text = None
        if run.step.kind in (StepKind.CONFIRM_STATEMENT, StepKind.QUESTION):
            from cloudcounter.business.scripts import text_sha256
            text = ("statement" if run.step.kind is StepKind.CONFIRM_STATEMENT else "question",
                    run.text, text_sha256(run.text))
        account = (f.customer_id, run.step.account_change) \
            if run.step.account_change and change.state is StepState.DONE else None
        await self.port.call_row()
        await self.store.record_step(call_id, change, _script_id(f), position, text, account)
        f.apply_step(change)
        payload: dict[str, Any] = {
            "step_id": change.step_id, "kind": change.kind, "state": change.state.value,
            "method": change.method, "answer": change.answer, "note": change.note,
            "script_version": f.script_version, **dict(change.details),
            "recording": position}
        if text is not None:
            payload.update(text=text[1], sha256=text[2])
            if change.prompt is not None:
                payload.update(prompt_id=change.prompt.prompt_id,
                               shown_at=_iso(change.prompt.shown_at))
        event = {"confirm_statement": "statement.answered",
                 "question": "question.answered"}.get(change.kind, "step.completed")
        self.port.journal(call_id, change.actor, event, payload)
        if account is not None:
            self.port.journal(call_id, change.actor, "account.changed",
                              {"kind": account[1], "customer_id": f.customer_id})
        if change.prompt is not None:
            await self.port.to_customer(f.customer_id, "prompt:closed", {
                "call_id": call_id, "prompt_id": change.prompt.prompt_id,
                "step_id": change.step_id, "reason": "answered"
                if change.method == "customer_app" else "recorded_by_agent",
                "answer": change.answer})
        if f.state is FlowState.DECLINED:
            self.port.journal(call_id, change.actor, "business.declined",
                              {"step_id": change.step_id})
            await self.port.to_customer(f.customer_id, "flow:state", {
                "call_id": call_id, "state": "declined", "step_id": change.step_id})
        self._reassess(call)
        await self._push(call)

    def _withdraw_prompt(self, call: _Call, reason: str, tell_customer: bool) -> None:
        p = call.flow.withdraw_prompt()
        if p is not None:
            self.port.journal(call.flow.call_id, "system", "prompt.withdrawn",
                              {"prompt_id": p.prompt_id, "step_id": p.step_id,
                               "reason": reason})

    def _reassess(self, call: _Call) -> bool:
        f = call.flow
        previous = f.assessment.level if f.assessment else None
        new = f.reassess(self.clock())
        if new is None:
            return False
        self._risk_recorded(call, new, previous)
        return True

    def _risk_recorded(self, call: _Call, a: Assessment, previous: str | None) -> None:
        f = call.flow
        self.port.journal(f.call_id, "system", "risk.assessed", {
            **a.to_dict(), "previous_level": previous,
            "recording": self.port.position(f.call_id)})
        self.port.call_updated(f.call_id, risk_score=a.score, risk_level=a.level,
                               risk_reasons=[r.to_dict() for r in a.reasons],
                               risk_rules_version=a.rules_version)

    async def _push(self, call: _Call) -> None:
        await self.port.to_agent(call.flow.agent_id, "flow:update", call.flow.snapshot())


def _script_id(f: CallFlow) -> int | None:
    return f.script.script_id if f.script else None


def _business(f: CallFlow) -> str:
    return {FlowState.DECLINED: "declined", FlowState.READY: "completed"}.get(
        f.state, "not_completed")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


__all__ = ["FlowPort", "FlowService", "Prepared", "Prompt"]
