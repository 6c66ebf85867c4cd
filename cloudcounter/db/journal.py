"""The call journal in the database: call rows and their append-only timelines.

Writes are batched: the queue and the media layer append operations without awaiting, and
one owned task writes them in a single transaction every ``interval`` seconds. A failed
write is retried (the batch is kept), so a database hiccup loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db.models import CallEvent, CallSession
from cloudcounter.queue.model import Call

log = logging.getLogger(__name__)
CALLS = cast(Table, CallSession.__table__)
EVENTS = cast(Table, CallEvent.__table__)
TIME_FIELDS = {"queued_at", "offered_at", "answered_at", "ended_at"}


def to_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class DbJournal:
    def __init__(self, sm: async_sessionmaker, interval: float = 0.05,
                 max_pending: int = 200_000) -> None:
        self._sm = sm
        self._interval = interval
        self._max_pending = max_pending
        self._ops: list[tuple[str, Any]] = []
        self._seq: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._closing = False
        self.failures = 0

    # -- the CallJournal protocol (never blocks) --------------------------------------
    def call_created(self, call: Call, requested_at_wall: float) -> None:
        self._seq[call.call_id] = 0
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

    def forget(self, call_id: str) -> None:
        self._seq.pop(call_id, None)

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
            except Exception:
                self.failures += 1
                log.exception("journal write failed; retrying in %.1fs", backoff)
                if self._closing:
                    return
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def flush(self) -> None:
        async with self._flush_lock:
            ops, self._ops = self._ops, []
            if not ops:
                return
            try:
                await self._write(ops)
            except BaseException:
                self._ops = ops + self._ops  # keep them, in order
                raise

    async def _write(self, ops: list[tuple[str, Any]]) -> None:
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
                events.append(data)
        async with self._sm() as s, s.begin():
            unknown = {e["call_id"] for e in events} - set(self._seq)
            if unknown:
                rows = await s.execute(select(CallEvent.call_id, func.max(CallEvent.seq))
                                       .where(CallEvent.call_id.in_(unknown))
                                       .group_by(CallEvent.call_id))
                found = dict(rows.all())
                for cid in unknown:
                    self._seq[cid] = int(found.get(cid) or 0)
            for e in events:
                self._seq[e["call_id"]] += 1
                e["seq"] = self._seq[e["call_id"]]
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
        for call_id, fields in {**inserts, **updates}.items():
            if fields.get("state") == "ended":
                self._seq.pop(call_id, None)
