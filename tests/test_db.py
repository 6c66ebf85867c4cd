"""The database layer on SQLite (the default) and on PostgreSQL: same tests, both backends."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from cloudcounter.db import repo
from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.errors import is_poison
from cloudcounter.db.journal import DbJournal, replay_dead_letters
from cloudcounter.db.migrate import upgrade_engine
from cloudcounter.db.models import CallEvent, CallSession, Customer, Role
from cloudcounter.db.security_models import JournalDeadLetter
from cloudcounter.errors import Conflict, InvalidMessage
from cloudcounter.hub.auth import hash_password
from cloudcounter.queue.model import Call
from tests.pglab import private_database

@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    with private_database("cc_test_") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/t.db"
    return request.getfixturevalue("pg_url")


async def empty_database(engine: Any) -> None:
    """Start from nothing, also on the shared PostgreSQL database."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))


def alembic_step(db_url: str) -> Any:
    """``run(conn, revision, down=False)``: migrate a connection up (or down) to a
    revision, for ``conn.run_sync``."""
    from alembic import command

    from cloudcounter.db.migrate import alembic_config

    def run(conn, rev: str, down: bool = False):  # type: ignore[no-untyped-def]
        cfg = alembic_config(db_url)
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, rev)
    return run


@pytest.fixture
async def sm(db_url: str) -> AsyncIterator[object]:
    engine = make_engine(db_url)
    await empty_database(engine)
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


async def test_journal_keeps_operations_while_the_database_is_unreachable(sm) -> None:  # type: ignore[no-untyped-def]
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_late", name="Late"))
    unreachable = make_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    journal = DbJournal(make_sessionmaker(unreachable))
    call = Call("call_00000000000000bb", "cus_late", "card_loss", "cards", 0, 0.0, 1)
    journal.call_created(call, 1_700_000_000.0)
    journal.event(call.call_id, "customer:cus_late", "call.requested")
    try:
        with pytest.raises(Exception) as info:
            await journal.flush()
        assert not is_poison(info.value)
        assert len(journal._ops) == 2 and journal.dead_letters == 0  # kept, nothing lost
    finally:
        await unreachable.dispose()
    journal._sm = sm  # the database is back
    await journal.flush()
    async with sm() as s:
        assert await s.get(CallSession, call.call_id) is not None
        assert len((await s.scalars(select(CallEvent))).all()) == 1


async def test_a_poisoned_operation_is_put_aside_and_the_rest_written(sm) -> None:  # type: ignore[no-untyped-def]
    """No input can stop the journal: refused rows go to journal_dead_letters (with an
    alert), every other row of the batch is written, later batches go on, and the dead
    letters are written by a replay once their cause is fixed."""
    postgres = sm.kw["bind"].dialect.name == "postgresql"
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_p", name="P"))
    journal = DbJournal(sm)
    alerts: list[tuple[str, str, str]] = []
    journal.on_dead_letter = lambda *a: alerts.append(a)
    good = Call("call_00000000000000c1", "cus_p", "card_loss", "cards", 0, 0.0, 1)
    orphan = Call("call_00000000000000c2", "cus_gone", "card_loss", "cards", 0, 0.0, 1)
    journal.call_created(good, 1_700_000_000.0)
    journal.event(good.call_id, "customer:cus_p", "call.requested")
    journal.call_created(orphan, 1_700_000_000.0)  # a broken foreign key on both backends
    journal.event(orphan.call_id, "customer:cus_gone", "call.requested")  # follows its row
    journal.call_updated(good.call_id, outcome="bad\x00")  # PostgreSQL refuses a NUL in text
    journal.call_updated(good.call_id, state="ended", notes="fine", ended_at=1_700_000_009.0)
    await journal.flush()  # does not raise, does not keep anything for a retry
    assert journal._ops == []
    journal.event(good.call_id, "auditor:audrey", "audit.viewed")  # the journal goes on
    await journal.flush()
    async with sm() as s:
        row = await s.get(CallSession, good.call_id)
        kinds = [(e.seq, e.kind) for e in (await s.scalars(
            select(CallEvent).where(CallEvent.call_id == good.call_id)
            .order_by(CallEvent.seq))).all()]
        dead = (await s.scalars(select(JournalDeadLetter).order_by(JournalDeadLetter.id))).all()
    assert row is not None and row.state == "ended" and row.notes == "fine"
    assert kinds == [(1, "call.requested"), (2, "audit.viewed")]
    expected_dead = [("insert", orphan.call_id), ("event", orphan.call_id)]
    if postgres:  # the NUL update alone is put aside
        expected_dead.append(("update", good.call_id))
        assert row.outcome is None
    else:
        assert row.outcome == "bad\x00"
    assert sorted((d.op, d.call_id) for d in dead) == sorted(expected_dead)
    assert len(alerts) == len(dead) == journal.dead_letters
    assert all(d.error and "\x00" not in d.error for d in dead)
    # the cause is fixed: a replay writes what the database now accepts
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_gone", name="Back"))
    written, refused = await replay_dead_letters(sm)
    assert (written, refused) == (2, 1 if postgres else 0)
    async with sm() as s:
        assert await s.get(CallSession, orphan.call_id) is not None
        assert len((await s.scalars(select(CallEvent).where(
            CallEvent.call_id == orphan.call_id))).all()) == 1


