"""The call journal in the database: call rows and their append-only timelines.

Writes are batched: the queue and the media layer append operations without awaiting, and
one owned task writes them in a single transaction every ``interval`` seconds.

* The database unreachable or busy: the batch is kept and retried with a back-off, so a
  hiccup loses nothing.
* The database refusing a row for what it holds (a poisoned row: a NUL on PostgreSQL, a
  broken foreign key): the batch is split until the refused operations are alone; those
  are put aside in ``journal_dead_letters`` with the error (and ``on_dead_letter`` is
  called: an alert), every other operation is written. Later operations of a call whose
  row was put aside follow it there. ``cloudcounter journal replay`` writes them once the
  cause is fixed. No input can stop the journal.

Each event is hash-chained to the previous event of its call as it is written
(:mod:`cloudcounter.audit.chain`): the writer is the only place sequence numbers and
hashes are taken, in the transaction that writes them.

Several writers of one call (hub nodes, a CLI command beside the hub): a writer remembers
each call's last sequence number and hash, which another writer may have moved on. Two
guards keep the timeline whole:

* ``shared=True`` (several hub nodes): every batch reads its calls' heads from the database
  instead of remembering them, and on PostgreSQL first takes a transaction-scoped advisory
  lock per call (in a fixed order: no deadlock), so writers of one call take turns.
* Always: a batch refused because another writer took one of its sequence numbers first
  (the unique ``(call_id, seq)``) is not a poisoned row: the writer forgets those calls'
  heads, reads them again and retries (``seq_conflicts`` counts it). Nothing is put aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, cast

from sqlalchemy import Table, and_, bindparam, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.audit.chain import GENESIS, event_hash, normal_payload
from cloudcounter.db.errors import is_poison
from cloudcounter.db.models import CallEvent, CallSession
from cloudcounter.db.security_models import JournalDeadLetter
from cloudcounter.queue.model import Call

log = logging.getLogger(__name__)
CALLS = cast(Table, CallSession.__table__)
EVENTS = cast(Table, CallEvent.__table__)
DEAD = cast(Table, JournalDeadLetter.__table__)
TIME_FIELDS = {"queued_at", "offered_at", "answered_at", "ended_at"}
Op = tuple[str, Any]
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def to_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def op_call_id(op: Op) -> str:
    kind, data = op
    return str(data[0] if kind == "update" else (data["id"] if kind == "insert"
                                                 else data["call_id"]))


def encode_op(op: Op) -> str:
    """An operation as ASCII JSON (NULs and surrogates escaped: any database stores it)."""
    def default(v: Any) -> Any:
        if isinstance(v, datetime):
            return {"__dt__": v.isoformat()}
        return repr(v)
    return json.dumps({"kind": op[0], "data": op[1]}, ensure_ascii=True, default=default)


def decode_op(text: str) -> Op:
    def hook(d: dict[str, Any]) -> Any:
        return datetime.fromisoformat(d["__dt__"]) if set(d) == {"__dt__"} else d
    raw = json.loads(text, object_hook=hook)
    data = raw["data"]
    return raw["kind"], (tuple(data) if raw["kind"] == "update" else data)


def brief_error(exc: BaseException, limit: int = 500) -> str:
    """The error without the statement's parameters (they hold the refused input)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).split("\n")[0]
    return _UNPRINTABLE.sub("?", f"{type(exc).__name__}: {text}")[:limit]


