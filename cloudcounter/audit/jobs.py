"""The hub's supervision job (docs/supervision.md): every
``CLOUDCOUNTER_SUPERVISION_INTERVAL_S`` (first run one interval after start; 0: off, run
the CLI from cron instead) it selects yesterday's calls for review, appends yesterday's
digest when it is missing, and escalates overdue findings. Each step is idempotent, so
several hub nodes may run it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

from aiohttp import web

from cloudcounter.audit.review import System, escalate_overdue, run_sampling
from cloudcounter.audit.verify import write_digest
from cloudcounter.errors import CloudCounterError
from cloudcounter.hub.context import CTX

log = logging.getLogger(__name__)
ACTOR = "system:supervision"


async def run_once(ctx: Any, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    day = now.date() - timedelta(days=1)
    who = System(ACTOR)
    out: dict[str, Any] = {"day": day.isoformat()}
    await ctx.journal.flush()
    out["selected"] = len(await run_sampling(ctx.sm, ctx.journal, day,
                                             day + timedelta(days=1), who, now=now))
    try:
        d = await write_digest(ctx.sm, day, ACTOR, ctx.settings.audit_key_bytes, now=now)
        out["digest"] = d.root
    except CloudCounterError as exc:  # digest_exists: another node or the CLI wrote it
        out["digest"] = exc.code
    out["escalated"] = len(await escalate_overdue(ctx.sm, ctx.journal, who, now=now))
    await ctx.journal.flush()
    return out


async def _loop(ctx: Any, interval: float, stop: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return  # stopping: between runs, never in the middle of a transaction
        except asyncio.TimeoutError:
            pass
        try:
            log.info("supervision job: %s", await run_once(ctx))
        except Exception:  # noqa: BLE001 - the next run tries again
            log.exception("supervision job failed")


async def supervision_ctx(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    interval = ctx.settings.supervision_interval_s
    stop = asyncio.Event()
    task = asyncio.create_task(_loop(ctx, interval, stop), name="supervision-job") \
        if interval > 0 else None
    yield
    if task is not None:
        stop.set()  # a run in progress finishes (its steps are short transactions)
        try:
            await asyncio.wait_for(asyncio.shield(task), 30.0)
        except asyncio.TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
