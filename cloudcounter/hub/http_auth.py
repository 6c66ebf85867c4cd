"""HTTP side of authentication: the session check on every request, role checks, the
login throttle and the bound on concurrent password checks, session cookies.

:func:`authenticate` (a middleware) checks the staff token of every ``/api/`` request
against its session (revocable, see :mod:`cloudcounter.agents.sessions`) before any
handler runs; :func:`require_staff` then only compares roles, so no endpoint can forget
the session check. The refusal is raised only by endpoints that need a staff member.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Any, Callable, Iterable

from aiohttp import web

from cloudcounter.errors import CloudCounterError, Forbidden, RateLimited, Unauthenticated
from cloudcounter.hub.auth import StaffIdentity, mint_staff_token, verify_staff_token
from cloudcounter.hub.context import CTX
from cloudcounter.limits import ProgressiveDelay
from cloudcounter.logs import actor_fields, log_context
from cloudcounter.signaling.clientinfo import ClientInfo, client_info
from cloudcounter.signaling.namespaces import SESSION_COOKIE

REFRESH_COOKIE = "cc_refresh"
REFRESH_PATH = "/api/session"
IDENT: web.RequestKey[StaffIdentity] = web.RequestKey("cc_staff", StaffIdentity)
AUTH_ERROR: web.RequestKey[CloudCounterError] = web.RequestKey("cc_auth_error",
                                                               CloudCounterError)
FROM_COOKIE: web.RequestKey[bool] = web.RequestKey("cc_from_cookie", bool)


def client(request: web.Request) -> ClientInfo:
    return client_info(request, request.app[CTX].security.trusted)


def token_from_request(request: web.Request) -> tuple[str | None, bool]:
    """The staff token and whether it came from the cookie."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie, cookie is not None


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)  # type: ignore[no-any-return]
    ctx = request.app[CTX]
    token, from_cookie = token_from_request(request)
    if token:
        try:
            claimed = verify_staff_token(ctx.settings.secret_key, token)
            current = await ctx.security.sessions.check(claimed.session_id, claimed.user_id)
            request[IDENT] = dataclasses.replace(current, issued_at=claimed.issued_at)
            request[FROM_COOKIE] = from_cookie
        except CloudCounterError as exc:
            request[AUTH_ERROR] = exc
    ident = request.get(IDENT)
    with log_context(**(actor_fields(ident.actor) if ident is not None else {})):
        resp: web.StreamResponse = await handler(request)
    if ident is not None and request.get(FROM_COOKIE) and not resp.prepared \
            and SESSION_COOKIE not in resp.cookies:
        # A browser in use keeps a fresh access cookie while its session lives.
        ttl = ctx.settings.staff_token_ttl_s
        if time.time() - ident.issued_at > ttl / 2:
            set_access_cookie(resp, request, mint_staff_token(ctx.settings.secret_key, ident,
                                                              ttl))
    return resp


def current_staff(request: web.Request) -> StaffIdentity | None:
    return request.get(IDENT)


def require_staff(request: web.Request, roles: Iterable[str]) -> StaffIdentity:
    """The signed-in staff member, if their (current) role is one of ``roles``."""
    error = request.get(AUTH_ERROR)
    if error is not None:
        raise error
    ident = current_staff(request)
    if ident is None:
        raise Unauthenticated("sign in first")
    allowed = set(roles)
    if ident.role not in allowed:
        raise Forbidden(f"needs role {' or '.join(sorted(allowed))}")
    return ident


# -- cookies ------------------------------------------------------------------------------
def set_access_cookie(resp: web.StreamResponse, request: web.Request, token: str) -> None:
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                    max_age=request.app[CTX].settings.staff_token_ttl_s,
                    secure=client(request).secure)


def set_session_cookies(resp: web.StreamResponse, request: web.Request, token: str,
                        refresh: str, session_expires_at: float) -> None:
    set_access_cookie(resp, request, token)
    resp.set_cookie(REFRESH_COOKIE, refresh, httponly=True, samesite="Strict",
                    path=REFRESH_PATH, max_age=max(0, int(session_expires_at - time.time())),
                    secure=client(request).secure)


def clear_session_cookies(resp: web.StreamResponse) -> None:
    resp.del_cookie(SESSION_COOKIE, path="/")
    resp.del_cookie(REFRESH_COOKIE, path=REFRESH_PATH)


# -- login throttle -------------------------------------------------------------------------
class LoginAttempt:
    def __init__(self, throttle: "LoginThrottle", pair: str, account: str,
                 address: str) -> None:
        self._t, self._pair, self._account, self._address = throttle, pair, account, address
        self._done = False

    def failed(self) -> None:
        if self._done:
            return
        self._done = True
        now = self._t.clock()
        self._t.pair.failed(self._pair, now)
        self._t.account.failed(self._account, now)
        self._t.address.failed(self._address, now)

    def succeeded(self) -> None:
        if not self._done:
            self._done = True
            self._t.pair.settled(self._pair)
            self._t.account.settled(self._account)

    def abandoned(self) -> None:
        """Not judged (the hub was busy, a second factor is still to come)."""
        if not self._done:
            self._done = True
            self._t.pair.settled(self._pair, reset=False)
            self._t.account.settled(self._account, reset=False)


class LoginThrottle:
    """Progressive delays, never a lock-out. Three keys:

    * account and address together: 3 free failures, then 1 s, 2 s, 4 s... up to 5 min;
    * the address, whatever the account (password spraying): 20 free, then up to 15 min;
    * the account, whatever the address (distributed guessing): 5 free, then up to 1 min,
      applied only to addresses that have failed before, so the real user on a clean
      address always gets an attempt.

    Attempts in progress count as failures until they are settled (an attempt is
    reserved before the password is checked), so concurrent guesses cannot race past the
    limit. Once a delay has passed there is always one fresh attempt.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pair = ProgressiveDelay(free=3, base_s=1.0, cap_s=300.0)
        self.address = ProgressiveDelay(free=20, base_s=1.0, cap_s=900.0)
        self.account = ProgressiveDelay(free=5, base_s=2.0, cap_s=60.0)

    def begin(self, username: str, address: str) -> LoginAttempt:
        now = self.clock()
        account = username.lower()
        pair = f"{account}\x1f{address}"
        waits = [self.pair.retry_after(pair, now), self.address.retry_after(address, now)]
        if self.address.failures(address) or self.pair.failures(pair):
            waits.append(self.account.retry_after(account, now))
        wait = max(waits)
        if wait > 0:
            raise RateLimited(f"too many failed sign-ins: try again in {math.ceil(wait)} s",
                              code="login_throttled", retry_after_s=math.ceil(wait))
        self.pair.begin(pair, now)
        self.account.begin(account, now)
        return LoginAttempt(self, pair, account, address)


class LoginGate:
    """At most ``concurrency`` password checks at once (argon2 takes 64 MiB each), and at
    most ``queue`` waiting; beyond, ``login_busy`` (retryable)."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._sem = asyncio.Semaphore(concurrency)
        self._queue = queue
        self.waiting = 0
        self.peak = 0  # most checks at once (tests, benchmarks)
        self._running = 0

    async def __aenter__(self) -> None:
        if self.waiting >= self._queue:
            raise RateLimited("the hub is busy signing people in: try again in a moment",
                              code="login_busy", retry_after_s=1)
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self._running += 1
        self.peak = max(self.peak, self._running)

    async def __aexit__(self, *exc: Any) -> None:
        self._running -= 1
        self._sem.release()
