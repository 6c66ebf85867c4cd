"""The edge of the protocol: decode and validate one inbound message, encode replies.

Kept apart from the transport so it can be tested against fixed examples.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from cloudcounter.errors import CloudCounterError, InvalidMessage, MessageTooLarge, NotFound
from cloudcounter.signaling.schemas import Message


def payload_size(args: tuple[Any, ...]) -> int:
    """Size of the message as JSON (binary attachments count by length)."""
    total = 0
    for a in args:
        if isinstance(a, (bytes, bytearray)):
            total += len(a)
        else:
            try:
                total += len(json.dumps(a, separators=(",", ":"), default=str))
            except (TypeError, ValueError):
                raise InvalidMessage("payload is not JSON") from None
    return total


def decode(event: str, args: tuple[Any, ...], schemas: dict[str, type[Message]],
           max_bytes: int) -> Message:
    schema = schemas.get(event)
    if schema is None:
        raise NotFound(f"unknown event {event[:64]!r}", code="unknown_event")
    if payload_size(args) > max_bytes:
        raise MessageTooLarge(f"message larger than {max_bytes} bytes")
    if len(args) > 1:
        raise InvalidMessage("one payload object per message")
    data = args[0] if args else {}
    if not isinstance(data, dict):
        raise InvalidMessage("payload must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage("payload does not match the schema",
                             problems=schema_problems(exc)) from None


def schema_problems(exc: ValidationError, limit: int = 5) -> list[dict[str, str]]:
    """What was wrong, field by field (without echoing the input back)."""
    return [{"field": ".".join(str(p) for p in e["loc"]) or "(payload)", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)[:limit]]


def ok(**data: Any) -> dict[str, Any]:
    return {"ok": True, **data}


def error(exc: CloudCounterError) -> dict[str, Any]:
    return {"ok": False, "error": exc.to_dict()}
