"""Typed schemas of every inbound signalling message (protocol version 1).

Each client event maps to one pydantic model; unknown fields are refused, strings are
bounded. Outbound payloads are documented in ``docs/protocol.md``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

CallId = Annotated[str, StringConstraints(pattern=r"^call_[0-9a-f]{16}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Sdp = Annotated[str, StringConstraints(min_length=10, max_length=32_000)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


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
    notes: Annotated[str, StringConstraints(max_length=4000)] = ""
    then: Literal["available", "away"] = "available"


class Note(Message):
    call_id: CallId
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]


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
