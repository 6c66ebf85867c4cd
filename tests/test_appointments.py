"""Appointments: the roster, free slots, booking, moving, cancelling, no-shows; the last
place of a slot cannot be booked twice under concurrent requests, on SQLite and
PostgreSQL; bad input changes nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cloudcounter.agents import accounts
from cloudcounter.business.appointments import (
    AppointmentBook, AppointmentConfig, Shift, capacity, parse_when, slot_grid,
)
from cloudcounter.db.models import Role
from cloudcounter.errors import CloudCounterError
from tests.test_db import db_url, pg_url, sm  # noqa: F401 - the fixtures (SQLite and PostgreSQL)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
DAY = NOW.date()
SLOT = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


async def book_of(sm: Any, agents: int = 2) -> AppointmentBook:  # noqa: F811
    book = AppointmentBook(sm, AppointmentConfig(slot_minutes=30, days_ahead=14))
    for i in range(agents):
        await accounts.create(sm, username=f"loan{i}", password="loan-agent-pass-1",
                              role=Role.AGENT, display_name=f"Loan {i}", skills=["loans"])
        await book.set_shift(f"loan{i}", DAY, 9 * 60, 12 * 60)
    return book


def code_of(exc: BaseException) -> str:
    assert isinstance(exc, CloudCounterError), exc
    return exc.code


def test_slots_and_capacity_are_pure() -> None:
    shifts = [Shift(1, DAY, 540, 720), Shift(2, DAY, 600, 660)]
    assert capacity(shifts, SLOT, 30) == 2
    assert capacity(shifts, SLOT + timedelta(minutes=60), 30) == 1
    assert capacity(shifts, SLOT - timedelta(minutes=90), 30) == 0
    grid = slot_grid(shifts, DAY, 2, 30, datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc))
    assert grid[0] == (datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc), 2)  # 9:00, 9:30 past
    assert len(grid) == 4 and grid[-1][1] == 1
    with pytest.raises(CloudCounterError):
        parse_when("2026-12-01T10:00")  # no time zone
    with pytest.raises(CloudCounterError):
        parse_when("tomorrow")


async def test_book_move_cancel_and_no_show(sm: Any) -> None:  # noqa: F811
    book = await book_of(sm)
    slots = await book.slots(NOW, DAY, 1)
    assert [s["starts_at"] for s in slots][:2] == ["2026-12-01T09:00:00Z", "2026-12-01T09:30:00Z"]
    assert all(s["capacity"] == 2 and s["free"] == 2 for s in slots) and len(slots) == 6
    a = await book.book("cus_a", SLOT, NOW)
    assert a["state"] == "booked" and a["starts_at"] == "2026-12-01T10:00:00Z"
    free = {s["starts_at"]: s["free"] for s in await book.slots(NOW, DAY, 1)}
    assert free["2026-12-01T10:00:00Z"] == 1
    with pytest.raises(CloudCounterError) as e:  # one booked appointment per customer
        await book.book("cus_a", SLOT + timedelta(minutes=30), NOW)
    assert code_of(e.value) == "already_booked"
    assert await book.booked_count(SLOT + timedelta(minutes=30)) == (0, 0)  # nothing kept
    with pytest.raises(CloudCounterError) as e:  # another customer's appointment
        await book.move("cus_b", a["appointment_id"], SLOT + timedelta(minutes=30), NOW)
    assert code_of(e.value) == "unknown_appointment"
    with pytest.raises(CloudCounterError) as e:
        await book.cancel("cus_b", a["appointment_id"], NOW)
    assert code_of(e.value) == "unknown_appointment"
    assert await book.booked_count(SLOT) == (1, 1)
    assert await book.booked_count(SLOT + timedelta(minutes=30)) == (0, 0)
    moved = await book.move("cus_a", a["appointment_id"], SLOT + timedelta(minutes=30), NOW)
    assert moved["starts_at"] == "2026-12-01T10:30:00Z"
    assert await book.booked_count(SLOT) == (0, 0)
    assert await book.booked_count(SLOT + timedelta(minutes=30)) == (1, 1)
    cancelled = await book.cancel("cus_a", a["appointment_id"], NOW)
    assert cancelled["state"] == "cancelled"
    assert await book.booked_count(SLOT + timedelta(minutes=30)) == (0, 0)
    with pytest.raises(CloudCounterError):
        await book.cancel("cus_a", a["appointment_id"], NOW)
    # attendance within the window, and a no-show freeing its place
    b = await book.book("cus_b", SLOT, NOW)
    c = await book.book("cus_c", SLOT, NOW)
    assert await book.arrived("cus_b", "car_loan", "call_" + "1" * 16, NOW) is None  # too early
    at = SLOT - timedelta(minutes=5)
    got = await book.arrived("cus_b", "car_loan", "call_" + "1" * 16, at)
    assert got is not None and got["appointment_id"] == b["appointment_id"]
    shows = await book.record_no_shows(SLOT + timedelta(minutes=20))
    assert [x["appointment_id"] for x in shows] == [c["appointment_id"]]
    assert await book.booked_count(SLOT) == (1, 0)  # the attended one keeps its place
    assert [x["state"] for x in await book.of_customer("cus_c")] == ["no_show"]


async def test_bad_bookings_change_nothing(sm: Any) -> None:  # noqa: F811
    book = await book_of(sm, agents=1)
    cases = [(NOW - timedelta(hours=1), "invalid_slot"),  # 07:00 is on the grid but...
             (datetime(2026, 12, 1, 7, 30, tzinfo=timezone.utc), "slot_in_past"),
             (datetime(2026, 12, 1, 10, 10, tzinfo=timezone.utc), "invalid_slot"),
             (datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc), "slot_full"),  # nobody rostered
             (datetime(2027, 1, 20, 10, 0, tzinfo=timezone.utc), "slot_too_far")]
    cases[0] = (datetime(2026, 12, 1, 7, 0, 30, tzinfo=timezone.utc), "invalid_slot")
    for when, code in cases:
        with pytest.raises(CloudCounterError) as e:
            await book.book("cus_a", when, NOW)
        assert code_of(e.value) == code, when
    assert await book.of_customer("cus_a") == []
    with pytest.raises(CloudCounterError) as e:
        await book.set_shift("loan0", DAY, 600, 540)
    assert code_of(e.value) == "invalid_shift"
    await accounts.create(sm, username="cardsonly", password="cards-agent-pass-1",
                          role=Role.AGENT, skills=["cards"])
    with pytest.raises(CloudCounterError) as e:
        await book.set_shift("cardsonly", DAY, 540, 600)
    assert code_of(e.value) == "not_a_loans_agent"
    assert [r["username"] for r in await book.roster(DAY)] == ["loan0"]


async def test_the_last_place_cannot_be_booked_twice(sm: Any) -> None:  # noqa: F811
    book = await book_of(sm, agents=2)  # two places in the slot
    customers = [f"cus_race_{i}" for i in range(12)]

    async def attempt(cid: str) -> str:
        try:
            await book.book(cid, SLOT, NOW)
            return "ok"
        except CloudCounterError as exc:
            return exc.code

    results = await asyncio.gather(*(attempt(c) for c in customers))
    assert sorted(results) == ["ok", "ok"] + ["slot_full"] * 10, results
    assert await book.booked_count(SLOT) == (2, 2)
    # moves racing for a freed last place: one wins
    winners = [c for c, r in zip(customers, results) if r == "ok"]
    await book.cancel(winners[0], (await book.of_customer(winners[0]))[0]["appointment_id"],
                      NOW)
    losers = [c for c in customers if c not in winners][:6]
    sources = [SLOT + timedelta(minutes=m) for m in (-60, -60, -30, -30, 60, 60)]
    booked = [await book.book(c, at, NOW) for c, at in zip(losers, sources)]
    moves = await asyncio.gather(*(book.move(c, a["appointment_id"], SLOT, NOW)
                                   for c, a in zip(losers, booked)), return_exceptions=True)
    assert sum(1 for m in moves if isinstance(m, dict)) == 1, moves
    assert all(code_of(m) == "slot_full" for m in moves if not isinstance(m, dict))
    assert await book.booked_count(SLOT) == (2, 2)
    assert sum([(await book.booked_count(at))[0] for at in set(sources)]) == 5
