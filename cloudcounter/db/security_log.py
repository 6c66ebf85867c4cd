"""The security event log: who did what, from where, allowed or not; durable, queryable.

Kinds (``docs/security.md`` lists them with their details): ``login.succeeded``,
``login.failed``, ``login.throttled``, ``session.refreshed``, ``session.revoked``,
``auth.refused`` (a role or ownership check said no), ``token.refused`` (a bad, expired,
revoked or over-long token), ``calls.searched``, ``recording.accessed``,
``evidence.accessed``, ``export``, ``admin.*`` (an administrator's action),
``input.refused`` (sampled), ``journal.dead_letter``.

Recording never blocks: :meth:`SecurityLog.record` appends to a bounded buffer that one
owned task writes in batches (like the call journal). Every string is cleaned of control
characters and cut to its column before it is buffered, so no event can poison a batch;
if the database still refuses one, the batch is written row by row and the bad row is
logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.db.errors import is_poison
from cloudcounter.db.security_models import SecurityEvent

log = logging.getLogger("cloudcounter.security")
EVENTS = cast(Table, SecurityEvent.__table__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean(value: Any, limit: int) -> str:
    text = _CONTROL.sub("?", str(value if value is not None else ""))
    return text[:limit]


def clean_details(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return clean(value, 500)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if depth > 4:
        return clean(value, 100)
    if isinstance(value, dict):
        return {clean(k, 64): clean_details(v, depth + 1) for k, v in list(value.items())[:40]}
    if isinstance(value, (list, tuple, set)):
        return [clean_details(v, depth + 1) for v in list(value)[:100]]
    return clean(value, 200)


@dataclass(frozen=True)
class Event:
    kind: str
    outcome: str  # ok | refused | failed
    actor: str  # agent:alice, customer:cus_1, anonymous, cli
    source: str = ""  # client address
    target: str = ""  # what was acted on
    user_id: int | None = None
    details: dict[str, Any] | None = None

    def row(self, at: datetime) -> dict[str, Any]:
        return {"at": at, "kind": clean(self.kind, 48), "outcome": clean(self.outcome, 16),
                "actor": clean(self.actor, 80), "user_id": self.user_id,
                "source": clean(self.source, 64), "target": clean(self.target, 160),
                "details": clean_details(self.details or {})}


class SecurityLog:
    def __init__(self, sm: async_sessionmaker, interval: float = 0.2,
                 max_pending: int = 100_000) -> None:
        self._sm = sm
        self._interval = interval
        self._max_pending = max_pending
        self._rows: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False
        self.dropped = 0
        self.counts: dict[str, int] = {}

    @property
    def pending(self) -> int:
        """Events waiting to be written (the backlog)."""
        return len(self._rows)

    def record(self, kind: str, outcome: str, actor: str, *, source: str = "",
               target: str = "", user_id: int | None = None,
               details: dict[str, Any] | None = None) -> None:
        """Buffer one event (never blocks, never raises on odd input)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self._rows) >= self._max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("security log backlog full: %d events dropped", self.dropped)
            return
        event = Event(kind, outcome, actor, source, target, user_id, details)
        self._rows.append(event.row(datetime.now(timezone.utc)))
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="security-log-writer")

    async def stop(self, timeout: float = 10.0) -> None:
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
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(self._interval)
            self._wake.clear()
            try:
                await self.flush()
                backoff = self._interval
            except Exception as exc:  # the database is unreachable: keep the rows, retry
                log.warning("security log write failed (%s); retrying in %.1fs",
                            type(exc).__name__, backoff)
                if self._closing:
                    return
                self._wake.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def flush(self) -> None:
        async with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return
            try:
                async with self._sm() as s, s.begin():
                    await s.execute(insert(EVENTS), rows)
            except BaseException as exc:
                if not is_poison(exc):
                    self._rows = rows + self._rows
                    raise
                await self._one_by_one(rows)

    async def _one_by_one(self, rows: list[dict[str, Any]]) -> None:
        for i, row in enumerate(rows):
            try:
                async with self._sm() as s, s.begin():
                    await s.execute(insert(EVENTS), [row])
            except BaseException as exc:
                if not is_poison(exc):
                    self._rows = rows[i:] + self._rows
                    raise
                log.error("security event %s refused by the database (%s): dropped",
                          row.get("kind"), type(exc).__name__)


async def record_now(sm: async_sessionmaker, event: Event) -> None:
    """Write one event at once (the CLI, which has no writer task)."""
    async with sm() as s, s.begin():
        await record_in(s, event)


async def record_in(s: AsyncSession, event: Event) -> None:
    """Write one event in the caller's transaction: an administrator's change and its
    ``admin.*`` event commit together, or neither does."""
    await s.execute(insert(EVENTS), [event.row(datetime.now(timezone.utc))])


async def query(sm: async_sessionmaker, *, kind: str | None = None, actor: str | None = None,
                outcome: str | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int = 100,
                before_id: int | None = None) -> list[dict[str, Any]]:
    """Events, newest first (``kind`` may end in ``*``: ``admin.*``)."""
    stmt = select(SecurityEvent)
    if kind:
        stmt = stmt.where(SecurityEvent.kind.like(kind[:-1] + "%") if kind.endswith("*")
                          else SecurityEvent.kind == kind)
    if actor:
        stmt = stmt.where(SecurityEvent.actor == actor)
    if outcome:
        stmt = stmt.where(SecurityEvent.outcome == outcome)
    if since is not None:
        stmt = stmt.where(SecurityEvent.at >= since)
    if until is not None:
        stmt = stmt.where(SecurityEvent.at < until)
    if before_id is not None:
        stmt = stmt.where(SecurityEvent.id < before_id)
    async with sm() as s:
        rows = (await s.scalars(stmt.order_by(SecurityEvent.id.desc()).limit(limit))).all()
    return [{"id": r.id, "at": _iso(r.at), "kind": r.kind, "outcome": r.outcome,
             "actor": r.actor, "user_id": r.user_id, "source": r.source, "target": r.target,
             "details": r.details} for r in rows]


def _iso(v: datetime) -> str:
    return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat()
