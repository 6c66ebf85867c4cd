"""Staff accounts: creation, sign-in and loading, on a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.agents import accounts
from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.migrate import upgrade_engine
from cloudcounter.db.models import Role, User
from cloudcounter.errors import Forbidden, InvalidMessage, Unauthenticated


@pytest.fixture
async def sm(tmp_path: Path) -> AsyncIterator[async_sessionmaker]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/a.db")
    await upgrade_engine(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_create_authenticate_and_load(sm: async_sessionmaker) -> None:
    user = await accounts.create(sm, username="ana", password="correct horse", role=Role.AGENT,
                                 display_name="Ana", skills=["loans", "cards"])
    signed_in = await accounts.authenticate(sm, "ana", "correct horse")
    assert signed_in.id == user.id
    ident = await accounts.load(sm, user.id)
    assert (ident.username, ident.role, ident.skills) == ("ana", "agent", ("cards", "loans"))


async def test_wrong_password_unknown_user_and_disabled_account_look_the_same(
        sm: async_sessionmaker) -> None:
    user = await accounts.create(sm, username="ben", password="correct horse",
                                 role=Role.AUDITOR)
    for username, password in [("ben", "wrong horse"), ("nobody", "correct horse")]:
        with pytest.raises(Unauthenticated) as info:
            await accounts.authenticate(sm, username, password)
        assert info.value.code == "bad_credentials"
    async with sm() as s, s.begin():
        await s.execute(update(User).where(User.id == user.id).values(disabled=True))
    with pytest.raises(Unauthenticated) as info:
        await accounts.authenticate(sm, "ben", "correct horse")
    assert info.value.code == "bad_credentials"
    with pytest.raises(Forbidden) as refused:  # an open session stops working too
        await accounts.load(sm, user.id)
    assert refused.value.code == "account_disabled"


async def test_weak_password_is_refused(sm: async_sessionmaker) -> None:
    with pytest.raises(InvalidMessage) as info:
        await accounts.create(sm, username="cy", password="short", role=Role.ADMIN)
    assert info.value.code == "weak_password"
