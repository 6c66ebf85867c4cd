"""The credit-system contract (docs/credit-system.md, docs/credit-system.openapi.yaml):
the JSON bodies the hub and a bank's loan-origination system exchange, as pydantic models.

Both sides use them: the reference service validates what it receives, the hub's adapter
(:mod:`cloudcounter.business.credit_client`) validates what it is answered, so that a
malformed answer is an error the agent sees, never a half-read application.

Unknown fields in an *answer* are ignored (a bank may send more); unknown fields in the
hub's *result* are refused by the reference service (the contract is versioned by path,
``/v1``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cloudcounter.text import has_control_characters

API_PREFIX = "/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
OUTCOMES = ("pass", "refer", "decline")

AppId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
IdemKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{8,128}$")]
Short = Annotated[str, StringConstraints(max_length=200)]
Money = Annotated[float, Field(ge=0, le=1e12)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Checked(BaseModel):
    """Text without control characters, at any depth."""

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if has_control_characters(value, multiline=True):
            raise ValueError("control characters are not allowed")
        return value


class Answer(_Checked):
    """Part of an answer from the credit system: more fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Person(Answer):
    name: Short
    date_of_birth: Short | None = None
    employer: Short | None = None
    monthly_income: Money | None = None
    employment_since: Short | None = None


class Vehicle(Answer):
    make: Short
    model: Short
    year: Annotated[int, Field(ge=1900, le=2100)] | None = None
    vin: Short | None = None
    condition: Literal["new", "used"] | None = None


class Dealer(Answer):
    name: Short
    dealer_id: Short | None = None
    city: Short | None = None


class CreditReport(Answer):
    score_band: Short
    existing_debts: Money = 0
    monthly_debt_payments: Money = 0
    overdue_last_24m: Annotated[int, Field(ge=0, le=1000)] = 0
    enquiries_last_6m: Annotated[int, Field(ge=0, le=1000)] = 0


class ApplicationSummary(Answer):
    id: AppId
    status: Short
    product: Short = "car_loan"
    loan_amount: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    created_at: Short | None = None


class Application(ApplicationSummary):
    customer_id: CustomerId
    applicant: Person
    co_applicant: Person | None = None
    vehicle: Vehicle
    dealer: Dealer
    price: Money
    down_payment: Money
    term_months: Annotated[int, Field(ge=1, le=600)]
    credit_report: CreditReport


class ApplicationList(Answer):
    applications: Annotated[list[ApplicationSummary], Field(max_length=100)]


class ResultAck(Answer):
    result_id: Short
    received_at: Short
    duplicate: bool = False


class Strict(_Checked):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordingRef(Strict):
    id: Annotated[str, StringConstraints(max_length=64)]
    participant: Annotated[str, StringConstraints(max_length=16)]
    sha256: Sha256 | None = None


class InterviewAnswer(Strict):
    question: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
    text: Annotated[str, StringConstraints(max_length=500)]
    answer: Annotated[str, StringConstraints(max_length=2000)]
    contradicts: Annotated[str, StringConstraints(max_length=500)] | None = None


class InterviewResult(Strict):
    """What the hub posts after an interview (``POST .../interview-results``)."""

    application_id: AppId
    customer_id: CustomerId
    call_id: Annotated[str, StringConstraints(pattern=r"^call_[0-9a-f]{16}$")]
    outcome: Literal["pass", "refer", "decline"]
    reasons: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=500)]],
                       Field(max_length=20)] = []
    interviewer: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    interviewed_at: Short
    recordings: Annotated[list[RecordingRef], Field(max_length=40)] = []
    answers: Annotated[list[InterviewAnswer], Field(max_length=40)] = []


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
