"""HMAC signatures of webhook deliveries.

Each request carries ``CloudCounter-Signature: t=<unix seconds>,v1=<hex>`` where the hex
is HMAC-SHA256 over ``"<t>.<body>"`` with the subscription's secret. During a secret
rotation a second ``v1=`` (the previous secret) follows for a day. A receiver recomputes
it over the raw body, compares in constant time, and refuses a ``t`` further than five
minutes from its clock (a replayed request); it dedupes by the event id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "CloudCounter-Signature"
TOLERANCE_S = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}"
                                         for s in secrets_)])


def verify(secret: str, value: str, body: bytes, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """What a receiver does (also in docs/operations.md): True when one ``v1`` matches and
    the timestamp is recent."""
    parts = [p.split("=", 1) for p in value.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")
