"""The database layer on SQLite (the default) and on PostgreSQL: same tests, both backends."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from cloudcounter.db import repo
from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.journal import DbJournal
from cloudcounter.db.migrate import upgrade_engine
from cloudcounter.db.models import CallEvent, CallSession, Customer, Role
from cloudcounter.errors import Conflict, InvalidMessage
from cloudcounter.hub.auth import hash_password
from cloudcounter.queue.model import Call
from tests.conftest import CI

PG_ADMIN_URL = os.environ.get("CLOUDCOUNTER_TEST_PG_URL",
                              "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    import asyncpg

    admin = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = "cc_test_" + secrets.token_hex(4)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    try:
        asyncio.run(run(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError) as exc:
        if CI:
            pytest.fail(f"PostgreSQL is required in CI ({PG_ADMIN_URL}): {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/t.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def sm(db_url: str) -> AsyncIterator[object]:
    engine = make_engine(db_url)
    async with engine.begin() as conn:  # start from nothing, also on the shared PG database
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await upgrade_engine(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_migrations_create_the_catalogue(sm) -> None:  # type: ignore[no-untyped-def]
    services = await repo.list_services(sm)
    assert {s.code for s in services} == {"card_loss", "password_reset", "contact_change",
                                          "large_transfer", "car_loan"}
    assert await repo.known_skills(sm) == {"cards", "security", "accounts", "payments", "loans",
                                          "senior"}


async def test_migrations_go_down_and_up_again(db_url: str, sm) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    try:
        from alembic import command

        from cloudcounter.db.migrate import alembic_config

        def down_up(conn):  # type: ignore[no-untyped-def]
            cfg = alembic_config(db_url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
            command.upgrade(cfg, "head")
        async with engine.begin() as conn:
            await conn.run_sync(down_up)
        assert len(await repo.list_services(make_sessionmaker(engine))) == 5
    finally:
        await engine.dispose()


async def test_users_skills_and_refusals(sm) -> None:  # type: ignore[no-untyped-def]
    pw = hash_password("password-1")
    user = await repo.add_user(sm, username="ana", password_hash=pw, role=Role.AGENT,
                               skills=["cards", "loans"])
    loaded = await repo.get_user(sm, username="ana")
    assert loaded is not None and loaded.id == user.id and loaded.skill_codes == ["cards", "loans"]
    with pytest.raises(Conflict) as dup:
        await repo.add_user(sm, username="ana", password_hash=pw, role=Role.AUDITOR)
    assert dup.value.code == "duplicate_username"
    with pytest.raises(InvalidMessage) as unknown:
        await repo.add_user(sm, username="ben", password_hash=pw, role=Role.AGENT,
                            skills=["cards", "juggling"])
    assert unknown.value.code == "unknown_skill" and "juggling" in unknown.value.message
    with pytest.raises(InvalidMessage):
        await repo.add_user(sm, username="cy", password_hash=pw, role=Role.AUDITOR,
                            skills=["cards"])
    assert await repo.get_user(sm, username="ben") is None  # nothing half-written


async def test_journal_batches_rows_and_an_append_only_timeline(sm) -> None:  # type: ignore[no-untyped-def]
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_t", name="T"))
    journal = DbJournal(sm, interval=0.01)
    await journal.start()
    call = Call("call_00000000000000aa", "cus_t", "card_loss", "cards", 5, 0.0, 1)
    journal.call_created(call, 1_700_000_000.0)
    journal.event(call.call_id, "customer:cus_t", "call.requested", {"service": "card_loss"})
    journal.call_updated(call.call_id, state="offered", offered_at=1_700_000_001.0, agent_id=None)
    journal.event(call.call_id, "system", "call.offered", {"agent": "ana"})
    await journal.flush()
    journal.call_updated(call.call_id, state="ended", ended_at=1_700_000_009.0,
                         end_reason="completed")
    journal.event(call.call_id, "customer:cus_t", "call.ended", {"reason": "completed"})
    await asyncio.sleep(0.1)  # the writer task picks it up by itself
    journal.event(call.call_id, "auditor:audrey", "audit.viewed")  # after the end: seq from DB
    await journal.stop()
    async with sm() as s:
        row = await s.get(CallSession, call.call_id)
        events = (await s.scalars(select(CallEvent).where(CallEvent.call_id == call.call_id)
                                  .order_by(CallEvent.seq))).all()
    assert row is not None and row.state == "ended" and row.end_reason == "completed"
    assert row.offered_at is not None and row.ended_at is not None
    assert [(e.seq, e.kind) for e in events] == [
        (1, "call.requested"), (2, "call.offered"), (3, "call.ended"), (4, "audit.viewed")]
    assert events[0].payload == {"service": "card_loss"}
    assert journal.failures == 0


async def test_journal_keeps_operations_when_the_database_fails(sm) -> None:  # type: ignore[no-untyped-def]
    journal = DbJournal(sm)
    # a call of a customer that does not exist violates the foreign key on both backends
    call = Call("call_00000000000000bb", "cus_missing", "card_loss", "cards", 0, 0.0, 1)
    journal.call_created(call, 1_700_000_000.0)
    from sqlalchemy.exc import IntegrityError
    with pytest.raises(IntegrityError):
        await journal.flush()
    assert len(journal._ops) == 1  # kept for the retry, nothing lost
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_missing", name="Late"))
    await journal.flush()
    async with sm() as s:
        assert await s.get(CallSession, call.call_id) is not None


async def test_the_hub_runs_a_call_on_postgresql(pg_url: str, hub_factory) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    from cloudcounter.sim.agent import run_agent
    from cloudcounter.sim.customer import run_customer
    hub = await hub_factory(database_url=pg_url)
    ready = asyncio.Event()
    agent = asyncio.create_task(run_agent(hub.url, await hub.agent_token("alice"), calls=1,
                                          accept_delay=0, ready=ready))
    await ready.wait()
    res = await run_customer(hub.url, hub.customer_token(), "card_loss", seconds=0.2)
    assert res.outcome == "completed" and (await agent).calls == 1
    await hub.ctx.journal.flush()
    async with hub.ctx.sm() as s:
        row = await s.get(CallSession, res.call_id)
        n = len((await s.scalars(select(CallEvent).where(CallEvent.call_id == res.call_id))).all())
    assert row is not None and row.end_reason == "completed" and n >= 7
