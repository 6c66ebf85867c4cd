"""Typed schemas of every inbound signalling message (protocol version 1.1).

Each client event maps to one pydantic model; unknown fields are refused, strings are
bounded. Outbound payloads are documented in ``docs/protocol.md``.

Every model derives from :class:`Message` (HTTP bodies too), which refuses control
characters in every string it holds, at any depth: C0 and C1 controls, DEL and lone
surrogates (PostgreSQL cannot store NUL; a lone surrogate cannot be encoded). A field
marked :class:`Multiline` (notes) may hold line breaks and tabs. New schemas inherit the
rule by deriving from :class:`Message`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, \
    field_validator

from cloudcounter.text import has_control_characters

#: the major version a client states in ``auth.protocol``; minor versions add events and
#: optional fields only, so a 1.0 client works with a 1.1 hub
PROTOCOL_VERSION = 1
PROTOCOL_MINOR = 5
PROTOCOL_TEXT = f"{PROTOCOL_VERSION}.{PROTOCOL_MINOR}"
SUPPORTED_VERSIONS = frozenset({1})

CallId = Annotated[str, StringConstraints(pattern=r"^call_[0-9a-f]{16}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class Multiline:
    """Marks a text field where line breaks (``\\n``, ``\\r``) and tabs are allowed."""


# SDP is lines: CR LF allowed here, and the media layer checks the rest strictly
Sdp = Annotated[str, StringConstraints(min_length=10, max_length=32_000), Multiline()]
StepId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
PromptId = Annotated[str, StringConstraints(pattern=r"^prm_[0-9a-f]{16}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: free text: bounded; control characters are refused by Message (line breaks, tabs allowed)
LongText = Annotated[str, StringConstraints(max_length=4000), Multiline()]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
                   Multiline()]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None or isinstance(value, (int, float, bool, BaseModel)) \
                or value is None:
            return value
        field = cls.model_fields[info.field_name]
        multiline = any(isinstance(m, Multiline) for m in field.metadata)
        if has_control_characters(value, multiline):
            raise ValueError("control characters are not allowed" + (
                " (except line breaks and tabs)" if multiline else ""))
        return value


class CallRequest(Message):
    service: Code


class CallRef(Message):
    call_id: CallId


class StatusSet(Message):
    # any state name is well-formed; the hub answers ``invalid_status`` for the states an
    # agent cannot choose (``busy``, ``offered``...) and for unknown ones
    status: Code


class MediaOffer(Message):
    call_id: CallId
    type: Literal["offer"]
    sdp: Sdp


class Wrapup(Message):
    call_id: CallId
    outcome: Literal["resolved", "unresolved", "escalated", "fraud_suspected", "customer_left",
                     "no_show"]
    notes: LongText = ""
    then: Literal["available", "away"] = "available"
    #: protocol 1.1: resolve with required steps open, giving the reason (recorded)
    skip_reason: Reason | None = None


class Note(Message):
    call_id: CallId
    text: Annotated[LongText, StringConstraints(min_length=1)]


class Empty(Message):
    pass


class CheckLiveness(Message):
    call_id: CallId
    count: Annotated[int, Field(ge=1, le=5, strict=True)] = 3


# -- service flows (protocol 1.1) -------------------------------------------------------
class PromptAnswer(Message):
    call_id: CallId
    prompt_id: PromptId
    step_id: StepId
    sha256: Sha256
    answer: Code


class StepRef(Message):
    call_id: CallId
    step_id: StepId


class StepComplete(Message):
    call_id: CallId
    step_id: StepId
    answer: Code | None = None
    note: Reason | None = None


class Concern(Message):
    call_id: CallId
    note: Reason


class ApprovalRequest(Message):
    call_id: CallId
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000),
                    Multiline()] = ""


class ApprovalDecision(Message):
    approval_id: Annotated[int, Field(ge=1, le=2**53, strict=True)]
    decision: Literal["approve", "refuse"]
    note: Reason | None = None


class MonitorOffer(Message):
    """A team lead's receive-only offer to watch one participant (1.4)."""

    call_id: CallId
    participant: Literal["customer", "agent"]
    type: Literal["offer"]
    sdp: Sdp


# event name -> schema, per namespace
CUSTOMER_EVENTS: dict[str, type[Message]] = {
    "call:request": CallRequest,
    "call:hangup": CallRef,
    "media:offer": MediaOffer,
    "prompt:answer": PromptAnswer,
    "auth:refresh": Empty,  # 1.2
    "call:callback": CallRef,  # 1.2
}

AGENT_EVENTS: dict[str, type[Message]] = {
    "agent:status": StatusSet,
    "call:accept": CallRef,
    "call:decline": CallRef,
    "call:hangup": CallRef,
    "call:note": Note,
    "call:wrapup": Wrapup,
    "media:offer": MediaOffer,
    "queue:snapshot": Empty,
    "check:identity": CallRef,
    "check:liveness": CheckLiveness,
    "flow:snapshot": CallRef,
    "step:prompt": StepRef,
    "step:complete": StepComplete,
    "risk:concern": Concern,
    "approval:request": ApprovalRequest,
    "call:take_over": CallRef,  # 1.5: team leads only
}

SUPERVISOR_EVENTS: dict[str, type[Message]] = {
    "approvals:list": Empty,
    "approval:decide": ApprovalDecision,
    "wallboard:snapshot": Empty,  # 1.2
    "monitor:offer": MonitorOffer,  # 1.4
    "monitor:stop": CallRef,  # 1.4
}


def parse_version(value: object) -> tuple[int, int] | None:
    """``1``, ``"1"``, ``"1.1"`` or ``1.1`` as (major, minor); None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, 0)
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, str) and 0 < len(value) <= 8:
        major, _, minor = value.partition(".")
        if major.isdigit() and (minor == "" or minor.isdigit()):
            return (int(major), int(minor or 0))
    return None


# the car-loan interview and appointments (cloudcounter.signaling.loan_schemas)
from cloudcounter.signaling.loan_schemas import (  # noqa: E402 - needs Message above
    LOAN_AGENT_EVENTS, LOAN_CUSTOMER_EVENTS,
)

AGENT_EVENTS.update(LOAN_AGENT_EVENTS)
CUSTOMER_EVENTS.update(LOAN_CUSTOMER_EVENTS)
