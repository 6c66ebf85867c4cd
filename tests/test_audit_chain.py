"""The hash-chained timeline (docs/supervision.md): written by the journal, verified call
by call, every kind of tampering found at its place, on SQLite and on PostgreSQL, by the
API's functions and by ``cloudcounter audit verify``; the daily digest log."""

# ruff: noqa: F811 - the tests take test_db's fixtures (sm, on both backends) by name
from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from cloudcounter.audit.chain import GENESIS, row_hash, verify_events
from cloudcounter.audit.verify import verify_all, verify_call, verify_digests, write_digest
from cloudcounter.db.audit_models import AuditDigest
from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.journal import DbJournal
from cloudcounter.db.migrate import upgrade_engine
from cloudcounter.db.models import CallEvent, Customer, Recording
from cloudcounter.errors import Conflict, InvalidMessage
from cloudcounter.queue.model import Call
from tests.test_db import db_url, pg_url, sm  # noqa: F401 - the fixtures (both backends)

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DAY = date(2023, 11, 14)
KEY = b"k" * 40


async def make_call(sm: Any, call_id: str, tmp: Path | None = None, extra: int = 0) -> None:
    """A call with five events (with ``tmp``: six, a closed recording and an evidence frame
    on the chain)."""
    async with sm() as s, s.begin():
        if await s.get(Customer, "cus_t") is None:
            s.add(Customer(id="cus_t", name="T"))
    journal = DbJournal(sm, interval=0.01)
    call = Call(call_id, "cus_t", "card_loss", "cards", 5, 0.0, 1)
    journal.call_created(call, T0)
    journal.event(call_id, "customer:cus_t", "call.requested", {"service": "card_loss",
                                                                "note": "naïve 中文 \\ \""},
                  at=T0)
    journal.event(call_id, "system", "call.offered", {"agent": "ana", "n": 1.5}, at=T0 + 1)
    await journal.flush()
    journal.event(call_id, "agent:ana", "call.answered", {}, at=T0 + 2)
    if tmp is not None:
        path = tmp / f"{call_id}-agent.webm"
        path.write_bytes(b"recorded media " * 100)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        await journal.flush()
        async with sm() as s, s.begin():
            s.add(Recording(call_id=call_id, participant="agent", path=str(path), sha256=sha,
                            size_bytes=path.stat().st_size, segment=1,
                            started_at=datetime.fromtimestamp(T0 + 2, timezone.utc)))
        journal.event(call_id, "system", "recording.stopped", {
            "segment": 1, "reason": "ended", "files": {"agent": {"sha256": sha}}}, at=T0 + 3)
        frame = tmp / f"{call_id}-chk_0123456789ab.jpg"
        frame.write_bytes(b"\xff\xd8 a frame \xff\xd9")
        journal.event(call_id, "system", "evidence.hashed", {
            "file": frame.name, "sha256": hashlib.sha256(frame.read_bytes()).hexdigest(),
            "size_bytes": frame.stat().st_size}, at=T0 + 4)
    else:
        journal.event(call_id, "system", "call.note", {"text": "x"}, at=T0 + 3)
    journal.call_updated(call_id, state="ended", ended_at=T0 + 9, end_reason="completed")
    journal.event(call_id, "agent:ana", "call.ended", {"reason": "completed"}, at=T0 + 9)
    await journal.flush()
    later = DbJournal(sm)  # another writer (a restart): the chain goes on from the database
    for i in range(extra):
        later.event(call_id, "auditor:audrey", "audit.viewed", {"i": i}, at=T0 + 100 + i)
    await later.flush()


async def events_of(sm: Any, call_id: str) -> list[CallEvent]:
    async with sm() as s:
        return list((await s.scalars(select(CallEvent).where(CallEvent.call_id == call_id)
                                     .order_by(CallEvent.seq))).all())


async def sql(sm: Any, statement: str, **params: Any) -> None:
    """What a database administrator does, bypassing the application and switching off
    the append-only triggers first (PostgreSQL: replica mode; SQLite: dropping them)."""
    async with sm() as s, s.begin():
        if s.bind.dialect.name == "postgresql":
            await s.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for t in ("call_events", "audit_digests"):
                for verb in ("update", "delete"):
                    await s.execute(text(f"DROP TRIGGER IF EXISTS {t}_append_only_{verb}"))
        await s.execute(text(statement), params)


async def test_the_timeline_and_the_digest_log_are_append_only_in_the_database(sm) -> None:  # type: ignore[no-untyped-def]
    cid = "call_00000000000000c0"
    await make_call(sm, cid)
    await write_digest(sm, DAY, "t", None)
    for statement in ("UPDATE call_events SET payload = '{}' WHERE call_id = :c",
                      "DELETE FROM call_events WHERE call_id = :c",
                      "UPDATE audit_digests SET root = 'x'", "DELETE FROM audit_digests"):
        with pytest.raises(Exception) as refused:
            async with sm() as s, s.begin():
                await s.execute(text(statement), {"c": cid})
        assert "append-only" in str(refused.value), statement
    assert len(await events_of(sm, cid)) == 5 and await verify_call(sm, cid) == []