async def test_migration_0005_gives_existing_recordings_opaque_ids(db_url: str) -> None:


    engine = make_engine(db_url)
    try:
        await empty_database(engine)
        run = alembic_step(db_url)
        async with engine.begin() as conn:
            await conn.run_sync(run, "0003")
        async with engine.begin() as conn:  # a database of 0003 with calls and recordings
            await conn.execute(text("INSERT INTO customers (id, name, id_number_masked, phone, "
                                    "risk_level, created_at) VALUES ('cus_m', 'M', '', '', "
                                    "'low', CURRENT_TIMESTAMP)"))
            await conn.execute(text("INSERT INTO call_sessions (id, customer_id, service_code, "
                                    "priority, state, requested_at) VALUES ('call_m', 'cus_m', "
                                    "'card_loss', 0, 'ended', CURRENT_TIMESTAMP)"))
            for who in ("customer", "agent"):
                await conn.execute(text(
                    "INSERT INTO recordings (call_id, participant, path, codecs, started_at, "
                    f"segment) VALUES ('call_m', '{who}', '/x/{who}.webm', '[]', "
                    "CURRENT_TIMESTAMP, 1)"))
        async with engine.begin() as conn:  # an existing database is upgraded
            await conn.run_sync(run, "head")
        async with engine.begin() as conn:
            ids = (await conn.execute(text("SELECT public_id FROM recordings"))).scalars().all()
            assert len(set(ids)) == 2 and all(re.fullmatch(r"rec_[0-9a-f]{24}", i) for i in ids)
            await conn.run_sync(run, "0003", True)  # down again with the data, and up
            await conn.run_sync(run, "head")
    finally:
        await engine.dispose()


