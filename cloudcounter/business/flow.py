"""One call's business flow: the script's steps, the customer's prompts, the risk signals
and the supervisor's approval, as a state machine without I/O.

Every operation comes in two halves: ``plan_*`` checks the request against the state and
returns a frozen change (or raises an error with a stable code, changing nothing); the
caller records the change durably, then ``apply_*`` makes it part of the state. The time
is always passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from cloudcounter.business.risk import Assessment, CallSignals, RuleSet, assess_signals
from cloudcounter.business.scripts import (
    CHECK_OF, CUSTOMER_FACING, NEEDS_CUSTOMER, PASSING, STATEMENT_ANSWERS, Script, Step,
    StepKind, render, text_sha256,
)
from cloudcounter.errors import Forbidden, InvalidMessage, InvalidState, NotFound


class StepState(str, enum.Enum):
    OPEN = "open"
    PROMPTED = "prompted"  # shown on the customer's screen, waiting for the answer
    DONE = "done"
    DECLINED = "declined"  # the customer did not confirm the statement
    SKIPPED = "skipped"  # left open at a resolved wrap-up, with the agent's reason


OPEN_STATES = frozenset({StepState.OPEN, StepState.PROMPTED})


class FlowState(str, enum.Enum):
    IN_PROGRESS = "in_progress"
    READY = "ready"  # every required step is done
    DECLINED = "declined"  # the customer declined a statement: the business ends
    CLOSED = "closed"  # wrapped up


class ApprovalState(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


@dataclass
class StepRun:
    step: Step
    text: str
    missing: tuple[str, ...]
    state: StepState = StepState.OPEN
    actor: str | None = None
    at: float | None = None
    answer: str | None = None
    note: str | None = None
    method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        s = self.step
        out: dict[str, Any] = {"id": s.id, "kind": s.kind.value, "title": s.title,
                               "text": self.text, "required": s.required,
                               "state": self.state.value}
        if s.options:
            out["options"] = [{"value": o.value, "label": o.label} for o in s.options]
        if s.concern_if:
            out["concern_if"] = list(s.concern_if)
        if self.missing:
            out["missing_facts"] = list(self.missing)
        if self.state is not StepState.OPEN:
            out.update(actor=self.actor, at=self.at, answer=self.answer, note=self.note,
                       method=self.method)
        return out


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    step_id: str
    kind: str  # statement | question
    text: str
    sha256: str
    shown_at: float
    options: tuple[tuple[str, str], ...] = ()

    def to_customer(self, call_id: str, script_version: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {"call_id": call_id, "prompt_id": self.prompt_id,
                               "step_id": self.step_id, "kind": self.kind, "text": self.text,
                               "sha256": self.sha256, "script_version": script_version}
        out["options"] = ([{"value": "confirm", "label": "I confirm"},
                           {"value": "decline", "label": "I do not confirm"}]
                          if self.kind == "statement" else
                          [{"value": v, "label": label} for v, label in self.options])
        return out


@dataclass(frozen=True)
class StepChange:
    """A step completed, answered, declined or skipped: what is recorded."""

    step_id: str
    kind: str
    state: StepState
    actor: str
    at: float
    method: str  # auto | agent | agent_spoken | customer_app | skipped
    answer: str | None = None
    note: str | None = None
    prompt: Prompt | None = None  # the prompt this answers, if any
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Approval:
    approval_id: int
    requested_by: int
    requested_actor: str
    requested_at: float
    note: str
    assessment: Assessment
    state: ApprovalState = ApprovalState.PENDING
    decided_by: int | None = None
    decided_actor: str | None = None
    decided_at: float | None = None
    decision_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"approval_id": self.approval_id, "state": self.state.value,
                "requested_by": self.requested_actor, "requested_at": self.requested_at,
                "note": self.note, "risk": self.assessment.to_dict(),
                "decided_by": self.decided_actor, "decided_at": self.decided_at,
                "decision_note": self.decision_note}


@dataclass(frozen=True)
class WrapupPlan:
    outcome: str
    skipped: tuple[str, ...]
    skip_reason: str | None
    business_state: str
    assessment: Assessment | None
    approval_id: int | None

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"business_state": self.business_state}
        if self.skipped:
            out.update(skipped_steps=list(self.skipped), skip_reason=self.skip_reason)
        if self.assessment is not None:
            out["risk"] = {"score": self.assessment.score, "level": self.assessment.level,
                           "rules_version": self.assessment.rules_version}
        if self.approval_id is not None:
            out["approval_id"] = self.approval_id
        return out


class CallFlow:
    def __init__(self, call_id: str, customer_id: str, service: str, script: Script | None,
                 facts: Mapping[str, str | None], signals: CallSignals, rules: RuleSet, *,
                 agent_id: int, agent_actor: str, customer_prompts: bool = True) -> None:
        self.call_id = call_id
        self.customer_id = customer_id
        self.service = service
        self.script = script
        self.facts = dict(facts)
        self.signals = signals
        self.rules = rules
        self.agent_id = agent_id
        self.agent_actor = agent_actor
        self.customer_prompts = customer_prompts
        self.live = True  # the call is in progress (the customer can answer)
        self.state = FlowState.IN_PROGRESS
        self.prompt: Prompt | None = None
        self.assessment: Assessment | None = None
        self.approvals: list[Approval] = []
        self.steps: dict[str, StepRun] = {}
        for step in script.steps if script else ():
            text, missing = render(step.text, self.facts)
            self.steps[step.id] = StepRun(step, text, missing)
        self._update_state()

    # -- views -------------------------------------------------------------------------
    @property
    def script_version(self) -> int | None:
        return self.script.version if self.script else None

    def current_step(self) -> str | None:
        return next((r.step.id for r in self.steps.values() if r.state in OPEN_STATES), None)

    def open_required(self) -> list[str]:
        return [r.step.id for r in self.steps.values()
                if r.step.required and r.state in OPEN_STATES]

    @property
    def approval(self) -> Approval | None:
        return self.approvals[-1] if self.approvals else None

    def valid_approval(self) -> Approval | None:
        """The approval that covers the current risk: approved, and no reason added since."""
        a = self.approval
        if a is None or a.state is not ApprovalState.APPROVED or self.assessment is None:
            return None
        return a if self.assessment.rule_ids <= a.assessment.rule_ids else None

    def snapshot(self) -> dict[str, Any]:
        """What the agent's console shows (a frozen copy: safe to send later)."""
        a = self.approval
        return {
            "call_id": self.call_id, "service": self.service, "state": self.state.value,
            "live": self.live, "customer_prompts": self.customer_prompts,
            "script": ({"version": self.script.version, "title": self.script.title}
                       if self.script else None),
            "steps": [r.to_dict() for r in self.steps.values()],
            "current_step": self.current_step(), "open_required": self.open_required(),
            "prompt": ({"prompt_id": self.prompt.prompt_id, "step_id": self.prompt.step_id,
                        "shown_at": self.prompt.shown_at} if self.prompt else None),
            "risk": self.assessment.to_dict() if self.assessment else None,
            "approval": a.to_dict() if a else None,
            "approval_valid": self.valid_approval() is not None,
            "concern": self.signals.agent_concern,
        }

    # -- steps -------------------------------------------------------------------------
    def _open_step(self, step_id: str) -> StepRun:
        run = self.steps.get(step_id)
        if run is None:
            raise NotFound(f"no step {step_id[:48]!r} in this call's script",
                           code="unknown_step")
        if self.state is FlowState.DECLINED:
            raise InvalidState("the customer declined: the business has ended",
                               code="business_declined")
        if self.state is FlowState.CLOSED:
            raise InvalidState("the call is wrapped up", code="flow_closed")
        if run.state not in OPEN_STATES:
            raise InvalidState(f"step {step_id!r} is not open ({run.state.value})",
                               code="step_not_open")
        return run

    def _need_customer(self, run: StepRun) -> None:
        if run.step.kind in NEEDS_CUSTOMER and not self.live:
            raise InvalidState("this step needs the customer in the call",
                               code="customer_not_in_call")

    def plan_prompt(self, step_id: str, prompt_id: str, now: float) -> Prompt:
        run = self._open_step(step_id)
        if run.step.kind not in CUSTOMER_FACING:
            raise InvalidState("only statements and questions are shown to the customer",
                               code="not_a_prompt")
        self._need_customer(run)
        if run.missing:
            raise InvalidState(f"facts not on file: {', '.join(run.missing)}; record the "
                               "customer's spoken answer with a note instead",
                               code="facts_missing")
        if self.prompt is not None and self.prompt.step_id != step_id:
            raise InvalidState(f"step {self.prompt.step_id!r} is still shown to the customer",
                               code="prompt_open")
        kind = "statement" if run.step.kind is StepKind.CONFIRM_STATEMENT else "question"
        return Prompt(prompt_id, step_id, kind, run.text, text_sha256(run.text), now,
                      tuple((o.value, o.label) for o in run.step.options))

    def apply_prompt(self, prompt: Prompt) -> Prompt | None:
        """Show ``prompt``; returns the prompt it replaces (the same step shown again)."""
        replaced, self.prompt = self.prompt, prompt
        self.steps[prompt.step_id].state = StepState.PROMPTED
        return replaced

    def withdraw_prompt(self) -> Prompt | None:
        prompt, self.prompt = self.prompt, None
        if prompt is not None:
            run = self.steps[prompt.step_id]
            if run.state is StepState.PROMPTED:
                run.state = StepState.OPEN
        return prompt

    def plan_customer_answer(self, prompt_id: str, step_id: str, sha256: str, answer: str,
                             actor: str, now: float) -> StepChange:
        p = self.prompt
        if p is None or p.prompt_id != prompt_id or p.step_id != step_id:
            raise InvalidState("this prompt is not open", code="prompt_not_open")
        run = self._open_step(step_id)
        self._need_customer(run)
        if sha256 != p.sha256:
            raise InvalidMessage("the text answered is not the text shown",
                                 code="statement_mismatch")
        allowed = STATEMENT_ANSWERS if p.kind == "statement" else tuple(v for v, _ in p.options)
        if answer not in allowed:
            raise InvalidMessage(f"answer must be one of {', '.join(allowed)}",
                                 code="invalid_answer")
        declined = p.kind == "statement" and answer == "decline"
        return StepChange(step_id, run.step.kind.value,
                          StepState.DECLINED if declined else StepState.DONE, actor, now,
                          "customer_app", answer, None, p,
                          {"delay_s": round(max(0.0, now - p.shown_at), 2)})

    def plan_agent_step(self, step_id: str, actor: str, now: float, answer: str | None,
                        note: str | None) -> StepChange:
        run = self._open_step(step_id)
        self._need_customer(run)
        kind = run.step.kind
        state, method = StepState.DONE, "agent"
        if kind in CHECK_OF:
            if answer is not None:
                raise InvalidMessage("a check step takes no answer", code="invalid_answer")
            if not note:
                raise InvalidMessage("say how the customer was checked (note)",
                                     code="note_required")
            method = "agent_manual"
        elif kind is StepKind.CONFIRM_STATEMENT:
            if answer not in STATEMENT_ANSWERS:
                raise InvalidMessage("answer must be confirm or decline", code="invalid_answer")
            if not note:
                raise InvalidMessage("a spoken confirmation needs a reason (note)",
                                     code="note_required")
            method = "agent_spoken"
            if answer == "decline":
                state = StepState.DECLINED
        elif kind is StepKind.QUESTION:
            values = [o.value for o in run.step.options]
            if answer not in values:
                raise InvalidMessage(f"answer must be one of {', '.join(values)}",
                                     code="invalid_answer")
            method = "agent_spoken"
        elif answer is not None:
            raise InvalidMessage(f"a {kind.value} step takes no answer", code="invalid_answer")
        prompt = self.prompt if self.prompt and self.prompt.step_id == step_id else None
        return StepChange(step_id, kind.value, state, actor, now, method, answer, note or None,
                          prompt)

    def plan_check(self, kind: str, verdict: str, check_id: str | None,
                   now: float) -> StepChange | None:
        """A check result completes the first open step of its kind when it passes."""
        if self.state in (FlowState.DECLINED, FlowState.CLOSED) or PASSING.get(kind) != verdict:
            return None
        for run in self.steps.values():
            if CHECK_OF.get(run.step.kind) == kind and run.state in OPEN_STATES:
                return StepChange(run.step.id, run.step.kind.value, StepState.DONE, "system",
                                  now, "auto", verdict, None, None, {"check_id": check_id})
        return None

    def apply_step(self, change: StepChange) -> Prompt | None:
        """Record a change; returns the prompt it closed, if any."""
        run = self.steps[change.step_id]
        run.state, run.actor, run.at = change.state, change.actor, change.at
        run.answer, run.note, run.method = change.answer, change.note, change.method
        closed = None
        if self.prompt is not None and self.prompt.step_id == change.step_id:
            closed, self.prompt = self.prompt, None
        s = self.signals
        kind = run.step.kind
        if kind is StepKind.CONFIRM_STATEMENT:
            declined = change.state is StepState.DECLINED
            confirmation = "declined" if declined or s.confirmation == "declined" \
                else "confirmed"
            delay = change.details.get("delay_s")
            if delay is not None and s.confirmation_delay_s is not None:
                delay = max(delay, s.confirmation_delay_s)
            s = replace(s, confirmation=confirmation,
                        confirmation_delay_s=delay if delay is not None
                        else s.confirmation_delay_s,
                        confirmation_spoken=s.confirmation_spoken or (
                            change.method == "agent_spoken" and not declined))
        elif kind is StepKind.QUESTION and change.answer in run.step.concern_if:
            s = replace(s, coercion_concerns=s.coercion_concerns + 1)
        self.signals = s
        if change.state is StepState.DECLINED:
            self.state = FlowState.DECLINED
            self.prompt = None
        self._update_state()
        return closed

    def _update_state(self) -> None:
        if self.state is FlowState.IN_PROGRESS and not self.open_required():
            self.state = FlowState.READY
        elif self.state is FlowState.READY and self.open_required():
            self.state = FlowState.IN_PROGRESS

    # -- signals and risk ----------------------------------------------------------------
    def apply_check_result(self, kind: str, verdict: str, details: Mapping[str, Any]) -> None:
        if kind == "identity":
            self.signals = replace(self.signals, identity_verdict=verdict,
                                   identity_distance=details.get("distance"),
                                   identity_threshold=details.get("threshold"))
        elif kind == "liveness":
            self.signals = replace(self.signals, liveness_verdict=verdict)

    def apply_alert(self, signal: str, now: float) -> None:
        self.signals = self.signals.with_alert(signal, now)

    def apply_signals(self, **changes: Any) -> None:
        self.signals = replace(self.signals, **changes)

    def reassess(self, now: float) -> Assessment | None:
        """Assess again; returns the new assessment when score, level or reasons changed."""
        new = assess_signals(self.signals, self.rules, now)
        old = self.assessment
        if old is not None and (old.score, old.level, old.reasons) == (
                new.score, new.level, new.reasons):
            return None
        self.assessment = new
        return new

    # -- maker-checker ---------------------------------------------------------------------
    def plan_approval(self, agent_id: int) -> None:
        if self.state is FlowState.CLOSED:
            raise InvalidState("the call is wrapped up", code="flow_closed")
        if self.state is FlowState.DECLINED:
            raise InvalidState("the customer declined: nothing to approve",
                               code="business_declined")
        level = self.assessment.level if self.assessment else "low"
        if level == "block":
            raise InvalidState("the risk level is block: the call cannot be resolved",
                               code="risk_blocked")
        if level != "high":
            raise InvalidState("approval is needed only at risk level high",
                               code="approval_not_needed")
        a = self.approval
        if a is not None and a.state is ApprovalState.PENDING:
            raise InvalidState("an approval request is already pending",
                               code="approval_pending")
        if self.valid_approval() is not None:
            raise InvalidState("the current risk is already approved",
                               code="already_approved")

    def add_approval(self, approval: Approval) -> None:
        self.approvals.append(approval)

    def plan_decision(self, approval_id: int, lead_id: int) -> Approval:
        a = next((x for x in self.approvals if x.approval_id == approval_id), None)
        if a is None:
            raise NotFound("no such approval request", code="unknown_approval")
        if a.state is not ApprovalState.PENDING:
            raise InvalidState(f"this request is already {a.state.value}",
                               code="approval_decided")
        if lead_id in (a.requested_by, self.agent_id):
            raise Forbidden("the agent of the call cannot approve it (maker-checker)",
                            code="same_person")
        return a

    def apply_decision(self, a: Approval, approved: bool, lead_id: int, lead_actor: str,
                       note: str | None, now: float) -> None:
        a.state = ApprovalState.APPROVED if approved else ApprovalState.REFUSED
        a.decided_by, a.decided_actor, a.decided_at = lead_id, lead_actor, now
        a.decision_note = note

    def withdraw_approval(self) -> Approval | None:
        a = self.approval
        if a is not None and a.state is ApprovalState.PENDING:
            a.state = ApprovalState.WITHDRAWN
            return a
        return None

    # -- wrap-up ---------------------------------------------------------------------------
    def plan_wrapup(self, outcome: str, skip_reason: str | None) -> WrapupPlan:
        """The wrap-up guard: ``resolved`` needs every required step done (or a skip
        reason), no declined statement, no ``block`` level, and at ``high`` a supervisor's
        approval that covers the current reasons."""
        a = self.assessment
        if outcome == "resolved":
            if self.state is FlowState.DECLINED:
                raise InvalidState("the customer did not confirm: the call cannot be "
                                   "resolved", code="confirmation_declined")
            if a is not None and a.level == "block":
                raise InvalidState("the risk level is block: the call cannot be resolved",
                                   code="risk_blocked", reasons=[r.rule for r in a.reasons])
            open_required = self.open_required()
            if open_required and not skip_reason:
                raise InvalidState("required steps are not done: complete them or give a "
                                   "reason to skip them", code="steps_incomplete",
                                   steps=open_required)
            if a is not None and a.level == "high" and self.valid_approval() is None:
                last = self.approval
                raise InvalidState("risk level high: a supervisor's approval is needed",
                                   code="approval_required",
                                   approval=last.state.value if last else None)
            skipped = tuple(open_required)
        else:
            skipped = ()
        if self.state is FlowState.DECLINED:
            business = "declined"
        elif not self.open_required():
            business = "completed"
        elif skipped:
            business = "completed_with_skips"
        else:
            business = "not_completed"
        valid = self.valid_approval()
        return WrapupPlan(outcome, skipped, skip_reason if skipped else None, business, a,
                          valid.approval_id if valid and outcome == "resolved" else None)

    def apply_wrapup(self, plan: WrapupPlan, actor: str, now: float) -> list[StepChange]:
        changes = []
        for step_id in plan.skipped:
            run = self.steps[step_id]
            change = StepChange(step_id, run.step.kind.value, StepState.SKIPPED, actor, now,
                                "skipped", None, plan.skip_reason)
            run.state, run.actor, run.at, run.note = (StepState.SKIPPED, actor, now,
                                                      plan.skip_reason)
            run.method = "skipped"
            changes.append(change)
        self.prompt = None
        self.state = FlowState.CLOSED
        return changes
