"""Staff sessions: revocable, checked on every request and socket event.

A sign-in opens a session (a row in ``staff_sessions``) and gets two credentials: a
short-lived access token (a JWT naming the session, ``sid``) and an opaque refresh token
(stored hashed) that mints the next access token and is replaced each time it is used.
Every HTTP request and socket event checks the session: it must exist, belong to the
token's user, be neither revoked nor expired, and the account must not be disabled. The
role, name and skills come from the database, not from the token, so a demotion takes
effect at once.

Checks are cached for ``cache_s`` (default 2 s) per session: a revocation made in this
process is seen at once (the cache entry is dropped and listeners are told); one made
elsewhere (``cloudcounter user disable`` in another process, another hub node) within
``cache_s``. A replayed refresh token (one already replaced, after a grace of
``REFRESH_GRACE_S`` for a page's concurrent requests) revokes the session: it was stolen.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.db.models import User
from cloudcounter.db.security_models import StaffSession
from cloudcounter.errors import CloudCounterError, Forbidden, Unauthenticated
from cloudcounter.hub.auth import StaffIdentity

REFRESH_GRACE_S = 10.0
Listener = Callable[[set[str], str], None]


def new_session_id() -> str:
    return "ses_" + secrets.token_hex(16)


def new_refresh_token() -> str:
    return "rt_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _ts(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


@dataclass(frozen=True)
class Grant:
    """What a sign-in or a refresh hands out."""

    identity: StaffIdentity
    refresh_token: str
    expires_at: float  # the session's end (epoch seconds)


def judge(row: StaffSession | None, user: User | None, user_id: int | None,
          now: float) -> StaffIdentity:
    """The identity behind a session row, or the refusal (pure: no I/O)."""
    if row is None or user is None or (user_id is not None and row.user_id != user_id):
        raise Unauthenticated("this session does not exist", code="session_revoked")
    if row.revoked_at is not None:
        raise Unauthenticated(f"this session was ended ({row.revoked_reason or 'revoked'})",
                              code="session_revoked")
    if _ts(row.expires_at) <= now:
        raise Unauthenticated("this session has expired: sign in again",
                              code="session_expired")
    if user.disabled:
        raise Forbidden("this account is disabled", code="account_disabled")
    return StaffIdentity(user.id, user.username, user.role, user.display_name,
                         tuple(user.skill_codes), row.id,
                         preferred_skills=tuple(user.preferred_codes))


async def revoke_sessions(sm: async_sessionmaker, *, reason: str, by: str,
                          session_id: str | None = None, user_id: int | None = None,
                          now: float | None = None) -> set[str]:
    """Revoke one session or every live session of a user; returns the ids revoked."""
    if (session_id is None) == (user_id is None):
        raise ValueError("name a session or a user")
    async with sm() as s, s.begin():
        return await revoke_in(s, reason=reason, by=by, session_id=session_id,
                               user_id=user_id, now=now)


async def revoke_in(s: AsyncSession, *, reason: str, by: str, session_id: str | None = None,
                    user_id: int | None = None, now: float | None = None) -> set[str]:
    """:func:`revoke_sessions` in the caller's transaction (an administrator's change, its
    revocations and its security event commit together)."""
    if (session_id is None) == (user_id is None):
        raise ValueError("name a session or a user")
    now = time.time() if now is None else now
    cond = StaffSession.id == session_id if session_id is not None else \
        StaffSession.user_id == user_id
    ids = set((await s.scalars(select(StaffSession.id).where(
        cond, StaffSession.revoked_at.is_(None)))).all())
    if ids:
        await s.execute(update(StaffSession).where(StaffSession.id.in_(ids)).values(
            revoked_at=_dt(now), revoked_reason=reason[:32], revoked_by=by[:80]))
    return ids


class SessionStore:
    def __init__(self, sm: async_sessionmaker, *, session_ttl_s: float, cache_s: float = 2.0,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.sm = sm
        self.session_ttl_s = session_ttl_s
        self.cache_s = cache_s
        self.clock = clock
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, StaffIdentity | CloudCounterError]] = {}
        self.listeners: list[Listener] = []

    async def open(self, user: User, address: str = "", user_agent: str = "") -> Grant:
        now = self.clock()
        refresh = new_refresh_token()
        row = StaffSession(id=new_session_id(), user_id=user.id, created_at=_dt(now),
                           expires_at=_dt(now + self.session_ttl_s),
                           refresh_hash=token_hash(refresh), address=address[:64],
                           user_agent=user_agent[:200])
        async with self.sm() as s, s.begin():
            s.add(row)
        ident = judge(row, user, user.id, now)
        return Grant(ident, refresh, now + self.session_ttl_s)

    async def check(self, session_id: str, user_id: int | None = None) -> StaffIdentity:
        """The current identity of a live session; raises the refusal (cached)."""
        if not session_id:
            raise Unauthenticated("this token names no session: sign in again",
                                  code="session_revoked")
        mono = self.monotonic()
        hit = self._cache.get(session_id)
        if hit is None or hit[0] <= mono:
            async with self.sm() as s:
                found = (await s.execute(
                    select(StaffSession, User).join(User, User.id == StaffSession.user_id)
                    .where(StaffSession.id == session_id))).first()
            row, user = (found[0], found[1]) if found is not None else (None, None)
            result: StaffIdentity | CloudCounterError
            try:
                result = judge(row, user, None, self.clock())
            except CloudCounterError as exc:
                result = exc
            if len(self._cache) > 50_000:
                self._cache.clear()
            hit = self._cache[session_id] = (mono + self.cache_s, result)
        result = hit[1]
        if isinstance(result, CloudCounterError):
            raise type(result)(result.message, code=result.code)
        if user_id is not None and result.user_id != user_id:
            raise Unauthenticated("this session does not exist", code="session_revoked")
        return result

    async def check_many(self, session_ids: Iterable[str]) -> dict[str, CloudCounterError]:
        """The refusals among ``session_ids`` (fresh from the database, one query): what
        a watcher of open sockets needs."""
        ids = set(session_ids)
        if not ids:
            return {}
        async with self.sm() as s:
            rows = {r[0].id: (r[0], r[1]) for r in (await s.execute(
                select(StaffSession, User).join(User, User.id == StaffSession.user_id)
                .where(StaffSession.id.in_(ids)))).all()}
        now, mono = self.clock(), self.monotonic()
        refused: dict[str, CloudCounterError] = {}
        for sid in ids:
            row, user = rows.get(sid, (None, None))
            try:
                ident = judge(row, user, None, now)
                self._cache[sid] = (mono + self.cache_s, ident)
            except CloudCounterError as exc:
                refused[sid] = exc
                self._cache[sid] = (mono + self.cache_s, exc)
        return refused

    async def refresh(self, refresh_token: str) -> Grant:
        """Rotate a refresh token: a new access identity and a new refresh token."""
        if not isinstance(refresh_token, str) or not refresh_token.startswith("rt_") \
                or len(refresh_token) > 128:
            raise Unauthenticated("a refresh token is required", code="session_revoked")
        h = token_hash(refresh_token)
        now = self.clock()
        stolen = False
        async with self.sm() as s, s.begin():
            found = (await s.execute(
                select(StaffSession, User).join(User, User.id == StaffSession.user_id)
                .where(or_(StaffSession.refresh_hash == h,
                           StaffSession.previous_refresh_hash == h)))).first()
            if found is None:
                raise Unauthenticated("unknown refresh token: sign in again",
                                      code="session_revoked")
            row, user = found[0], found[1]
            current = row.refresh_hash == h
            if not current and (row.refreshed_at is None
                                or now - _ts(row.refreshed_at) > REFRESH_GRACE_S):
                stolen = True
                if row.revoked_at is None:
                    row.revoked_at, row.revoked_reason = _dt(now), "refresh_replayed"
                    row.revoked_by = "system"
            else:
                judge(row, user, None, now)  # raises (and changes nothing) when refused
                new = new_refresh_token()
                if current:
                    row.previous_refresh_hash = row.refresh_hash
                row.refresh_hash = token_hash(new)
                row.refreshed_at = _dt(now)
                grant = Grant(judge(row, user, None, now), new, _ts(row.expires_at))
        if stolen:
            self.forget({row.id}, "refresh_replayed")
            raise Unauthenticated("this refresh token was already used: the session is "
                                  "ended", code="session_revoked")
        return grant

    async def revoke(self, *, reason: str, by: str, session_id: str | None = None,
                     user_id: int | None = None) -> set[str]:
        ids = await revoke_sessions(self.sm, reason=reason, by=by, session_id=session_id,
                                    user_id=user_id, now=self.clock())
        if user_id is not None:  # sessions already revoked stay refused; drop all of them
            ids |= {sid for sid, (_, r) in self._cache.items()
                    if isinstance(r, StaffIdentity) and r.user_id == user_id}
        self.forget(ids, reason)
        return ids

    def forget(self, session_ids: set[str], reason: str) -> None:
        """Drop cached checks (the next check reads the database) and tell listeners."""
        for sid in session_ids:
            self._cache.pop(sid, None)
        if session_ids:
            for listener in list(self.listeners):
                listener(set(session_ids), reason)

    def invalidate_user(self, user_id: int, reason: str) -> None:
        """The account changed (disabled, role): re-read its sessions on their next use."""
        self.forget({sid for sid, (_, r) in self._cache.items()
                     if isinstance(r, StaffIdentity) and r.user_id == user_id}, reason)
