"""Several writers of one call's timeline (issue 11: hub nodes, or a CLI command beside the
hub): sequence numbers stay 1..n with no gap or double, the hash chain verifies, nothing is
put aside as a dead letter; on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from cloudcounter.audit.chain import verify_events
from cloudcounter.db.journal import DbJournal
from cloudcounter.db.models import CallEvent, Customer
from cloudcounter.queue.model import Call
from tests.test_db import db_url, pg_url, sm  # noqa: F401 - fixtures

CALL = Call("call_00000000000000cc", "cus_w", "card_loss", "cards", 0, 0.0, 1)


async def new_call(sm: Any) -> None:  # noqa: F811
    async with sm() as s, s.begin():
        s.add(Customer(id="cus_w", name="W"))
    first = DbJournal(sm)
    first.call_created(CALL, 1_700_000_000.0)
    first.event(CALL.call_id, "system", "call.requested")
    await first.flush()


async def timeline(sm: Any) -> list[Any]:  # noqa: F811
    async with sm() as s:
        return list((await s.scalars(select(CallEvent).where(
            CallEvent.call_id == CALL.call_id).order_by(CallEvent.seq))).all())


async def test_a_writer_whose_head_moved_on_reads_it_again(sm: Any) -> None:  # noqa: F811
    """A remembers seq 2 as the head; B appends seq 3; A's next event would take 3: the
    database refuses it, A reads the head again and writes it as 4."""
    await new_call(sm)
    a, b = DbJournal(sm), DbJournal(sm)
    a.event(CALL.call_id, "agent:ana", "agent.note", {"text": "a1"})
    await a.flush()
    b.event(CALL.call_id, "auditor:audrey", "audit.viewed")
    await b.flush()
    a.event(CALL.call_id, "agent:ana", "agent.note", {"text": "a2"})
    await a.flush()
    events = await timeline(sm)
    assert [(e.seq, e.kind) for e in events] == [
        (1, "call.requested"), (2, "agent.note"), (3, "audit.viewed"), (4, "agent.note")]
    assert verify_events(CALL.call_id, events) == []
    assert a.seq_conflicts == 1 and a.dead_letters == 0 and b.dead_letters == 0


async def test_shared_writers_take_turns(sm: Any) -> None:  # noqa: F811
    """Two nodes' journals (``shared``) append to one call at once, in many batches."""
    await new_call(sm)
    nodes = [DbJournal(sm, interval=0.005, shared=True) for _ in range(2)]
    for j in nodes:
        await j.start()

    async def write(j: DbJournal, name: str) -> None:
        for i in range(60):
            j.event(CALL.call_id, f"agent:{name}", "agent.note", {"text": f"{name}{i}"})
            if i % 7 == 0:
                await asyncio.sleep(0.003)
    await asyncio.gather(write(nodes[0], "ana"), write(nodes[1], "bo"))
    for j in nodes:
        await j.stop()
    events = await timeline(sm)
    assert [e.seq for e in events] == list(range(1, 122))
    texts = sorted(e.payload["text"] for e in events if e.kind == "agent.note")
    assert texts == sorted([f"ana{i}" for i in range(60)] + [f"bo{i}" for i in range(60)])
    assert verify_events(CALL.call_id, events) == []
    assert all(j.dead_letters == 0 for j in nodes)