async def test_the_journal_chains_every_event_and_it_verifies(sm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cid = "call_00000000000000c1"
    await make_call(sm, cid, tmp_path, extra=2)
    events = await events_of(sm, cid)
    assert [e.seq for e in events] == list(range(1, 9))
    assert events[0].prev_hash == GENESIS
    for before, e in zip(events, events[1:]):
        assert e.prev_hash == before.hash
    assert all(row_hash(e) == e.hash for e in events)  # recomputable from the stored row
    assert await verify_call(sm, cid) == []
    n, breaks = await verify_all(sm)
    assert (n, breaks) == (1, [])
    with pytest.raises(InvalidMessage) as unknown:
        await verify_call(sm, "call_ffffffffffffffff")
    assert unknown.value.code == "unknown_call"


TAMPERING = {
    # name: (statements, expected (kind, seq) among the breaks)
    "changed payload": (["UPDATE call_events SET payload = '{\"agent\": \"bob\", \"n\": 1.5}' "
                         "WHERE call_id = :c AND seq = 2"], ("changed", 2)),
    "changed actor": (["UPDATE call_events SET actor = 'agent:bob' WHERE call_id = :c "
                       "AND seq = 3"], ("changed", 3)),
    "deleted event": (["DELETE FROM call_events WHERE call_id = :c AND seq = 2"],
                      ("deleted", 3)),
    "reordered events": (["UPDATE call_events SET seq = 1000 WHERE call_id = :c AND seq = 2",
                          "UPDATE call_events SET seq = 2 WHERE call_id = :c AND seq = 3",
                          "UPDATE call_events SET seq = 3 WHERE call_id = :c AND seq = 1000"],
                         ("reordered", 2)),
    "hash recomputed for a changed row": (
        ["UPDATE call_events SET payload = '{}', hash = :fake WHERE call_id = :c AND seq = 2"],
        ("changed", 2)),
    "row and its hash rewritten": ([], ("changed", 2)),
    "replaced recording file": ([], ("recording_replaced", None)),
    "replaced evidence file": ([], ("evidence_replaced", None)),
    "recording row changed": (["UPDATE recordings SET sha256 = :fake WHERE call_id = :c"],
                              ("recording_row_changed", None)),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_is_found_at_its_place(sm, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    cid = "call_00000000000000c2"
    other = "call_00000000000000c3"
    await make_call(sm, cid, tmp_path, extra=1)
    await make_call(sm, other)
    statements, (kind, seq) = TAMPERING[case]
    for st in statements:
        await sql(sm, st, c=cid, fake="f" * 64)
    if case == "row and its hash rewritten":  # the hash recomputed as the journal would
        row = (await events_of(sm, cid))[1]
        row.payload = {"agent": "bob", "n": 1.5}
        await sql(sm, "UPDATE call_events SET payload = '{\"agent\": \"bob\", \"n\": 1.5}', "
                  "hash = :h WHERE call_id = :c AND seq = 2", c=cid, h=row_hash(row))
    if case == "replaced recording file":
        (tmp_path / f"{cid}-agent.webm").write_bytes(b"another film")
    if case == "replaced evidence file":
        (tmp_path / f"{cid}-chk_0123456789ab.jpg").write_bytes(b"another face")
    breaks = await verify_call(sm, cid)
    assert (kind, seq) in [(b.kind, b.seq) for b in breaks], breaks
    assert await verify_call(sm, other) == []  # the other call is untouched
    n, all_breaks = await verify_all(sm)
    assert n == 2 and {b.call_id for b in all_breaks} == {cid}


async def test_the_daily_digest_catches_a_cut_timeline_and_is_signed(sm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cid = "call_00000000000000c4"
    await make_call(sm, cid)
    with pytest.raises(InvalidMessage) as early:
        await write_digest(sm, datetime.now(timezone.utc).date(), "cli:test", KEY)
    assert early.value.code == "day_not_over"
    d = await write_digest(sm, DAY, "cli:test", KEY)
    assert d.entries == [[cid, 5, (await events_of(sm, cid))[-1].hash]] and d.signature
    with pytest.raises(Conflict) as again:
        await write_digest(sm, DAY, "cli:test", KEY)
    assert again.value.code == "digest_exists"
    assert await verify_digests(sm, KEY) == []
    # events appended after the digest do not break it (it pins a prefix)
    later = DbJournal(sm)
    later.event(cid, "auditor:audrey", "audit.viewed", {}, at=T0 + 200)
    await later.flush()
    assert await verify_call(sm, cid) == [] and await verify_digests(sm, KEY) == []
    # cutting the end of the timeline leaves a whole chain, but not the digested event
    await sql(sm, "DELETE FROM call_events WHERE call_id = :c AND seq >= 5", c=cid)
    assert verify_events(cid, await events_of(sm, cid)) == []
    assert ("deleted", 5) in [(b.kind, b.seq) for b in await verify_call(sm, cid)]
    assert ("deleted", 5) in [(b.kind, b.seq) for b in await verify_digests(sm, KEY)]
    # an administrator rewriting the digest to match: the root and its signature give it away
    await sql(sm, "UPDATE audit_digests SET entries = '[]'")
    assert "digest_changed" in {b.kind for b in await verify_digests(sm, KEY)}
    async with sm() as s:
        fixed = (await s.scalars(select(AuditDigest))).one()
    from cloudcounter.audit.verify import digest_root
    await sql(sm, "UPDATE audit_digests SET root = :r", r=digest_root(fixed.prev_root, []))
    kinds = {b.kind for b in await verify_digests(sm, KEY)}
    assert "digest_signature" in kinds and "digest_changed" not in kinds


def test_the_migration_chains_existing_events(tmp_path: Path) -> None:
    """Rows written before revision 0010 get their hashes when it is applied."""
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"

    async def go() -> None:
        engine = make_engine(url)
        try:
            await upgrade_engine(engine, "0008")
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO customers (id, name, id_number_masked, "
                                        "phone, risk_level, created_at) VALUES ('cus_o', 'O', "
                                        "'', '', 'low', '2023-11-14 00:00:00')"))
                await conn.execute(text(
                    "INSERT INTO call_sessions (id, customer_id, service_code, priority, "
                    "state, requested_at) VALUES ('call_00000000000000d1', 'cus_o', "
                    "'card_loss', 0, 'ended', '2023-11-14 10:00:00.000000')"))
                for seq in (1, 2, 3):
                    await conn.execute(text(
                        "INSERT INTO call_events (call_id, seq, at, actor, kind, payload) "
                        "VALUES ('call_00000000000000d1', :s, :at, 'system', 'k', :p)"),
                        {"s": seq, "at": f"2023-11-14 10:00:0{seq}.000000",
                         "p": f'{{"n": {seq}}}'})
            await upgrade_engine(engine)
            sm_ = make_sessionmaker(engine)
            events = await events_of(sm_, "call_00000000000000d1")
            assert [e.prev_hash == GENESIS for e in events] == [True, False, False]
            assert await verify_call(sm_, "call_00000000000000d1") == []
            journal = DbJournal(sm_)  # the chain goes on after the backfill
            journal.event("call_00000000000000d1", "system", "k", {})
            await journal.flush()
            assert await verify_call(sm_, "call_00000000000000d1") == []
        finally:
            await engine.dispose()
    asyncio.run(go())


class Cli:
    """``cloudcounter audit ...`` run in this process (the same ``main()`` as the command,
    without a Python start-up per call): exit status, stdout and stderr."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 env: dict[str, str]) -> None:
        self.monkeypatch, self.capsys, self.env = monkeypatch, capsys, env

    def __call__(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        from cloudcounter.hub.cli import main
        for k in [k for k in os.environ if k.startswith("CLOUDCOUNTER_")]:
            self.monkeypatch.delenv(k)
        for k, v in {**self.env, **extra}.items():
            self.monkeypatch.setenv(k, v)
        self.capsys.readouterr()
        try:
            code = main(["audit", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = self.capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_cli_audit_verify_and_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"

    async def prepare() -> None:
        engine = make_engine(url)
        try:
            await upgrade_engine(engine)
            sm_ = make_sessionmaker(engine)
            await make_call(sm_, "call_00000000000000e1", tmp_path)
            await make_call(sm_, "call_00000000000000e2")
        finally:
            await engine.dispose()
    asyncio.run(prepare())
    cli = Cli(monkeypatch, capsys, {"CLOUDCOUNTER_DATABASE_URL": url,
                                    "CLOUDCOUNTER_DEMO": "1",
                                    "CLOUDCOUNTER_AUDIT_KEY": "a" * 40})
    ok = cli("verify", "--all")
    assert ok.returncode == 0 and "2 call(s)" in ok.stdout, ok.stdout + ok.stderr
    dg = cli("digest", "--date", "2023-11-14")
    assert dg.returncode == 0 and "2 call(s)" in dg.stdout and "signed" in dg.stdout, dg.stderr
    assert cli("digest", "--date", "2023-11-14").returncode == 2  # append-only
    (tmp_path / "call_00000000000000e1-agent.webm").write_bytes(b"swapped")

    async def tamper() -> None:
        engine = make_engine(url)
        try:
            await sql(make_sessionmaker(engine), "UPDATE call_events SET payload = '{}' "
                      "WHERE call_id = 'call_00000000000000e2' AND seq = 2")
        finally:
            await engine.dispose()
    asyncio.run(tamper())
    one = cli("verify", "call_00000000000000e1")
    assert one.returncode == 1 and "recording_replaced" in one.stdout, one.stdout
    bad = cli("verify", "--all")
    assert bad.returncode == 1
    assert "call_00000000000000e2 at event 2: changed" in bad.stdout, bad.stdout
    assert cli("verify").returncode == 2  # neither a call nor --all
