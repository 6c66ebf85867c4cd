"""Interview appointments: the roster of loan agents, free slots, booking, moving and
cancelling, attendance and no-shows (docs/protocol.md, "Appointments").

Slots are ``slot_minutes`` long, on a grid from midnight UTC. A slot's capacity is the
number of agents rostered with the ``loans`` skill over the whole slot. Booking the last
place is one conditional update (``booked = booked + 1 WHERE booked < capacity``) in the
transaction that inserts the appointment: two customers racing for the last place cannot
both get it, on SQLite (one writer at a time) or PostgreSQL (the row lock, the condition
evaluated again on the new row version); the check constraint ``booked <= capacity`` is
the backstop, and one booked appointment per customer is a partial unique index. Every
transaction starts with its write (no read first), so SQLite never has to upgrade a read
lock.

The pure parts (:func:`slot_grid`, :func:`capacity`) take the time as an argument.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.db.loan_models import Appointment, AppointmentSlot, LoanRoster
from cloudcounter.db.models import User
from cloudcounter.db.outbox import aware
from cloudcounter.errors import Conflict, InvalidMessage, InvalidState, NotFound

LOANS_SKILL = "loans"
BOOKED, CANCELLED, ATTENDED, NO_SHOW = "booked", "cancelled", "attended", "no_show"


@dataclass(frozen=True)
class AppointmentConfig:
    slot_minutes: int = 30
    days_ahead: int = 14
    window_s: float = 900.0  # a booked customer is preferred from this long before the slot
    no_show_after_s: float = 900.0  # ...until this long after its start; then a no-show


@dataclass(frozen=True)
class Shift:
    agent_id: int
    day: date
    start_minute: int
    end_minute: int


def parse_when(text: str) -> datetime:
    """An ISO 8601 date-time with a time zone, as UTC; InvalidMessage otherwise."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidMessage("not a date-time (ISO 8601 with a time zone)",
                             code="invalid_time") from None
    if value.tzinfo is None:
        raise InvalidMessage("the time needs a time zone (e.g. Z)", code="invalid_time")
    return value.astimezone(timezone.utc)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidMessage("not a date (YYYY-MM-DD)", code="invalid_date") from None


def parse_hhmm(text: str) -> int:
    """"09:30" as minutes after midnight ("24:00" is the end of the day)."""
    try:
        h, m = text.split(":")
        minutes = int(h) * 60 + int(m)
    except ValueError:
        raise InvalidMessage(f"not a time of day (HH:MM): {text!r}", code="invalid_time") from None
    if not (0 <= int(m) < 60 and 0 <= minutes <= 1440):
        raise InvalidMessage(f"not a time of day (HH:MM): {text!r}", code="invalid_time")
    return minutes


def capacity(shifts: Iterable[Shift], starts_at: datetime, slot_minutes: int) -> int:
    """Agents rostered over the whole slot. Pure."""
    day = starts_at.date()
    minute = starts_at.hour * 60 + starts_at.minute
    return sum(1 for s in shifts if s.day == day and s.start_minute <= minute
               and minute + slot_minutes <= s.end_minute)


def on_grid(starts_at: datetime, slot_minutes: int) -> bool:
    minute = starts_at.hour * 60 + starts_at.minute
    return starts_at.second == 0 and starts_at.microsecond == 0 and minute % slot_minutes == 0


def slot_grid(shifts: Sequence[Shift], first: date, days: int, slot_minutes: int,
              now: datetime) -> list[tuple[datetime, int]]:
    """(start, capacity) of every future slot with a rostered agent. Pure."""
    out = []
    for d in range(days):
        day = first + timedelta(days=d)
        todays = [s for s in shifts if s.day == day]
        if not todays:
            continue
        for minute in range(0, 1440, slot_minutes):
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + \
                timedelta(minutes=minute)
            if start <= now:
                continue
            cap = capacity(todays, start, slot_minutes)
            if cap:
                out.append((start, cap))
    return out


