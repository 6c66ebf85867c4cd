"""Passwords (argon2) and signed tokens (HS256 JWT).

Two kinds of token, signed with different secrets:

* staff tokens (agents, auditors, admins), minted by ``POST /api/login``, signed with
  ``CLOUDCOUNTER_SECRET_KEY``;
* customer tokens, minted by the bank's app backend (or ``cloudcounter token customer``),
  signed with ``CLOUDCOUNTER_CUSTOMER_TOKEN_SECRET`` and carrying the customer id, the
  services the customer may request and an expiry; optionally the call's ``subject``
  (what the bank's systems say the call is about: a held transfer's reference, amount,
  payee and purpose; see :mod:`cloudcounter.business.subject`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cloudcounter.business.subject import parse_subject
from cloudcounter.errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER_STAFF = "cloudcounter"
AUDIENCE_STAFF = "cloudcounter-staff"
AUDIENCE_CUSTOMER = "cloudcounter-customer"
_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("passwords have at least 8 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class StaffIdentity:
    user_id: int
    username: str
    role: str
    display_name: str = ""
    skills: tuple[str, ...] = ()

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.username}"


@dataclass(frozen=True)
class CustomerIdentity:
    customer_id: str
    services: tuple[str, ...] | None  # None: any service
    priority: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    subject: dict[str, Any] | None = None

    @property
    def actor(self) -> str:
        return f"customer:{self.customer_id}"

    def may_request(self, service: str) -> bool:
        return self.services is None or service in self.services


def mint_staff_token(secret: str, ident: StaffIdentity, ttl_s: int,
                     now: float | None = None) -> str:
    now = time.time() if now is None else now
    claims = {"sub": str(ident.user_id), "usr": ident.username, "role": ident.role,
              "name": ident.display_name, "skills": list(ident.skills),
              "iss": ISSUER_STAFF, "aud": AUDIENCE_STAFF, "iat": int(now), "exp": int(now + ttl_s)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_staff_token(secret: str, token: Any) -> StaffIdentity:
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise Unauthenticated("a staff token is required")
    try:
        c = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE_STAFF,
                       issuer=ISSUER_STAFF, options={"require": ["exp", "sub", "role"]})
        return StaffIdentity(int(c["sub"]), str(c["usr"]), str(c["role"]), str(c.get("name", "")),
                             tuple(str(s) for s in c.get("skills", [])))
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired", code="token_expired") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise Unauthenticated("invalid token") from None


def mint_customer_token(
    secret: str, customer_id: str, ttl_s: int, services: Sequence[str] | None = None,
    priority: int = 0, now: float | None = None, subject: dict[str, Any] | None = None,
) -> str:
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": customer_id, "aud": AUDIENCE_CUSTOMER,
                              "iat": int(now), "exp": int(now + ttl_s)}
    if services is not None:
        claims["services"] = list(services)
    if subject:
        claims["subject"] = dict(subject)
    if priority:
        claims["prio"] = int(priority)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_customer_token(secret: str, token: Any) -> CustomerIdentity:
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise Unauthenticated("a customer token is required")
    try:
        c = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE_CUSTOMER,
                       options={"require": ["exp", "sub"]})
        services = c.get("services")
        if services is not None and not (
            isinstance(services, list) and all(isinstance(s, str) for s in services)
        ):
            raise ValueError("services")
        prio = int(c.get("prio", 0))
        if not 0 <= prio <= 9:
            raise ValueError("prio")
        subject = parse_subject(c.get("subject"))
        return CustomerIdentity(str(c["sub"]), None if services is None else tuple(services), prio,
                                subject=subject)
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired", code="token_expired") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise Unauthenticated("invalid customer token") from None
