"""Staff accounts: creation with a hashed password and checked skills, sign-in, loading,
and what an administrator changes (disabled flag, password, role, second factor).

Used by the HTTP login and admin API, the Socket.IO agent namespace, the CLI and the demo
seed. The password policy and TOTP live in :mod:`cloudcounter.agents.passwords`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncContextManager, Sequence

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.agents.passwords import new_totp_secret, password_problem, totp_step
from cloudcounter.db import repo
from cloudcounter.db.models import Role, User
from cloudcounter.errors import Forbidden, InvalidMessage, NotFound, Unauthenticated
from cloudcounter.hub.auth import StaffIdentity, hash_password, verify_password


def identity(user: User) -> StaffIdentity:
    return StaffIdentity(user.id, user.username, user.role, user.display_name,
                         tuple(user.skill_codes),
                         preferred_skills=tuple(user.preferred_codes))


async def create(sm: async_sessionmaker, *, username: str, password: str, role: Role,
                 display_name: str | None = None, skills: Sequence[str] = ()) -> User:
    """A new account; refuses a weak password, unknown skills and a taken username."""
    password_hash = await _hash_checked(username, password)
    return await repo.add_user(sm, username=username, password_hash=password_hash, role=role,
                               display_name=display_name, skills=skills)


async def _hash_checked(username: str, password: str) -> str:
    problem = password_problem(username, password)
    if problem is not None:
        raise InvalidMessage(problem, code="weak_password")
    return await asyncio.to_thread(hash_password, password)


async def authenticate(sm: async_sessionmaker, username: str, password: str,
                       gate: AsyncContextManager[object] | None = None) -> User:
    """The account for these credentials. argon2 is deliberately slow (~100-150 ms of CPU
    and 64 MiB of memory): it runs in a thread, never on the event loop, and at most as
    many at once as ``gate`` (a semaphore) lets through. The same error for an unknown
    user, a wrong password and a disabled account."""
    user = await repo.get_user(sm, username=username)
    async with gate if gate is not None else contextlib.nullcontext():
        valid = await asyncio.to_thread(verify_password, user.password_hash if user else None,
                                        password)
    if not valid or user is None or user.disabled:
        raise Unauthenticated("wrong username or password", code="bad_credentials")
    return user


async def check_second_factor(sm: async_sessionmaker, user: User, code: str | None,
                              required: bool, now: float | None = None) -> None:
    """TOTP after the password: an enrolled account needs a valid, unused code; an account
    whose role requires one (``required``) but has none enrolled cannot sign in."""
    if user.totp_secret is None:
        if required:
            raise Forbidden("this account needs a second factor: ask an administrator to "
                            "enrol it (cloudcounter user totp)", code="totp_enrolment_required")
        return
    if not code:
        raise Unauthenticated("enter the 6-digit code of your authenticator app",
                              code="otp_required")
    step = totp_step(user.totp_secret, code, user.totp_last_step, now)
    if step is None:
        raise Unauthenticated("wrong or already used code", code="bad_otp")
    async with sm() as s, s.begin():  # a code is good once, also between two hub nodes
        done = await s.execute(update(User).where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step))
            .values(totp_last_step=step))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Unauthenticated("wrong or already used code", code="bad_otp")


async def get_account(sm: async_sessionmaker, username: str) -> User:
    user = await repo.get_user(sm, username=username)
    if user is None:
        raise NotFound(f"no user {username!r}", code="unknown_user")
    return user


async def set_disabled(sm: async_sessionmaker, username: str, disabled: bool) -> User:
    user = await get_account(sm, username)
    async with sm() as s, s.begin():
        await s.execute(update(User).where(User.id == user.id).values(disabled=disabled))
    user.disabled = disabled
    return user


async def set_password(sm: async_sessionmaker, username: str, password: str) -> User:
    user = await get_account(sm, username)
    password_hash = await _hash_checked(user.username, password)
    async with sm() as s, s.begin():
        await s.execute(update(User).where(User.id == user.id)
                        .values(password_hash=password_hash))
    return user


async def set_role(sm: async_sessionmaker, username: str, role: Role) -> User:
    user = await get_account(sm, username)
    if role is not Role.AGENT and user.skill_codes:
        raise InvalidMessage("only agents have skills: remove them first",
                             code="invalid_skill")
    async with sm() as s, s.begin():
        await s.execute(update(User).where(User.id == user.id).values(role=role.value))
    user.role = role.value
    return user


async def enrol_totp(sm: async_sessionmaker, username: str) -> tuple[User, str]:
    """A new TOTP secret for the account (replacing any previous one)."""
    user = await get_account(sm, username)
    secret = new_totp_secret()
    async with sm() as s, s.begin():
        await s.execute(update(User).where(User.id == user.id)
                        .values(totp_secret=secret, totp_last_step=None))
    user.totp_secret = secret
    return user, secret


async def load(sm: async_sessionmaker, user_id: int) -> StaffIdentity:
    """The current identity of a signed-in user (skills may have changed since sign-in)."""
    user = await repo.get_user(sm, user_id=user_id)
    if user is None or user.disabled:
        raise Forbidden("account disabled or removed", code="account_disabled")
    return identity(user)