def new_appointment_id() -> str:
    return "apt_" + secrets.token_hex(8)


def view(a: Appointment, slot_minutes: int) -> dict[str, Any]:
    start = aware(a.starts_at)
    return {"appointment_id": a.id, "service": a.service, "state": a.state,
            "starts_at": start.isoformat().replace("+00:00", "Z"),
            "ends_at": (start + timedelta(minutes=slot_minutes)).isoformat()
            .replace("+00:00", "Z"), "call_id": a.call_id}


class AppointmentBook:
    def __init__(self, sm: async_sessionmaker, config: AppointmentConfig = AppointmentConfig()
                 ) -> None:
        self.sm = sm
        self.config = config

    # -- the roster --------------------------------------------------------------------
    async def set_shift(self, username: str, day: date, start_minute: int, end_minute: int,
                        s: AsyncSession | None = None) -> dict[str, Any]:
        """Roster an agent with the loans skill on a day (replacing their shift that day);
        in ``s``'s transaction when given (the admin API's audited change)."""
        if not 0 <= start_minute < end_minute <= 1440:
            raise InvalidMessage("a shift ends after it starts, within the day",
                                 code="invalid_shift")
        if s is None:
            async with self.sm() as s2, s2.begin():
                return await self.set_shift(username, day, start_minute, end_minute, s2)
        user = await s.scalar(select(User).where(User.username == username))
        if user is None or user.disabled:
            raise NotFound(f"no active account {username!r}", code="unknown_user")
        if str(getattr(user.role, "value", user.role)) != "agent" \
                or LOANS_SKILL not in user.skill_codes:
            raise InvalidState(f"{username} is not an agent with the loans skill",
                               code="not_a_loans_agent")
        await s.execute(delete(LoanRoster).where(LoanRoster.agent_id == user.id,
                                                 LoanRoster.day == day))
        s.add(LoanRoster(agent_id=user.id, day=day, start_minute=start_minute,
                         end_minute=end_minute))
        return {"username": username, "day": day.isoformat(),
                "from": _hhmm(start_minute), "to": _hhmm(end_minute)}

    async def clear_shift(self, username: str, day: date, s: AsyncSession | None = None
                          ) -> int:
        if s is None:
            async with self.sm() as s2, s2.begin():
                return await self.clear_shift(username, day, s2)
        uid = await s.scalar(select(User.id).where(User.username == username))
        if uid is None:
            raise NotFound(f"no account {username!r}", code="unknown_user")
        n = (await s.execute(delete(LoanRoster).where(
            LoanRoster.agent_id == uid, LoanRoster.day == day))).rowcount  # type: ignore[attr-defined]
        return int(n or 0)

    async def roster(self, first: date, days: int = 1) -> list[dict[str, Any]]:
        async with self.sm() as s:
            rows = await s.execute(
                select(LoanRoster, User.username).join(User, User.id == LoanRoster.agent_id)
                .where(LoanRoster.day >= first, LoanRoster.day < first + timedelta(days=days))
                .order_by(LoanRoster.day, LoanRoster.start_minute, User.username))
            return [{"username": u, "day": r.day.isoformat(), "from": _hhmm(r.start_minute),
                     "to": _hhmm(r.end_minute)} for r, u in rows.all()]

    async def _shifts(self, first: date, days: int) -> list[Shift]:
        async with self.sm() as s:
            rows = (await s.scalars(select(LoanRoster).join(User, User.id == LoanRoster.agent_id)
                                    .where(LoanRoster.day >= first,
                                           LoanRoster.day < first + timedelta(days=days),
                                           User.disabled.is_(False)))).all()
        return [Shift(r.agent_id, r.day, r.start_minute, r.end_minute) for r in rows]

    # -- slots ---------------------------------------------------------------------------
    async def slots(self, now: datetime, first: date | None = None, days: int = 7
                    ) -> list[dict[str, Any]]:
        today = now.date()
        first = max(first or today, today)
        last = today + timedelta(days=self.config.days_ahead)
        days = max(0, min(days, (last - first).days + 1))
        grid = slot_grid(await self._shifts(first, days), first, days,
                         self.config.slot_minutes, now)
        if not grid:
            return []
        async with self.sm() as s:
            booked = dict((aware(k), v) for k, v in (await s.execute(
                select(AppointmentSlot.starts_at, AppointmentSlot.booked).where(
                    AppointmentSlot.starts_at.in_([g for g, _ in grid])))).all())
        step = timedelta(minutes=self.config.slot_minutes)
        return [{"starts_at": _z(start), "ends_at": _z(start + step), "capacity": cap,
                 "free": max(0, cap - booked.get(start, 0))} for start, cap in grid]

    async def _bookable(self, starts_at: datetime, now: datetime) -> int:
        """The slot's capacity, or an error: off the grid, in the past, too far ahead,
        nobody rostered."""
        if not on_grid(starts_at, self.config.slot_minutes):
            raise InvalidMessage(f"slots start every {self.config.slot_minutes} minutes from "
                                 "midnight UTC", code="invalid_slot")
        if starts_at <= now:
            raise InvalidState("that slot is in the past", code="slot_in_past")
        if starts_at.date() > now.date() + timedelta(days=self.config.days_ahead):
            raise InvalidState(f"slots can be booked up to {self.config.days_ahead} days ahead",
                               code="slot_too_far")
        cap = capacity(await self._shifts(starts_at.date(), 1), starts_at,
                       self.config.slot_minutes)
        if cap < 1:
            raise Conflict("no interviewer is rostered for that slot", code="slot_full")
        return cap

    async def _take_place(self, s: AsyncSession, starts_at: datetime, cap: int) -> None:
        """Take one place of the slot (the transaction's first write) or raise slot_full."""
        dialect = s.bind.dialect.name if s.bind is not None else "sqlite"
        ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
        await s.execute(ins(AppointmentSlot).values(starts_at=starts_at, capacity=cap, booked=0)
                        .on_conflict_do_nothing(index_elements=["starts_at"]))
        taken = await s.execute(update(AppointmentSlot)
                                .where(AppointmentSlot.starts_at == starts_at,
                                       AppointmentSlot.booked < cap)
                                .values(booked=AppointmentSlot.booked + 1, capacity=cap))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("that slot is fully booked", code="slot_full")

    @staticmethod
    async def _free_place(s: AsyncSession, starts_at: datetime) -> None:
        await s.execute(update(AppointmentSlot).where(AppointmentSlot.starts_at == starts_at,
                                                      AppointmentSlot.booked > 0)
                        .values(booked=AppointmentSlot.booked - 1))

    # -- the customer's bookings ------------------------------------------------------------
    async def book(self, customer_id: str, starts_at: datetime, now: datetime,
                   service: str = "car_loan") -> dict[str, Any]:
        cap = await self._bookable(starts_at, now)
        appointment = Appointment(id=new_appointment_id(), customer_id=customer_id,
                                  service=service, starts_at=starts_at, state=BOOKED,
                                  created_at=now)
        try:
            async with self.sm() as s, s.begin():
                await self._take_place(s, starts_at, cap)
                s.add(appointment)
                await s.flush()
        except IntegrityError:  # the partial unique index: one booked appointment each
            raise Conflict("you have a booked appointment already: move or cancel it",
                           code="already_booked") from None
        return view(appointment, self.config.slot_minutes)

    async def move(self, customer_id: str, appointment_id: str, starts_at: datetime,
                   now: datetime) -> dict[str, Any]:
        cap = await self._bookable(starts_at, now)
        async with self.sm() as s, s.begin():
            await self._take_place(s, starts_at, cap)
            a = await s.scalar(select(Appointment).where(
                Appointment.id == appointment_id, Appointment.customer_id == customer_id,
                Appointment.state == BOOKED).with_for_update())
            if a is None:
                raise NotFound("no such booked appointment", code="unknown_appointment")
            if aware(a.starts_at) == starts_at:
                raise InvalidState("the appointment is at that time already",
                                   code="same_slot")
            if aware(a.starts_at) <= now:
                raise InvalidState("the appointment has started", code="slot_in_past")
            await self._free_place(s, a.starts_at)
            a.starts_at, a.updated_at = starts_at, now
        return view(a, self.config.slot_minutes)

    async def cancel(self, customer_id: str, appointment_id: str, now: datetime
                     ) -> dict[str, Any]:
        async with self.sm() as s, s.begin():
            done = await s.execute(update(Appointment).where(
                Appointment.id == appointment_id, Appointment.customer_id == customer_id,
                Appointment.state == BOOKED).values(state=CANCELLED, updated_at=now))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFound("no such booked appointment", code="unknown_appointment")
            a = await s.get(Appointment, appointment_id)
            assert a is not None
            await self._free_place(s, a.starts_at)
        return view(a, self.config.slot_minutes)

    async def of_customer(self, customer_id: str) -> list[dict[str, Any]]:
        async with self.sm() as s:
            rows = (await s.scalars(select(Appointment).where(
                Appointment.customer_id == customer_id).order_by(Appointment.starts_at.desc())
                .limit(20))).all()
        return [view(a, self.config.slot_minutes) for a in rows]

    # -- arrival and no-shows ----------------------------------------------------------------
    async def due(self, customer_id: str, service: str, now: datetime) -> bool:
        """Whether the customer has a booked appointment for ``service`` whose window is
        open now (``window_s`` before its start until ``no_show_after_s`` after)."""
        lo = now - timedelta(seconds=self.config.no_show_after_s)
        hi = now + timedelta(seconds=self.config.window_s)
        async with self.sm() as s:
            return await s.scalar(select(Appointment.id).where(
                Appointment.customer_id == customer_id, Appointment.service == service,
                Appointment.state == BOOKED, Appointment.starts_at >= lo,
                Appointment.starts_at <= hi).limit(1)) is not None

    async def arrived(self, customer_id: str, service: str, call_id: str, now: datetime
                      ) -> dict[str, Any] | None:
        """A customer asks for a call: their booked appointment for it, if its window is
        open (``window_s`` before the start until ``no_show_after_s`` after), is attended
        (returned: the call is preferred)."""
        lo = now - timedelta(seconds=self.config.no_show_after_s)
        hi = now + timedelta(seconds=self.config.window_s)
        async with self.sm() as s, s.begin():
            done = await s.execute(update(Appointment).where(
                Appointment.customer_id == customer_id, Appointment.service == service,
                Appointment.state == BOOKED, Appointment.starts_at >= lo,
                Appointment.starts_at <= hi).values(state=ATTENDED, call_id=call_id,
                                                    updated_at=now))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None
            a = await s.scalar(select(Appointment).where(Appointment.call_id == call_id))
        return view(a, self.config.slot_minutes) if a is not None else None

    async def record_no_shows(self, now: datetime) -> list[dict[str, Any]]:
        """Booked appointments whose window has closed: no-shows; their places are freed."""
        cutoff = now - timedelta(seconds=self.config.no_show_after_s)
        async with self.sm() as s, s.begin():
            done = (await s.scalars(update(Appointment).where(
                Appointment.state == BOOKED, Appointment.starts_at < cutoff)
                .values(state=NO_SHOW, updated_at=now).returning(Appointment))).all()
            for a in done:
                await self._free_place(s, a.starts_at)
        return [{**view(a, self.config.slot_minutes), "customer_id": a.customer_id}
                for a in done]

    async def booked_count(self, starts_at: datetime) -> tuple[int, int]:
        """(booked places, appointments in state booked) of a slot (tests, metrics)."""
        async with self.sm() as s:
            slot = await s.get(AppointmentSlot, starts_at)
            n = await s.scalar(select(func.count()).select_from(Appointment).where(
                Appointment.starts_at == starts_at, Appointment.state == BOOKED))
        return (slot.booked if slot else 0), int(n or 0)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _z(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
