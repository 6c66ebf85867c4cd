"""The car-loan interview: the application from the credit system, the interview questions
and their answers (contradictions become a risk signal), and the outcome, written back
durably.

:class:`LoanInterviews` keeps one :class:`Interview` per loan call in progress (single
node, like the flows). The outcome closes the interview and writes the result into the
outbox (``credit_result_deliveries``) **in the same transaction**; the delivery worker
(:mod:`cloudcounter.business.credit_delivery`) sends it. Credit-system errors reach the
agent as a message; they never end or block the call.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.business.credit_client import CreditClient, CreditError
from cloudcounter.credit.contract import Application, InterviewResult
from cloudcounter.db.loan_models import CreditResultDelivery, LoanInterview
from cloudcounter.db.outbox import PENDING, utc
from cloudcounter.errors import InvalidMessage, InvalidState, NotFound

LOAN_SERVICE = "car_loan"
FORGET_AFTER_S = 6 * 3600.0


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    checks: str | None = None  # what in the application the answer is compared with


QUESTIONS: tuple[Question, ...] = (
    Question("purpose", "What will you use the car for?"),
    Question("employer", "Who is your employer, and since when?", "employer"),
    Question("income", "What is your net monthly income?", "income"),
    Question("driver", "Who will drive the car?"),
    Question("dealer", "What is your relationship with the dealer?"),
    Question("others", "Will anyone else repay the loan, or did anyone arrange it for you?"),
)
QUESTION_IDS = {q.id: q for q in QUESTIONS}
_SUFFIXES = re.compile(r"\b(gmbh|ltd|limited|inc|llc|plc|co|corp|company|ag|sa|sarl|bv)\b")


def _norm(name: str) -> str:
    return " ".join(_SUFFIXES.sub(" ", re.sub(r"[^\w\s]", " ", name.casefold())).split())


def parse_amount(text: str) -> float | None:
    """The first number in an answer ("5,200 EUR", "about 5200.50") or None."""
    m = re.search(r"\d[\d,' ]*(?:\.\d+)?", text)
    if m is None:
        return None
    try:
        return float(re.sub(r"[,' ]", "", m.group()))
    except ValueError:
        return None


def contradiction(question: Question, answer: str, app: Application | None,
                  income_tolerance: float) -> str | None:
    """What in the application the answer contradicts, or None. Pure."""
    if app is None or question.checks is None:
        return None
    if question.checks == "employer" and app.applicant.employer:
        declared, said = _norm(app.applicant.employer), _norm(answer)
        if declared and said and declared not in said and said not in declared:
            return f"the application says employer {app.applicant.employer!r}"
    if question.checks == "income" and app.applicant.monthly_income:
        said_income = parse_amount(answer)
        declared_income = app.applicant.monthly_income
        if said_income is not None and \
                abs(said_income - declared_income) / declared_income > income_tolerance:
            return (f"the application says a monthly income of {declared_income:,.0f} "
                    f"{app.currency} (differs by more than {income_tolerance:.0%})")
    return None


def figures_to_confirm(app: Application) -> list[dict[str, str]]:
    """The figures the agent confirms with the customer, as label and value."""
    c = app.currency
    out = [("loan_amount", "Loan amount", f"{app.loan_amount:,.2f} {c}"),
           ("price", "Vehicle price", f"{app.price:,.2f} {c}"),
           ("down_payment", "Down payment", f"{app.down_payment:,.2f} {c}"),
           ("term_months", "Term", f"{app.term_months} months"),
           ("vehicle", "Vehicle", " ".join(str(x) for x in (
               app.vehicle.make, app.vehicle.model, app.vehicle.year or "") if x)),
           ("dealer", "Dealer", app.dealer.name)]
    if app.applicant.employer:
        out.append(("employer", "Employer", app.applicant.employer))
    if app.applicant.monthly_income is not None:
        out.append(("monthly_income", "Declared monthly income",
                    f"{app.applicant.monthly_income:,.2f} {c}"))
    if app.co_applicant is not None:
        out.append(("co_applicant", "Co-applicant", app.co_applicant.name))
    return [{"field": f, "label": label, "value": v} for f, label, v in out]


class LoanPort(Protocol):
    def journal(self, call_id: str, actor: str, kind: str, payload: dict[str, Any]) -> None: ...
    async def call_row(self) -> None: ...
    async def risk_signal(self, call_id: str, agent_id: int, contradictions: int) -> None: ...
    def wake_delivery(self) -> None: ...


@dataclass
class Interview:
    call_id: str
    customer_id: str
    agent_id: int
    agent_actor: str
    reference: str | None = None  # the application the customer's token names, if any
    application: Application | None = None
    applications: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcome: str | None = None
    reasons: list[str] = field(default_factory=list)
    delivery: str | None = None  # pending | delivered | failed
    started_at: float = field(default_factory=time.monotonic)

    @property
    def contradictions(self) -> int:
        return sum(1 for a in self.answers.values() if a.get("contradicts"))

    def view(self) -> dict[str, Any]:
        app = self.application
        return {
            "call_id": self.call_id,
            "application": app.model_dump(mode="json") if app else None,
            "applications": self.applications,
            "confirm": figures_to_confirm(app) if app else [],
            "questions": [{"id": q.id, "text": q.text, **self.answers.get(q.id, {})}
                          for q in QUESTIONS],
            "contradictions": self.contradictions,
            "outcome": self.outcome, "reasons": self.reasons, "delivery": self.delivery,
        }


class LoanInterviews:
    def __init__(self, sm: async_sessionmaker, client: CreditClient | None, port: LoanPort,
                 income_tolerance: float = 0.2, clock: Any = time.time) -> None:
        self.sm = sm
        self.client = client
        self.port = port
        self.income_tolerance = income_tolerance
        self.clock = clock
        self.calls: dict[str, Interview] = {}

    # -- the call's life -------------------------------------------------------------
    def started(self, call_id: str, customer_id: str, agent_id: int, agent_actor: str,
                reference: str | None) -> None:
        """A car-loan call was answered (again: the new agent takes the interview over)."""
        iv = self.calls.get(call_id)
        if iv is None:
            self._prune()
            self.calls[call_id] = Interview(call_id, customer_id, agent_id, agent_actor,
                                            reference)
        else:
            iv.agent_id, iv.agent_actor = agent_id, agent_actor

    def forget(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    def _prune(self) -> None:
        """Interviews never wrapped up (the wrap-up time ran out) are dropped after
        ``FORGET_AFTER_S``."""
        cutoff = time.monotonic() - FORGET_AFTER_S
        for call_id in [c for c, iv in self.calls.items() if iv.started_at < cutoff]:
            del self.calls[call_id]

    def interview(self, call_id: str, agent_id: int) -> Interview:
        """The interview of a car-loan call of this agent (else ``unknown_call``: an agent
        sees only the application of the customer in their own loan call)."""
        iv = self.calls.get(call_id)
        if iv is None or iv.agent_id != agent_id:
            raise NotFound("no car-loan interview in this call", code="unknown_call")
        return iv

    def needs_outcome(self, call_id: str, agent_id: int) -> bool:
        iv = self.calls.get(call_id)
        return iv is not None and iv.agent_id == agent_id and iv.outcome is None

    # -- look-ups --------------------------------------------------------------------
    async def lookup(self, call_id: str, agent_id: int) -> dict[str, Any]:
        """Read the customer's applications and the one the interview is about. A failure
        is on the timeline and in the answer (``error``); the call goes on."""
        iv = self.interview(call_id, agent_id)
        if self.client is None:
            return {**iv.view(), "error": {"code": "credit_not_configured",
                                           "message": "no credit system is configured"}}
        started = time.monotonic()
        try:
            listing = await self.client.applications(iv.customer_id)
            iv.applications = [a.model_dump(mode="json") for a in listing.applications]
            ids = [a.id for a in listing.applications]
            wanted = iv.reference if iv.reference in ids else next(
                (a.id for a in reversed(listing.applications)
                 if a.status == "awaiting_interview"), ids[-1] if ids else None)
            app = await self.client.application(wanted) if wanted else None
            if app is not None and app.customer_id != iv.customer_id:
                raise CreditError("the credit system answered another customer's "
                                  "application", code="credit_bad_response")
        except CreditError as exc:
            self.port.journal(call_id, iv.agent_actor, "credit.lookup", {
                "ok": False, "code": exc.code, "error": exc.message,
                "ms": round((time.monotonic() - started) * 1000)})
            return {**iv.view(), "error": {"code": exc.code, "message": exc.message}}
        iv.application = app
        self.port.journal(call_id, iv.agent_actor, "credit.lookup", {
            "ok": True, "application_id": app.id if app else None,
            "applications": len(iv.applications),
            "ms": round((time.monotonic() - started) * 1000)})
        return iv.view()

    def view(self, call_id: str, agent_id: int) -> dict[str, Any]:
        return self.interview(call_id, agent_id).view()

    # -- the interview ---------------------------------------------------------------
    async def answer(self, call_id: str, agent_id: int, question: str, answer: str
                     ) -> dict[str, Any]:
        iv = self.interview(call_id, agent_id)
        if iv.outcome is not None:
            raise InvalidState("the interview is closed", code="interview_closed")
        q = QUESTION_IDS.get(question)
        if q is None:
            raise InvalidMessage(f"unknown question {question!r}", code="unknown_question")
        before = iv.contradictions
        contradicts = contradiction(q, answer, iv.application, self.income_tolerance)
        iv.answers[q.id] = {"answer": answer, "contradicts": contradicts}
        self.port.journal(call_id, iv.agent_actor, "credit.answer", {
            "question": q.id, "text": q.text, "answer": answer, "contradicts": contradicts})
        if iv.contradictions != before:
            await self.port.risk_signal(call_id, agent_id, iv.contradictions)
        return {"question": q.id, "contradicts": contradicts,
                "contradictions": iv.contradictions}

    async def close(self, call_id: str, agent_id: int, outcome: str, reasons: list[str],
                    application_id: str | None = None) -> dict[str, Any]:
        """The outcome: closes the interview and puts the result into the outbox, in one
        transaction. Once only."""
        iv = self.interview(call_id, agent_id)
        if iv.outcome is not None:
            raise InvalidState("the outcome is recorded already", code="interview_closed")
        app_id = iv.application.id if iv.application else (iv.reference or application_id)
        if application_id and app_id != application_id:
            raise InvalidMessage("that is not the application of this interview",
                                 code="wrong_application")
        if not app_id:
            raise InvalidState("no application is known for this interview: look it up "
                               "first", code="credit_application_unknown")
        if outcome != "pass" and not reasons:
            raise InvalidMessage("give the reasons for refer or decline", code="reasons_required")
        now = self.clock()
        answers = [{"question": q.id, "text": q.text, "answer": a["answer"],
                    **({"contradicts": a["contradicts"]} if a.get("contradicts") else {})}
                   for q in QUESTIONS if (a := iv.answers.get(q.id))]
        result = InterviewResult(
            application_id=app_id, customer_id=iv.customer_id, call_id=call_id,
            outcome=outcome, reasons=reasons, interviewer=iv.agent_actor,  # type: ignore[arg-type]
            interviewed_at=datetime.fromtimestamp(now, timezone.utc).isoformat(),
            answers=answers)  # type: ignore[arg-type]
        body = result.model_dump(mode="json")
        body.pop("recordings")
        await self.port.call_row()
        async with self.sm() as s, s.begin():
            exists = await s.scalar(select(LoanInterview.state)
                                    .where(LoanInterview.call_id == call_id))
            values = dict(customer_id=iv.customer_id, agent_id=agent_id,
                          application_id=app_id, state="closed", outcome=outcome,
                          reasons=reasons, answers=answers, contradictions=iv.contradictions,
                          interviewer=iv.agent_actor, closed_at=utc(now))
            if exists is None:
                await s.execute(insert(LoanInterview).values(call_id=call_id,
                                                             opened_at=utc(now), **values))
            else:
                done = await s.execute(update(LoanInterview).where(
                    LoanInterview.call_id == call_id, LoanInterview.state == "open")
                    .values(**values))
                if done.rowcount != 1:  # type: ignore[attr-defined]
                    raise InvalidState("the outcome is recorded already",
                                       code="interview_closed")
            delivery = await s.scalar(insert(CreditResultDelivery).values(
                call_id=call_id, application_id=app_id, idempotency_key=f"crd_{call_id}",
                body=json.dumps(body, sort_keys=True), state=PENDING, attempts=0,
                next_attempt_at=utc(now), created_at=utc(now))
                .returning(CreditResultDelivery.id))
        iv.outcome, iv.reasons, iv.delivery = outcome, list(reasons), PENDING
        self.port.journal(call_id, iv.agent_actor, "credit.outcome", {
            "outcome": outcome, "reasons": reasons, "application_id": app_id,
            "contradictions": iv.contradictions})
        self.port.journal(call_id, "system", "credit.result.pending", {
            "delivery_id": delivery, "application_id": app_id,
            "idempotency_key": f"crd_{call_id}"})
        self.port.wake_delivery()
        return {"outcome": outcome, "delivery": PENDING, "application_id": app_id}

    def delivery_changed(self, call_id: str, state: str) -> int | None:
        """The worker's news; returns the agent to tell, if the interview is still here."""
        iv = self.calls.get(call_id)
        if iv is None:
            return None
        iv.delivery = state
        return iv.agent_id


async def delivery_states(sm: async_sessionmaker, call_ids: list[str]) -> Mapping[str, str]:
    async with sm() as s:
        rows = await s.execute(select(CreditResultDelivery.call_id, CreditResultDelivery.state)
                               .where(CreditResultDelivery.call_id.in_(call_ids)))
        return {c: st for c, st in rows.all()}
