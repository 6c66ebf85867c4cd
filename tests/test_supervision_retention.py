"""Retention (docs/supervision.md): per-service periods, legal holds, a purge with a dry
run that keeps the timeline and the hashes; never what is under review or on hold."""

# ruff: noqa: F811 - the tests take test_db's fixtures (sm, on both backends) by name
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from cloudcounter.audit import retention
from cloudcounter.audit.verify import verify_call
from cloudcounter.db.audit_models import ReviewTask
from cloudcounter.db.journal import DbJournal
from cloudcounter.db.models import CallEvent, Customer, Recording
from cloudcounter.errors import CloudCounterError
from cloudcounter.queue.model import Call
from tests.test_db import db_url, pg_url, sm  # noqa: F401

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


async def recorded(sm: Any, journal: DbJournal, tmp: Path, cid: str, service: str,
                   ended_days_ago: int) -> Path:
    ended = (NOW - timedelta(days=ended_days_ago)).timestamp()
    journal.call_created(Call(cid, "cus_k", service, "cards", 0, 0.0, 1), ended - 100)
    journal.call_updated(cid, state="ended", ended_at=ended)
    path = tmp / f"{cid}-customer.webm"
    path.write_bytes(cid.encode() * 50)
    (tmp / f"{cid}-chk_0123456789ab.jpg").write_bytes(b"\xff\xd8jpeg")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    await journal.flush()
    async with sm() as s, s.begin():
        s.add(Recording(call_id=cid, participant="customer", path=str(path), sha256=sha,
                        segment=1))
    journal.event(cid, "system", "recording.stopped",
                  {"segment": 1, "files": {"customer": {"sha256": sha}}}, at=ended - 1)
    await journal.flush()
    return path


async def test_purge_keeps_the_record_and_spares_holds_and_reviews(sm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_k", name="K"))
    journal = DbJournal(sm)
    old = await recorded(sm, journal, tmp_path, "call_00000000000000c1", "card_loss", 40)
    held = await recorded(sm, journal, tmp_path, "call_00000000000000c2", "card_loss", 40)
    reviewed = await recorded(sm, journal, tmp_path, "call_00000000000000c3", "card_loss", 40)
    recent = await recorded(sm, journal, tmp_path, "call_00000000000000c4", "card_loss", 10)
    other = await recorded(sm, journal, tmp_path, "call_00000000000000c5", "car_loan", 40)
    with pytest.raises(CloudCounterError) as e:
        await retention.set_rule(sm, "card_loss", 0, "t")
    assert e.value.code == "invalid_days"
    with pytest.raises(CloudCounterError) as e:
        await retention.set_rule(sm, "no_such", 30, "t")
    assert e.value.code == "unknown_service"
    await retention.set_rule(sm, "card_loss", 30, "cli:ops")
    rules = {r["service"]: r for r in await retention.rules(sm, 0)}
    assert rules["card_loss"]["days"] == 30 and rules["car_loan"]["source"] == "keep"
    with pytest.raises(CloudCounterError) as e:
        await retention.add_hold(sm, "call_00000000000000c2", "bad\x00", "t")
    assert e.value.code == "invalid_reason"
    hold = await retention.add_hold(sm, "call_00000000000000c2", "court order 17", "cli:legal")
    async with sm() as s, s.begin():
        s.add(ReviewTask(call_id="call_00000000000000c3", rule_id="manual", rule_version=1,
                         reason="r", draw=0.5, selected_at=NOW, selected_by="t",
                         state="in_review", due_at=NOW))

    dry = await retention.purge(sm, journal, 0, "cli:ops", dry_run=True, now=NOW)
    assert [p["call_id"] for p in dry.purged] == ["call_00000000000000c1"]
    assert dry.purged[0]["rule"] == "card_loss:30d" and len(dry.purged[0]["evidence"]) == 1
    assert sorted((k["call_id"], k["why"]) for k in dry.kept) == [
        ("call_00000000000000c2", "legal hold"), ("call_00000000000000c3", "under review")]
    assert all(p.exists() for p in (old, held, reviewed, recent, other))  # nothing deleted

    done = await retention.purge(sm, journal, 0, "cli:ops", dry_run=False, now=NOW)
    assert done.to_dict()["purged"] == dry.to_dict()["purged"]
    assert not old.exists() and not (tmp_path / "call_00000000000000c1-chk_0123456789ab.jpg"
                                     ).exists()
    assert all(p.exists() for p in (held, reviewed, recent, other))
    async with sm() as s:
        rec = (await s.scalars(select(Recording).where(
            Recording.call_id == "call_00000000000000c1"))).one()
        last = (await s.scalars(select(CallEvent).where(
            CallEvent.call_id == "call_00000000000000c1").order_by(CallEvent.seq.desc()))
                ).first()
    assert rec.purged_at is not None and rec.purge_rule == "card_loss:30d" and rec.sha256
    assert last is not None and last.kind == "retention.purged"
    assert last.payload["on"] == "2026-11-29" and last.payload["rule"] == "card_loss:30d"
    assert await verify_call(sm, "call_00000000000000c1") == []  # the chain still verifies
    again = await retention.purge(sm, journal, 0, "cli:ops", dry_run=False, now=NOW)
    assert again.purged == []  # nothing twice

    # released: the next purge takes it; a default period covers services without a rule
    await retention.release_hold(sm, hold["id"], "cli:legal")
    with pytest.raises(CloudCounterError) as e:
        await retention.release_hold(sm, hold["id"], "cli:legal")
    assert e.value.code == "unknown_hold"
    later = await retention.purge(sm, journal, 35, "cli:ops", dry_run=False, now=NOW)
    assert sorted(p["call_id"] for p in later.purged) == ["call_00000000000000c2",
                                                          "call_00000000000000c5"]
    assert [k["call_id"] for k in later.kept] == ["call_00000000000000c3"]

    # someone deleting a file and marking it purged by hand is caught
    async with sm() as s, s.begin():
        await s.execute(text("UPDATE recordings SET purged_at = :t WHERE call_id = :c"),
                        {"t": NOW, "c": "call_00000000000000c4"})
    recent.unlink()
    kinds = {b.kind for b in await verify_call(sm, "call_00000000000000c4")}
    assert kinds == {"recording_purged_unrecorded"}