class _Unwritten(Exception):
    """A transient failure part-way: these operations are still to be written."""

    def __init__(self, ops: list[Op], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.ops = ops
        self.cause = cause


SEQ_RETRIES = 4


def seq_conflict(exc: IntegrityError) -> bool:
    """Whether the database refused an event because its ``(call_id, seq)`` is taken."""
    text_ = str(exc.orig).lower()
    return "uq_call_events_call_id" in text_ or "call_events.seq" in text_  # PostgreSQL, SQLite


class DbJournal:
    def __init__(self, sm: async_sessionmaker, interval: float = 0.05,
                 max_pending: int = 200_000, shared: bool = False) -> None:
        self._sm = sm
        self.shared = shared  # other writers append to the same calls (several hub nodes)
        self.seq_conflicts = 0  # batches written again after another writer went first
        self._interval = interval
        self._max_pending = max_pending
        self._ops: list[tuple[str, Any]] = []
        self._seq: dict[str, int] = {}
        self._head: dict[str, str] = {}  # the hash of each known call's last event
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._closing = False
        self._dead_calls: set[str] = set()
        self.failures = 0
        self.dead_letters = 0
        # called with (call_id, operation kind, error) for each operation put aside
        self.on_dead_letter: Callable[[str, str, str], None] | None = None
        # observers of every timeline event as it is appended (metrics): (call_id, actor,
        # kind, payload, epoch seconds); they must not raise or block
        self.listeners: list[Callable[[str, str, str, dict[str, Any], float], None]] = []
        # run inside the transaction that writes a batch of events, after them (the
        # webhook outbox: an event is on the timeline if and only if it is published)
        self.in_transaction: Callable[[AsyncSession, list[dict[str, Any]]],
                                      Awaitable[None]] | None = None

    @property
    def pending(self) -> int:
        """Operations waiting to be written (the backlog)."""
        return len(self._ops)

    # -- the CallJournal protocol (never blocks) --------------------------------------
    def call_created(self, call: Call, requested_at_wall: float) -> None:
        self._seq[call.call_id] = 0
        self._head[call.call_id] = GENESIS
        self._append(("insert", {
            "id": call.call_id, "customer_id": call.customer_id, "service_code": call.service,
            "priority": call.priority, "state": call.state.value,
            "requested_at": to_dt(requested_at_wall)}))

    def call_updated(self, call_id: str, **fields: Any) -> None:
        self._append(("update", (call_id, {k: to_dt(v) if k in TIME_FIELDS else v
                                           for k, v in fields.items()})))

    def event(self, call_id: str, actor: str, kind: str, payload: dict[str, Any] | None = None,
              at: float | None = None) -> None:
        ts = to_dt(at) if at is not None else datetime.now(timezone.utc)
        self._append(("event", {"call_id": call_id, "actor": actor, "kind": kind,
                                "payload": payload or {}, "at": ts}))
        for listener in self.listeners:
            try:
                listener(call_id, actor, kind, payload or {}, ts.timestamp())
            except Exception:  # noqa: BLE001 - an observer must not stop the journal
                log.exception("journal listener failed")

    def forget(self, call_id: str) -> None:
        self._seq.pop(call_id, None)
        self._head.pop(call_id, None)

    def _append(self, op: tuple[str, Any]) -> None:
        if len(self._ops) == self._max_pending:  # said once per crossing, not per operation
            log.error("journal backlog at %d operations: is the database reachable?",
                      len(self._ops))
        self._ops.append(op)
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="journal-writer")

    async def stop(self, timeout: float = 10.0) -> None:
        """Write what is pending and stop. The writer is never cancelled in the middle of a
        transaction (that could leave a SQLite write lock behind); it drains and exits."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(self._interval)  # gather a batch
            self._wake.clear()
            try:
                await self.flush()
                backoff = self._interval
            except Exception as exc:
                self.failures += 1
                log.error("journal write failed (%s); retrying in %.1fs",
                          brief_error(exc, 200), backoff)
                if self._closing:
                    return
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def flush(self) -> None:
        """Write what is pending. Raises only when the database is unreachable or busy
        (the operations are kept, in order, for the next try)."""
        async with self._flush_lock:
            ops, self._ops = self._ops, []
            if not ops:
                return
            try:
                await self._write_all(ops)
            except _Unwritten as exc:
                self._ops = exc.ops + self._ops  # keep them, in order
                raise exc.cause from None
            except BaseException:
                self._ops = ops + self._ops
                raise

    async def _write_all(self, ops: list[Op]) -> None:
        """Write in order, isolating refused operations; raise :class:`_Unwritten` with
        what is left when the database fails for another reason."""
        segments = [ops]
        while segments:
            segment = segments.pop(0)
            live: list[Op] = []
            for i, op in enumerate(segment):
                if op_call_id(op) in self._dead_calls and op[0] != "insert":
                    try:
                        await self._dead_letter(op, "the call's row was put aside")
                    except BaseException as exc:
                        rest = live + segment[i:]
                        raise _Unwritten(rest + [o for s in segments for o in s], exc) \
                            from None
                else:
                    live.append(op)
            if not live:
                continue
            try:
                await self._write_fresh(live)
            except BaseException as exc:
                rest = live + [o for s in segments for o in s]
                if not is_poison(exc):
                    raise _Unwritten(rest, exc) from None
                if len(live) > 1:
                    mid = len(live) // 2
                    segments[0:0] = [live[:mid], live[mid:]]
                    continue
                try:  # the database refused this one operation: put it aside
                    await self._dead_letter(live[0], brief_error(exc))
                except BaseException as exc2:  # not even that: the database is the problem
                    raise _Unwritten(rest, exc2) from None

    async def _dead_letter(self, op: Op, error: str) -> None:
        call_id = op_call_id(op)
        async with self._sm() as s, s.begin():
            await s.execute(insert(DEAD), [{"at": datetime.now(timezone.utc), "op": op[0],
                                            "call_id": call_id[:64], "data": encode_op(op),
                                            "error": error}])
        if op[0] == "insert":
            self._dead_calls.add(call_id)
        self.dead_letters += 1
        if self.dead_letters <= 100 or self.dead_letters % 1000 == 0:
            log.error("journal: a %s of call %s was refused by the database and put aside "
                      "(journal_dead_letters, %d so far): %s", op[0], call_id[:64],
                      self.dead_letters, error)
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(call_id, op[0], error)
            except Exception:  # noqa: BLE001 - an alert must not stop the journal
                log.exception("journal dead-letter alert failed")

    async def _write_fresh(self, ops: list[Op]) -> None:
        """:meth:`_write`; again with heads read from the database when another writer
        took one of the batch's sequence numbers first."""
        for attempt in range(SEQ_RETRIES):
            try:
                await self._write(ops)
                return
            except IntegrityError as exc:
                if attempt == SEQ_RETRIES - 1 or not seq_conflict(exc):
                    raise
                self.seq_conflicts += 1
                for op in ops:
                    self._seq.pop(op_call_id(op), None)
                    self._head.pop(op_call_id(op), None)
                log.info("journal: another writer appended to these calls first; "
                         "reading their heads again")

    async def _write(self, ops: list[Op]) -> None:
        inserts: dict[str, dict[str, Any]] = {}
        updates: dict[str, dict[str, Any]] = {}
        events: list[dict[str, Any]] = []
        for kind, data in ops:
            if kind == "insert":
                inserts[data["id"]] = dict(data)
            elif kind == "update":
                call_id, fields = data
                (inserts[call_id] if call_id in inserts else updates.setdefault(call_id, {})
                 ).update(fields)
            else:
                events.append(dict(data))
        # sequence numbers and hashes are taken only when the transaction commits
        seqs = {} if self.shared else {
            e["call_id"]: self._seq[e["call_id"]] for e in events
            if e["call_id"] in self._seq and e["call_id"] in self._head}
        heads = {cid: self._head[cid] for cid in seqs}
        async with self._sm() as s, s.begin():
            unknown = {e["call_id"] for e in events} - set(seqs)
            if self.shared and unknown and s.get_bind().dialect.name == "postgresql":
                # writers of one call take turns until they commit (sorted: no deadlock)
                await s.execute(text(
                    "SELECT pg_advisory_xact_lock(hashtextextended(k, 7245)) "
                    "FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"),
                    {"keys": sorted(unknown)})
            if unknown:
                last = (select(CallEvent.call_id, func.max(CallEvent.seq).label("m"))
                        .where(CallEvent.call_id.in_(unknown))
                        .group_by(CallEvent.call_id).subquery())
                rows = await s.execute(
                    select(CallEvent.call_id, CallEvent.seq, CallEvent.hash)
                    .join(last, and_(CallEvent.call_id == last.c.call_id,
                                     CallEvent.seq == last.c.m)))
                found = {cid: (seq, h) for cid, seq, h in rows.all()}
                for cid in unknown:
                    seq, h = found.get(cid, (0, GENESIS))
                    seqs[cid], heads[cid] = int(seq or 0), h or GENESIS
            for e in events:
                cid = e["call_id"]
                seqs[cid] += 1
                e["seq"] = seqs[cid]
                e["payload"] = normal_payload(e["payload"])
                e["prev_hash"] = heads[cid]
                e["hash"] = heads[cid] = event_hash(cid, e["seq"], e["at"], e["actor"],
                                                    e["kind"], e["payload"], e["prev_hash"])
            if inserts:  # Core statements: the ORM's bulk path costs the event loop more
                keys = sorted({k for row in inserts.values() for k in row})
                await s.execute(insert(CALLS),
                                [{k: row.get(k) for k in keys} for row in inserts.values()])
            # one executemany per set of updated columns
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for call_id, fields in updates.items():
                groups.setdefault(tuple(sorted(fields)), []).append({"_id": call_id, **fields})
            for cols, rows in groups.items():
                stmt = (update(CALLS).where(CALLS.c.id == bindparam("_id"))
                        .values({c: bindparam(c) for c in cols}))
                await s.execute(stmt, rows)
            if events:
                await s.execute(insert(EVENTS), events)
                if self.in_transaction is not None:
                    await self.in_transaction(s, events)
        self._seq.update(seqs)
        self._head.update(heads)
        for call_id, fields in {**inserts, **updates}.items():
            if fields.get("state") == "ended":
                self._seq.pop(call_id, None)
                self._head.pop(call_id, None)


