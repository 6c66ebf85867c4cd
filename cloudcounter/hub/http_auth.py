"""HTTP side of authentication: login with throttling, and role checks on requests."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Iterable

from aiohttp import web

from cloudcounter.errors import Forbidden, RateLimited, Unauthenticated
from cloudcounter.hub.auth import StaffIdentity, verify_staff_token
from cloudcounter.signaling.namespaces import SESSION_COOKIE


class LoginThrottle:
    """At most ``limit`` failed logins per username per ``window_s``."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, list[float]] = defaultdict(list)

    def check(self, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._fails.get(username, []) if now - t < self.window_s]
        self._fails[username] = recent
        if len(recent) >= self.limit:
            raise RateLimited("too many failed logins; try again later", code="login_throttled")

    def failed(self, username: str) -> None:
        self._fails[username].append(time.monotonic())

    def succeeded(self, username: str) -> None:
        self._fails.pop(username, None)


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


def require_staff(request: web.Request, secret: str, roles: Iterable[str]) -> StaffIdentity:
    token = token_from_request(request)
    if not token:
        raise Unauthenticated("sign in first")
    ident = verify_staff_token(secret, token)
    if ident.role not in set(roles):
        raise Forbidden(f"needs role {' or '.join(sorted(roles))}")
    return ident