def test_the_models_match_the_migrations(tmp_path: Path) -> None:
    """Alembic finds nothing to add: every model change has its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from cloudcounter.db import audit_models, loan_models, ops_models, security_models  # noqa: F401,E501
    from cloudcounter.db.migrate import upgrade
    from cloudcounter.db.models import Base

    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    upgrade(url)
    engine = create_engine(url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as conn:
            # tables, columns, indexes and constraints (not column types: SQLite's are loose)
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], diff


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


async def test_migration_0008_upgrades_a_database_holding_calls(db_url: str) -> None:
    """0005 (with calls, events and recordings) -> head: the services get a target answer
    time, the calls stay as they were, the webhook tables work; and down to 0005 again."""

    from cloudcounter.db.ops_models import WebhookDelivery
    from cloudcounter.webhooks import subscriptions
    from cloudcounter.webhooks.events import NewEvent
    from cloudcounter.webhooks.outbox import publish

    engine = make_engine(db_url)
    try:
        await empty_database(engine)
        run = alembic_step(db_url)
        async with engine.begin() as conn:
            await conn.run_sync(run, "0005")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO customers (id, name, id_number_masked, phone, "
                                    "risk_level, created_at) VALUES ('cus_m', 'M', '', '', "
                                    "'low', CURRENT_TIMESTAMP)"))
            await conn.execute(text("INSERT INTO call_sessions (id, customer_id, service_code, "
                                    "priority, state, requested_at, outcome) VALUES ('call_m', "
                                    "'cus_m', 'card_loss', 3, 'ended', CURRENT_TIMESTAMP, "
                                    "'resolved')"))
            for seq in (1, 2):
                await conn.execute(text(
                    "INSERT INTO call_events (call_id, seq, at, actor, kind, payload) VALUES "
                    f"('call_m', {seq}, CURRENT_TIMESTAMP, 'system', 'call.queued', '{{}}')"))
            await conn.execute(text(
                "INSERT INTO recordings (public_id, call_id, participant, path, codecs, "
                "started_at, segment) VALUES ('rec_000000000000000000000001', 'call_m', "
                "'customer', '/x.webm', '[]', CURRENT_TIMESTAMP, 1)"))
        async with engine.begin() as conn:
            await conn.run_sync(run, "head")
        sm = make_sessionmaker(engine)
        assert {s.target_answer_s for s in await repo.list_services(sm)} == {60}
        async with sm() as s:
            call = await s.get(CallSession, "call_m")
            assert call is not None and (call.priority, call.outcome) == (3, "resolved")
            assert len((await s.scalars(select(CallEvent)
                                        .where(CallEvent.call_id == "call_m"))).all()) == 2
        async with sm() as s, s.begin():
            row, _ = await subscriptions.create(s, name="crm", url="https://crm.example/h",
                                                event_types=["call.*"], actor="test")
            assert await publish(s, [NewEvent("call.ended", {"call_id": "call_m"},
                                              call_id="call_m")]) == 1
        async with sm() as s:
            assert len((await s.scalars(select(WebhookDelivery))).all()) == 1
        async with engine.begin() as conn:
            await conn.run_sync(run, "0005", True)
            await conn.run_sync(run, "head")
        assert len(await repo.list_services(sm)) == 5
    finally:
        await engine.dispose()


async def test_migration_0011_adds_routing_rules_and_preferred_skills(db_url: str) -> None:
    """0008 (with an agent and their skills) -> head: services have no routing rules, the
    agent's skills are not preferred; rules and preferences are stored; down and up again."""

    from cloudcounter.db.models import AgentSkill, ServiceType
    from cloudcounter.queue.routing import ServiceRules

    engine = make_engine(db_url)
    try:
        await empty_database(engine)
        run = alembic_step(db_url)
        async with engine.begin() as conn:
            await conn.run_sync(run, "0008")
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO users (id, username, display_name, password_hash, role, disabled, "
                "created_at) VALUES (7, 'ana', 'Ana', 'x', 'agent', false, CURRENT_TIMESTAMP)"))
            for skill in ("cards", "accounts"):
                await conn.execute(text("INSERT INTO agent_skills (user_id, skill) VALUES "
                                        f"(7, '{skill}')"))
        async with engine.begin() as conn:
            await conn.run_sync(run, "head")
        sm = make_sessionmaker(engine)
        assert {s.routing for s in await repo.list_services(sm)} == {ServiceRules()}
        ana = await repo.get_user(sm, username="ana")
        assert ana is not None and (ana.skill_codes, ana.preferred_codes) == (
            ["accounts", "cards"], [])
        rules = ServiceRules(30.0, frozenset({"accounts"}), None, frozenset(), 2)
        async with sm() as s, s.begin():
            row = await s.get(ServiceType, "card_loss")
            assert row is not None
            row.routing = rules.to_dict()
            skill = await s.get(AgentSkill, (7, "accounts"))
            assert skill is not None
            skill.preferred = True
        services = {s.code: s for s in await repo.list_services(sm)}
        assert services["card_loss"].routing == rules
        assert services["card_loss"].admin_dict()["routing"] == rules.to_dict()
        ana = await repo.get_user(sm, username="ana")
        assert ana is not None and ana.preferred_codes == ["accounts"]
        async with engine.begin() as conn:
            await conn.run_sync(run, "0008", True)
            await conn.run_sync(run, "head")
        assert {s.routing for s in await repo.list_services(sm)} == {ServiceRules()}
    finally:
        await engine.dispose()