async def dead_letters(sm: async_sessionmaker, include_replayed: bool = False,
                       limit: int = 100) -> list[dict[str, Any]]:
    stmt = select(JournalDeadLetter)
    if not include_replayed:
        stmt = stmt.where(JournalDeadLetter.replayed_at.is_(None))
    async with sm() as s:
        rows = (await s.scalars(stmt.order_by(JournalDeadLetter.id).limit(limit))).all()
    return [{"id": r.id, "at": r.at.isoformat(), "op": r.op, "call_id": r.call_id,
             "error": r.error, "replayed_at": r.replayed_at.isoformat() if r.replayed_at
             else None} for r in rows]


async def replay_dead_letters(sm: async_sessionmaker) -> tuple[int, int]:
    """Write the operations put aside, in order, now that their cause is fixed; those the
    database still refuses stay (as new dead letters; the old ones are marked replayed).
    Returns (written, refused again). Replayed events go at the end of their call's
    timeline (new sequence numbers) with their original time."""
    async with sm() as s:
        rows = (await s.scalars(select(JournalDeadLetter)
                                .where(JournalDeadLetter.replayed_at.is_(None))
                                .order_by(JournalDeadLetter.id))).all()
    if not rows:
        return 0, 0
    journal = DbJournal(sm)
    ops = [decode_op(r.data) for r in rows]
    await journal._write_all(ops)
    async with sm() as s, s.begin():
        await s.execute(update(JournalDeadLetter)
                        .where(JournalDeadLetter.id.in_([r.id for r in rows]))
                        .values(replayed_at=datetime.now(timezone.utc)))
    return len(ops) - journal.dead_letters, journal.dead_letters
