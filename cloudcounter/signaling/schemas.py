"""Typed schemas of every inbound signalling message (protocol version 1).

Each client event maps to one pydantic model; unknown fields are refused, strings are
bounded. Outbound payloads are documented in ``docs/protocol.md``.

Every model derives from :class:`Message` (HTTP bodies too), which refuses control
characters in every string it holds, at any depth: C0 and C1 controls, DEL and lone
surrogates (PostgreSQL cannot store NUL; a lone surrogate cannot be encoded). A field
marked :class:`Multiline` (notes) may hold line breaks and tabs. New schemas inherit the
rule by deriving from :class:`Message`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, \
    field_validator

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

CallId = Annotated[str, StringConstraints(pattern=r"^call_[0-9a-f]{16}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class Multiline:
    """Marks a text field where line breaks (``\\n``, ``\\r``) and tabs are allowed."""


# SDP is lines: CR LF allowed here, and the media layer checks the rest strictly
Sdp = Annotated[str, StringConstraints(min_length=10, max_length=32_000), Multiline()]


def has_control_characters(value: Any, multiline: bool = False, depth: int = 0) -> bool:
    """Whether a string, or any string in a list, tuple or dict (keys too), holds a
    character the protocol refuses."""
    if isinstance(value, str):
        return (CONTROL_MULTILINE if multiline else CONTROL).search(value) is not None
    if depth > 32:
        return False
    if isinstance(value, (list, tuple)):
        return any(has_control_characters(v, multiline, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(has_control_characters(k, False, depth + 1)
                   or has_control_characters(v, multiline, depth + 1)
                   for k, v in value.items())
    return False


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
    status: Literal["available", "away"]


class MediaOffer(Message):
    call_id: CallId
    type: Literal["offer"]
    sdp: Sdp


class Wrapup(Message):
    call_id: CallId
    outcome: Literal["resolved", "unresolved", "escalated", "fraud_suspected", "customer_left",
                     "no_show"]
    notes: Annotated[str, StringConstraints(max_length=4000), Multiline()] = ""
    then: Literal["available", "away"] = "available"


class Note(Message):
    call_id: CallId
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000), Multiline()]


class Empty(Message):
    pass


class CheckLiveness(Message):
    call_id: CallId
    count: Annotated[int, Field(ge=1, le=5, strict=True)] = 3


# event name -> schema, per namespace
CUSTOMER_EVENTS: dict[str, type[Message]] = {
    "call:request": CallRequest,
    "call:hangup": CallRef,
    "media:offer": MediaOffer,
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
}
