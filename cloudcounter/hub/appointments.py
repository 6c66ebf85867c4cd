"""The hub side of interview appointments: the customer's events, the preference for
booked customers at routing, and the no-show sweep (one owned task).

:class:`HubAppointments` is ``ctx.appointments``; :func:`appointments_ctx` runs the sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from aiohttp import web

from cloudcounter.business.appointments import (
    AppointmentBook, AppointmentConfig, parse_day, parse_when,
)
from cloudcounter.business.loan import LOAN_SERVICE

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

log = logging.getLogger(__name__)
SWEEP_S = 30.0


class HubAppointments:
    def __init__(self, ctx: "HubContext", clock: Callable[[], float] = time.time) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.clock = clock
        self.book = AppointmentBook(ctx.sm, AppointmentConfig(
            slot_minutes=s.appointment_slot_minutes, days_ahead=s.appointment_days_ahead,
            window_s=s.appointment_window_s, no_show_after_s=s.appointment_no_show_after_s))
        self.boost = s.appointment_priority_boost
        self.no_shows = 0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    # -- the customer's events ---------------------------------------------------------
    async def slots(self, from_day: str | None, days: int) -> dict[str, Any]:
        first = parse_day(from_day) if from_day else None
        return {"slot_minutes": self.book.config.slot_minutes, "service": LOAN_SERVICE,
                "slots": await self.book.slots(self.now(), first, days)}

    async def mine(self, customer_id: str) -> dict[str, Any]:
        return {"appointments": await self.book.of_customer(customer_id)}

    async def book_slot(self, customer_id: str, starts_at: str) -> dict[str, Any]:
        return {"appointment": await self.book.book(customer_id, parse_when(starts_at),
                                                    self.now())}

    async def move(self, customer_id: str, appointment_id: str, starts_at: str
                   ) -> dict[str, Any]:
        return {"appointment": await self.book.move(customer_id, appointment_id,
                                                    parse_when(starts_at), self.now())}

    async def cancel(self, customer_id: str, appointment_id: str) -> dict[str, Any]:
        return {"appointment": await self.book.cancel(customer_id, appointment_id, self.now())}

    # -- routing -----------------------------------------------------------------------
    async def priority_boost(self, customer_id: str, service: str) -> int:
        """How much a call request is preferred: ``appointment_priority_boost`` for a
        customer with an appointment for it whose window is open, else 0."""
        if service != LOAN_SERVICE or not self.boost:
            return 0
        return self.boost if await self.book.due(customer_id, service, self.now()) else 0

    async def call_requested(self, customer_id: str, service: str, call_id: str,
                             boost: int) -> None:
        if not boost:
            return
        a = await self.book.arrived(customer_id, service, call_id, self.now())
        if a is not None:
            self.ctx.journal.event(call_id, f"customer:{customer_id}", "appointment.attended",
                                   {"appointment_id": a["appointment_id"],
                                    "starts_at": a["starts_at"], "priority_boost": boost})

    # -- no-shows ----------------------------------------------------------------------
    async def sweep(self) -> int:
        shows = await self.book.record_no_shows(self.now())
        for a in shows:
            log.info("appointment %s of %s at %s: no-show", a["appointment_id"],
                     a["customer_id"], a["starts_at"])
        self.no_shows += len(shows)
        return len(shows)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is unreachable: next time
                log.exception("the no-show sweep failed")
            await asyncio.sleep(SWEEP_S)


async def appointments_ctx(app: web.Application) -> AsyncIterator[None]:
    from cloudcounter.hub.api import CTX

    ctx = app[CTX]
    task = asyncio.create_task(ctx.appointments._sweep_loop(), name="appointments-no-shows")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
