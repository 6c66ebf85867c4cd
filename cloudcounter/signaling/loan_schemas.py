"""Schemas of the car-loan events (protocol 1.3): the agent's credit panel and the
customer's appointments. Merged into the namespaces' event maps by
:mod:`cloudcounter.signaling.schemas`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from cloudcounter.signaling.schemas import CallId, Empty, Message, Multiline

QuestionId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
ApplicationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
AnswerText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=2000), Multiline()]
ReasonText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=500)]
#: an ISO 8601 date-time with a time zone, e.g. 2026-12-01T09:30:00Z
When = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?"
                                        r"(\.\d+)?(Z|[+-]\d\d:\d\d)$")]
Day = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\d$")]
AppointmentId = Annotated[str, StringConstraints(pattern=r"^apt_[0-9a-f]{16}$")]


class CreditAnswer(Message):
    call_id: CallId
    question: QuestionId
    answer: AnswerText


class CreditOutcome(Message):
    call_id: CallId
    outcome: Literal["pass", "refer", "decline"]
    reasons: Annotated[list[ReasonText], Field(max_length=20)] = []
    application_id: ApplicationId | None = None


class SlotsQuery(Message):
    from_day: Day | None = None
    days: Annotated[int, Field(ge=1, le=31, strict=True)] = 7


class AppointmentBook(Message):
    starts_at: When


class AppointmentMove(Message):
    appointment_id: AppointmentId
    starts_at: When


class AppointmentRef(Message):
    appointment_id: AppointmentId


class CallRefLoan(Message):
    call_id: CallId


LOAN_AGENT_EVENTS: dict[str, type[Message]] = {
    "credit:lookup": CallRefLoan,
    "credit:view": CallRefLoan,
    "credit:answer": CreditAnswer,
    "credit:outcome": CreditOutcome,
}

LOAN_CUSTOMER_EVENTS: dict[str, type[Message]] = {
    "appointment:slots": SlotsQuery,
    "appointment:list": Empty,
    "appointment:book": AppointmentBook,
    "appointment:move": AppointmentMove,
    "appointment:cancel": AppointmentRef,
}
