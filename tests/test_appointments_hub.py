"""Appointments over the customer protocol: slots, book, move, cancel, only one's own;
bad input refused with codes; a booked customer who calls in the window is routed ahead of
a walk-in of the same skill, and the appointment is attended on the call's timeline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cloudcounter.sim.client import Connection
from tests.conftest import Hub

pytestmark = pytest.mark.integration


def next_slot(minutes: int = 30, after: timedelta = timedelta(0)) -> datetime:
    now = datetime.now(timezone.utc) + after
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % minutes)
    return start + timedelta(minutes=minutes)


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def roster_around(hub: Hub, *when: datetime) -> None:
    for day in {w.date() for w in when}:
        for agent in ("bob", "carol"):
            await hub.ctx.appointments.book.set_shift(agent, day, 0, 1440)


async def customer(hub: Hub, cid: str) -> Connection:
    c = Connection(hub.url, "/customer", hub.customer_token(cid), protocol="1.1")
    await c.connect()
    return c


async def test_book_move_cancel_over_the_protocol(hub: Hub) -> None:
    first, second = next_slot(after=timedelta(hours=2)), next_slot(after=timedelta(hours=3))
    await roster_around(hub, first, second)
    eileen, joe = await customer(hub, "cus_demo_eileen"), await customer(hub, "cus_demo_joe")
    try:
        r = await eileen.call("appointment:slots", {"from_day": first.date().isoformat(),
                                                     "days": 2})
        assert r["ok"] and r["slot_minutes"] == 30
        slots = {s["starts_at"]: s for s in r["slots"]}
        assert slots[z(first)]["capacity"] == 2 and slots[z(first)]["free"] == 2
        booked = await eileen.call("appointment:book", {"starts_at": z(first)})
        assert booked["ok"], booked
        apt = booked["appointment"]["appointment_id"]
        r = await joe.call("appointment:slots", {"from_day": first.date().isoformat()})
        assert {s["starts_at"]: s["free"] for s in r["slots"]}[z(first)] == 1
        assert (await joe.call("appointment:list", {}))["appointments"] == []
        # nobody moves or cancels another customer's appointment
        for event, extra in (("appointment:move", {"starts_at": z(second)}),
                             ("appointment:cancel", {})):
            r = await joe.call(event, {"appointment_id": apt, **extra})
            assert r["error"]["code"] == "unknown_appointment", r
        # bad input: error codes, nothing changed
        past = z(next_slot() - timedelta(hours=2))
        for payload, code in (({"starts_at": past}, "slot_in_past"),
                              ({"starts_at": "2026-13-01T10:00:00Z"}, "invalid_time"),
                              ({"starts_at": "tomorrow"}, "invalid_message"),
                              ({"starts_at": z(first + timedelta(minutes=7))}, "invalid_slot"),
                              ({"starts_at": z(first), "customer_id": "cus_demo_joe"},
                               "invalid_message"),
                              ({"starts_at": z(second)}, "already_booked")):
            r = await eileen.call("appointment:book", payload)
            assert r["error"]["code"] == code, (payload, r)
        mine = (await eileen.call("appointment:list", {}))["appointments"]
        assert [(a["appointment_id"], a["state"], a["starts_at"]) for a in mine] == [
            (apt, "booked", z(first))]
        moved = await eileen.call("appointment:move", {"appointment_id": apt,
                                                        "starts_at": z(second)})
        assert moved["ok"] and moved["appointment"]["starts_at"] == z(second)
        cancelled = await eileen.call("appointment:cancel", {"appointment_id": apt})
        assert cancelled["appointment"]["state"] == "cancelled"
        r = await eileen.call("appointment:slots", {"from_day": first.date().isoformat(),
                                                     "days": 2})
        free = {s["starts_at"]: s["free"] for s in r["slots"]}
        assert free[z(first)] == 2 and free[z(second)] == 2
    finally:
        await eileen.close()
        await joe.close()


async def test_a_booked_customer_is_routed_ahead_of_a_walk_in(hub_factory: Any) -> None:
    hub = await hub_factory(appointment_window_s=3600.0)
    slot = next_slot()
    await roster_around(hub, slot)
    earlier = datetime.now(timezone.utc) - timedelta(hours=1)  # booked an hour ago
    a = await hub.ctx.appointments.book.book("cus_demo_eileen", slot, earlier)
    joe, eileen = await customer(hub, "cus_demo_joe"), await customer(hub, "cus_demo_eileen")
    bob = Connection(hub.url, "/agent", await hub.agent_token("bob"))
    await bob.connect()
    try:
        walk_in = await joe.call("call:request", {"service": "car_loan"})
        booked = await eileen.call("call:request", {"service": "car_loan"})
        assert walk_in["ok"] and booked["ok"]
        assert booked["position"] == 1  # ahead of the walk-in who asked first
        assert (await bob.call("agent:status", {"status": "available"}))["ok"]
        _, offer = await bob.expect("call:offer", timeout=10)
        assert offer["call_id"] == booked["call_id"]
        mine = (await eileen.call("appointment:list", {}))["appointments"]
        assert mine[0]["appointment_id"] == a["appointment_id"]
        assert mine[0]["state"] == "attended" and mine[0]["call_id"] == booked["call_id"]
        detail = await hub.call_detail(booked["call_id"])
        kinds = [e["kind"] for e in detail["timeline"]]
        assert "appointment.attended" in kinds
    finally:
        for c in (joe, eileen, bob):
            await c.close()


async def test_the_roster_api_is_for_administrators_and_audited(hub: Hub) -> None:
    import aiohttp

    token = await hub.agent_token("admin")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        url = hub.url + "/api/admin/roster"
        shift = {"username": "bob", "day": "2026-12-24", "start": "09:00", "end": "12:30"}
        for bad, status, code in (({**shift, "username": "alice"}, 409, "not_a_loans_agent"),
                                  ({**shift, "end": "08:00"}, 400, "invalid_shift"),
                                  ({**shift, "start": "25:00"}, 400, "invalid_time"),
                                  ({**shift, "day": "2026-02-30"}, 400, "invalid_date"),
                                  ({**shift, "username": "nobody"}, 404, "unknown_user")):
            async with http.put(url, json=bad) as r:
                assert r.status == status, (bad, await r.text())
                assert (await r.json())["error"]["code"] == code
        async with http.get(url, params={"day": "2026-12-24", "days": "1"}) as r:
            assert (await r.json())["roster"] == []  # nothing changed
        async with http.put(url, json=shift) as r:
            assert r.status == 200
        async with http.get(url, params={"day": "2026-12-24", "days": "1"}) as r:
            assert (await r.json())["roster"] == [{"username": "bob", "day": "2026-12-24",
                                                   "from": "09:00", "to": "12:30"}]
        async with http.delete(url + "/bob/2026-12-24") as r:
            assert (await r.json())["removed"] == 1
        async with http.get(hub.url + "/api/admin/security-events",
                            params={"kind": "admin.roster_set"}) as r:
            events = (await r.json())["events"]
        assert [e["target"] for e in events if e["kind"] == "admin.roster_set"] == ["bob"]
