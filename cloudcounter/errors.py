"""A small error hierarchy carrying stable codes.

Turned into HTTP responses or Socket.IO error acknowledgements only at the edge.
"""

from __future__ import annotations

from typing import Any


class CloudCounterError(Exception):
    code = "internal_error"
    http_status = 500
    retryable = False

    def __init__(self, message: str = "", *, code: str | None = None, **details: Any) -> None:
        super().__init__(message or self.code)
        if code is not None:
            self.code = code
        self.message = message or self.code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        if self.retryable:
            out["retryable"] = True
        return out


class InvalidMessage(CloudCounterError):
    code = "invalid_message"
    http_status = 400


class MessageTooLarge(CloudCounterError):
    code = "message_too_large"
    http_status = 413


class Unauthenticated(CloudCounterError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(CloudCounterError):
    code = "forbidden"
    http_status = 403


class NotFound(CloudCounterError):
    code = "not_found"
    http_status = 404


class InvalidState(CloudCounterError):
    """The message is valid but not allowed now (out of order)."""

    code = "invalid_state"
    http_status = 409


class Conflict(CloudCounterError):
    code = "conflict"
    http_status = 409


class RateLimited(CloudCounterError):
    code = "rate_limited"
    http_status = 429
    retryable = True
