"""Decoding inbound messages against their schemas, on fixed examples."""

from __future__ import annotations

import pytest

from cloudcounter.errors import InvalidMessage, MessageTooLarge, NotFound
from cloudcounter.signaling import edge
from cloudcounter.signaling.schemas import AGENT_EVENTS, CUSTOMER_EVENTS, CallRequest, Wrapup

CALL_ID = "call_0123456789abcdef"
LIMIT = 64 * 1024


def test_valid_examples_decode() -> None:
    msg = edge.decode("call:request", ({"service": "card_loss"},), CUSTOMER_EVENTS, LIMIT)
    assert msg == CallRequest(service="card_loss")
    w = edge.decode("call:wrapup", ({"call_id": CALL_ID, "outcome": "resolved"},),
                    AGENT_EVENTS, LIMIT)
    assert isinstance(w, Wrapup) and w.notes == "" and w.then == "available"
    assert edge.decode("queue:snapshot", (), AGENT_EVENTS, LIMIT) is not None


@pytest.mark.parametrize("event,args,code", [
    ("call:teleport", ({},), "unknown_event"),
    ("call:accept", ({"call_id": CALL_ID},), "unknown_event"),  # an agent event, customer ns
    ("call:request", ("card_loss",), "invalid_message"),  # not an object
    ("call:request", ([1, 2],), "invalid_message"),
    ("call:request", ({},), "invalid_message"),  # missing field
    ("call:request", ({"service": 5},), "invalid_message"),  # wrong type
    ("call:request", ({"service": "Card Loss!"},), "invalid_message"),  # bad code
    ("call:request", ({"service": "card_loss", "admin": True},), "invalid_message"),  # extra
    ("call:request", ({"service": "card_loss"}, {"x": 1}), "invalid_message"),  # two payloads
    ("call:hangup", ({"call_id": "call_../../etc"},), "invalid_message"),
    ("media:offer", ({"call_id": CALL_ID, "type": "answer", "sdp": "v=0" * 10},),
     "invalid_message"),
])
def test_bad_messages_get_stable_codes(event: str, args: tuple, code: str) -> None:
    with pytest.raises((InvalidMessage, NotFound)) as info:
        edge.decode(event, args, CUSTOMER_EVENTS, LIMIT)
    assert info.value.code == code
    reply = edge.error(info.value)
    assert reply["ok"] is False and reply["error"]["code"] == code


def test_oversized_message_is_refused_before_validation() -> None:
    big = {"call_id": CALL_ID, "type": "offer", "sdp": "a" * (LIMIT + 1)}
    with pytest.raises(MessageTooLarge) as info:
        edge.decode("media:offer", (big,), CUSTOMER_EVENTS, LIMIT)
    assert info.value.code == "message_too_large"


def test_schema_problems_are_reported_by_field() -> None:
    with pytest.raises(InvalidMessage) as info:
        edge.decode("call:wrapup", ({"call_id": CALL_ID, "outcome": "maybe"},),
                    AGENT_EVENTS, LIMIT)
    problems = info.value.details["problems"]
    assert problems[0]["field"] == "outcome"
