"""The subject of a call: what the bank's systems say the call is about (the held
transfer's reference, amount, payee and purpose). It arrives signed, in the customer
token minted by the bank's app backend (claim ``subject``), so the customer cannot change
it; docs/protocol.md describes the claim."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from cloudcounter.text import check_text


def _line(v: str) -> str:
    return check_text(v, multiline=False)


class Subject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reference: Annotated[str, StringConstraints(min_length=1, max_length=64),
                         AfterValidator(_line)] | None = None
    amount: Annotated[float, Field(ge=0, le=1e13, allow_inf_nan=False)] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    payee: Annotated[str, StringConstraints(min_length=1, max_length=120),
                     AfterValidator(_line)] | None = None
    purpose: Annotated[str, StringConstraints(min_length=1, max_length=200),
                       AfterValidator(_line)] | None = None


def parse_subject(data: Any) -> dict[str, Any] | None:
    """The subject as a plain dict (None when absent); ValueError when malformed."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("subject must be an object")
    return Subject.model_validate(data).model_dump(exclude_none=True)


def format_amount(amount: float | None, currency: str | None) -> str | None:
    if amount is None:
        return None
    return f"{currency + ' ' if currency else ''}{amount:,.2f}"


def subject_facts(subject: dict[str, Any] | None) -> dict[str, str | None]:
    s = subject or {}
    return {"reference": s.get("reference"),
            "amount": format_amount(s.get("amount"), s.get("currency")),
            "payee": s.get("payee"), "purpose": s.get("purpose")}
