"""Staff accounts: creation with a hashed password and checked skills, sign-in, loading.

Used by the HTTP login, the Socket.IO agent namespace, the CLI and the demo seed.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db import repo
from cloudcounter.db.models import Role, User
from cloudcounter.errors import Forbidden, InvalidMessage, Unauthenticated
from cloudcounter.hub.auth import StaffIdentity, hash_password, verify_password


def identity(user: User) -> StaffIdentity:
    return StaffIdentity(user.id, user.username, user.role, user.display_name,
                         tuple(user.skill_codes))


async def create(sm: async_sessionmaker, *, username: str, password: str, role: Role,
                 display_name: str | None = None, skills: Sequence[str] = ()) -> User:
    """A new account; refuses a weak password, unknown skills and a taken username."""
    try:
        password_hash = await asyncio.to_thread(hash_password, password)
    except ValueError as exc:
        raise InvalidMessage(str(exc), code="weak_password") from None
    return await repo.add_user(sm, username=username, password_hash=password_hash, role=role,
                               display_name=display_name, skills=skills)


async def authenticate(sm: async_sessionmaker, username: str, password: str) -> User:
    """The account for these credentials. argon2 is deliberately slow (~100-150 ms of CPU):
    it runs in a thread, never on the event loop. The same error for an unknown user, a
    wrong password and a disabled account."""
    user = await repo.get_user(sm, username=username)
    valid = await asyncio.to_thread(verify_password, user.password_hash if user else None,
                                    password)
    if not valid or user is None or user.disabled:
        raise Unauthenticated("wrong username or password", code="bad_credentials")
    return user


async def load(sm: async_sessionmaker, user_id: int) -> StaffIdentity:
    """The current identity of a signed-in user (skills may have changed since sign-in)."""
    user = await repo.get_user(sm, user_id=user_id)
    if user is None or user.disabled:
        raise Forbidden("account disabled or removed", code="account_disabled")
    return identity(user)
