"""The supervisor wallboard: service levels from the timeline (unit), and the live board
pushed to a team lead while calls are waiting, answered and abandoned (integration)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from cloudcounter.hub.wallboard import BUCKET_S, Wallboard, service_level
from cloudcounter.sim.client import Connection
from tests.conftest import Hub, wait_until

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 10 * 3600  # 10:00 UTC on some day


def board_for(target_s: int = 20) -> Wallboard:
    services = {"card_loss": SimpleNamespace(target_answer_s=target_s)}
    return Wallboard(SimpleNamespace(services=services), clock=lambda: T0)  # type: ignore[arg-type]


def feed(w: Wallboard, call: str, requested: float, *events: tuple[str, float, Any]) -> None:
    w.on_event(call, "customer:x", "call.requested", {"service": "card_loss"}, requested)
    for kind, at, extra in events:
        w.on_event(call, "system", kind, extra or {}, at)


def test_service_level_counts_answers_within_target_and_real_abandons() -> None:
    w = board_for(target_s=20)
    feed(w, "c1", T0, ("call.answered", T0 + 10, None))  # within
    feed(w, "c2", T0, ("call.answered", T0 + 30, None))  # late
    feed(w, "c3", T0, ("call.ended", T0 + 2, {"reason": "abandoned"}))  # too short to count
    feed(w, "c4", T0, ("call.ended", T0 + 40, {"reason": "abandoned"}))  # counts
    # re-queued and answered again: the first answer is the one that counts
    feed(w, "c5", T0, ("call.answered", T0 + 5, None), ("call.answered", T0 + 90, None),
         ("call.ended", T0 + 200, {"reason": "completed"}))
    events = w.stats["card_loss"].events
    assert service_level(events, T0 - 1) == (round(2 / 4, 3), 3, 1)
    assert service_level(events, T0 + 35) == (0.0, 0, 1)  # only the late abandon is that recent
    [bucket] = w.stats["card_loss"].day.values()
    assert (bucket.arrived, bucket.answered, bucket.within, bucket.abandoned) == (5, 3, 2, 1)
    assert bucket.to_dict(T0)["average_wait_s"] == 15.0  # (10 + 30 + 5) / 3


def test_days_are_bucketed_and_a_new_day_clears_the_charts() -> None:
    w = board_for()
    feed(w, "a", T0, ("call.answered", T0 + 1, None))
    feed(w, "b", T0 + BUCKET_S, ("call.answered", T0 + BUCKET_S + 1, None))
    assert len(w.stats["card_loss"].day) == 2
    feed(w, "c", T0 + 86400, ("call.answered", T0 + 86401, None))
    assert len(w.stats["card_loss"].day) == 1


def test_risk_levels_and_unknown_calls_do_not_break_the_board() -> None:
    w = board_for()
    w.on_event("ghost", "system", "call.answered", {}, T0)  # never requested here
    w.on_event("ghost", "system", "call.ended", {"reason": "abandoned"}, T0)
    feed(w, "r", T0, ("risk.assessed", T0 + 1, {"level": "high"}))
    assert w._risk == {"r": "high"}
    w.on_event("r", "system", "call.ended", {"reason": "completed"}, T0 + 2)
    assert w._risk == {} and w._requested == {}


async def test_a_lead_sees_the_centre_live(hub: Hub) -> None:
    lead = Connection(hub.url, "/supervisor", await hub.agent_token("leo"))
    await lead.connect()
    alice = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await alice.connect()
    joe = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    eileen = Connection(hub.url, "/customer", hub.customer_token("cus_demo_eileen"))
    for c in (joe, eileen):
        await c.connect()
    first = (await joe.call("call:request", {"service": "card_loss"}))["call_id"]
    second = (await eileen.call("call:request", {"service": "card_loss"}))["call_id"]

    board = (await lead.call("wallboard:snapshot"))["board"]
    card = next(s for s in board["services"] if s["service"] == "card_loss")
    assert card["waiting"] == 2 and card["arrived_60m"] == 2
    assert card["agents_staffed"] == 0 and card["agents_needed"] >= 1  # alice is away
    assert [a["username"] for a in board["agents"]] == ["alice"]
    assert board["agents"][0]["state"] == "away"

    await alice.call("agent:status", {"status": "available"})
    _, offer = await alice.expect("call:offer", timeout=10)
    assert (await alice.call("call:accept", {"call_id": offer["call_id"]}))["ok"]
    other = second if offer["call_id"] == first else first
    leaver = eileen if other == second else joe
    assert (await leaver.call("call:hangup", {"call_id": other}))["ok"]

    async def settled() -> bool:
        b = (await lead.call("wallboard:snapshot"))["board"]
        s = next(x for x in b["services"] if x["service"] == "card_loss")
        return s["waiting"] == 0 and s["answered_60m"] == 1 and bool(b["calls"])
    await wait_until(settled, 10, "the answer on the board")
    board = (await lead.call("wallboard:snapshot"))["board"]
    card = next(s for s in board["services"] if s["service"] == "card_loss")
    assert card["service_level_60m"] in (1.0, 0.5)  # the abandon counts if it waited 5 s+
    assert card["agents_staffed"] == 1
    [in_call] = board["calls"]
    assert in_call["call_id"] == offer["call_id"] and in_call["agent"] == "alice"
    assert in_call["state"] == "in_call" and in_call["risk_level"]
    assert sum(b["arrived"] for b in card["day"]) == 2

    _, pushed = await lead.expect("wallboard:update", timeout=10)  # pushed on its own
    assert {s["service"] for s in pushed["services"]} >= {"card_loss"}
    for c in (lead, alice, joe, eileen):
        await c.close()
    await asyncio.sleep(0)


async def test_agents_cannot_read_the_wallboard(hub: Hub) -> None:
    alice = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await alice.connect()
    assert (await alice.call("wallboard:snapshot"))["error"]["code"] == "unknown_event"
    await alice.close()
