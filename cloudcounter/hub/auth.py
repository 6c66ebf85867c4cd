"""Passwords (argon2) and signed tokens (HS256 JWT).

Two kinds of token, signed with different secrets:

* staff access tokens (agents, auditors, admins, leads), minted by ``POST /api/login``
  and ``POST /api/session/refresh``, signed with ``CLOUDCOUNTER_SECRET_KEY``; they name
  the staff session (``sid``) that the hub checks on every request
  (:mod:`cloudcounter.agents.sessions`), and live minutes;
* customer tokens, minted by the bank's app backend (or ``cloudcounter token customer``),
  signed with ``CLOUDCOUNTER_CUSTOMER_TOKEN_SECRET`` and carrying the customer id, the
  services the customer may request and an expiry no further than
  ``CLOUDCOUNTER_CUSTOMER_TOKEN_MAX_TTL_S`` from its issue; optionally the call's ``subject``
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
CLOCK_SKEW_S = 60  # between the hub's clock and the bank's app backend's
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
    session_id: str = ""  # the staff session the token belongs to
    issued_at: float = field(default=0.0, compare=False)  # the token's iat (0: not a token)
    # an agent's preferred skills, as loaded from the database (tokens do not carry them)
    preferred_skills: tuple[str, ...] = ()

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
    if ident.session_id:
        claims["sid"] = ident.session_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_staff_token(secret: str, token: Any, allow_expired: bool = False) -> StaffIdentity:
    """The identity a staff token claims (its session is checked elsewhere).
    ``allow_expired``: for log-out only, which ends the session of an expired token too."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise Unauthenticated("a staff token is required")
    try:
        c = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE_STAFF,
                       issuer=ISSUER_STAFF, options={"require": ["exp", "sub", "role"],
                                                     "verify_exp": not allow_expired})
        return StaffIdentity(int(c["sub"]), str(c["usr"]), str(c["role"]), str(c.get("name", "")),
                             tuple(str(s) for s in c.get("skills", [])),
                             str(c.get("sid", "")), float(c.get("iat", 0)))
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


def verify_customer_token(secret: str, token: Any, max_ttl_s: float | None = None,
                          now: float | None = None) -> CustomerIdentity:
    """The customer a token names. With ``max_ttl_s``, a token whose expiry lies further
    than that from its issue (``iat``; from now without one) is refused
    (``token_lifetime_exceeded``), as is one issued in the future."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise Unauthenticated("a customer token is required")
    now = time.time() if now is None else now
    try:
        c = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE_CUSTOMER,
                       options={"require": ["exp", "sub"]})
        if max_ttl_s is not None:
            issued = float(c["iat"]) if "iat" in c else now
            if issued > now + CLOCK_SKEW_S:
                raise ValueError("iat")
            if float(c["exp"]) - min(issued, now) > max_ttl_s + CLOCK_SKEW_S:
                raise Unauthenticated(
                    f"customer tokens may live at most {int(max_ttl_s)} s",
                    code="token_lifetime_exceeded")
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
