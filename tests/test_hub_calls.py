"""A running hub: simulators complete calls through the documented protocol."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.client import Connection
from cloudcounter.sim.customer import run_customer
from tests.conftest import Hub

pytestmark = pytest.mark.integration


async def timeline(hub: Hub, call_id: str) -> list[str]:
    return [e["kind"] for e in (await hub.call_detail(call_id))["timeline"]]


async def test_simulators_complete_calls(hub: Hub) -> None:
    ready = asyncio.Event()
    agent = asyncio.create_task(run_agent(hub.url, await hub.agent_token("carol"), calls=2,
                                          accept_delay=0.05, ready=ready))
    await ready.wait()
    results = []
    for cid, service in [("cus_demo_barack", "card_loss"), ("cus_demo_joe", "car_loan")]:
        results.append(await run_customer(hub.url, hub.customer_token(cid), service, seconds=0.3))
    res = await agent
    assert res.error is None and res.calls == 2
    assert [r.outcome for r in results] == ["completed", "completed"]
    assert all(r.wait_ms is not None for r in results)  # both were answered
    kinds = await timeline(hub, results[0].call_id)  # type: ignore[arg-type]
    assert kinds[:2] == ["call.requested", "call.queued"]
    for k in ("call.offered", "call.answered", "call.ended", "call.wrapped_up"):
        assert k in kinds


async def test_queue_order_under_mixed_priorities(hub: Hub) -> None:
    # Three customers wait with no agent; tokens carry different priorities.
    conns = {}
    order = [("cus_demo_barack", 0), ("cus_demo_joe", 9), ("cus_demo_eileen", 7)]
    for cid, prio in order:
        c = Connection(hub.url, "/customer", hub.customer_token(cid, priority=prio))
        await c.connect()
        reply = await c.call("call:request", {"service": "contact_change"})  # priority 1
        assert reply["ok"], reply
        conns[cid] = (c, reply["call_id"])
    agent = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await agent.connect()
    await agent.call("agent:status", {"status": "available"})
    offered = []
    for _ in range(3):
        _, offer = await agent.expect("call:offer", timeout=5)
        offered.append(offer["customer"]["id"])
        assert (await agent.call("call:accept", {"call_id": offer["call_id"]}))["ok"]
        assert (await agent.call("call:hangup", {"call_id": offer["call_id"]}))["ok"]
        assert (await agent.call("call:wrapup", {  # no business done: skipped, with reason
            "call_id": offer["call_id"], "outcome": "resolved",
            "skip_reason": "queue-order test"}))["ok"]
    assert offered == ["cus_demo_joe", "cus_demo_eileen", "cus_demo_barack"]
    for c, _ in conns.values():
        await c.close()
    await agent.close()


async def test_offer_timeout_reoffers_to_the_next_agent(hub_factory) -> None:  # type: ignore[no-untyped-def]
    hub = await hub_factory(offer_timeout_s=0.6)
    slow = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await slow.connect()
    await slow.call("agent:status", {"status": "available"})
    await asyncio.sleep(0.05)
    quick = Connection(hub.url, "/agent", await hub.agent_token("carol"))
    await quick.connect()
    await quick.call("agent:status", {"status": "available"})
    cust = Connection(hub.url, "/customer", hub.customer_token())
    await cust.connect()
    call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
    _, first = await slow.expect("call:offer", timeout=5)  # alice has been idle longest
    assert first["call_id"] == call_id
    _, withdrawn = await slow.expect("call:offer_withdrawn", timeout=5)
    assert withdrawn["reason"] == "missed"
    _, second = await quick.expect("call:offer", timeout=5)
    assert second["call_id"] == call_id
    late = await slow.call("call:accept", {"call_id": call_id})
    assert late == {"ok": False, "error": {"code": "offer_expired",
                                           "message": "this call is not offered to you"}}
    assert (await quick.call("call:accept", {"call_id": call_id}))["ok"]
    _, accepted = await cust.expect("call:accepted", timeout=5)
    assert accepted["call_id"] == call_id
    assert "offer.timeout" in await timeline(hub, call_id)
    for c in (slow, quick, cust):
        await c.close()


async def test_agent_disconnect_requeues_the_call(hub: Hub) -> None:
    a1 = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await a1.connect()
    await a1.call("agent:status", {"status": "available"})
    cust = Connection(hub.url, "/customer", hub.customer_token())
    await cust.connect()
    call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
    _, offer = await a1.expect("call:offer", timeout=5)
    assert (await a1.call("call:accept", {"call_id": call_id}))["ok"]
    await cust.expect("call:accepted", timeout=5)
    await a1.close()  # the agent's browser dies mid-call
    _, queued = await cust.expect("call:queued", timeout=5)
    assert queued == {"call_id": call_id, "position": 1, "estimated_wait_s": None,
                      "requeued": True}
    a2 = Connection(hub.url, "/agent", await hub.agent_token("carol"))
    await a2.connect()
    await a2.call("agent:status", {"status": "available"})
    _, offer2 = await a2.expect("call:offer", timeout=5)
    assert offer2["call_id"] == call_id
    assert "call.requeued" in await timeline(hub, call_id)
    await a2.close()
    await cust.close()


async def test_customer_reconnect_within_grace_keeps_its_place(hub: Hub) -> None:
    first = Connection(hub.url, "/customer", hub.customer_token("cus_demo_barack"))
    await first.connect()
    call_a = (await first.call("call:request", {"service": "card_loss"}))["call_id"]
    second = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await second.connect()
    reply = await second.call("call:request", {"service": "card_loss"})
    assert reply["position"] == 2
    await first.close()  # network drop
    await asyncio.sleep(0.5)
    back = Connection(hub.url, "/customer", hub.customer_token("cus_demo_barack"))
    await back.connect()
    _, state = await back.expect("call:state", timeout=5)
    assert state == {"call_id": call_a, "state": "queued", "position": 1,
                     "estimated_wait_s": None}
    agent = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await agent.connect()
    await agent.call("agent:status", {"status": "available"})
    _, offer = await agent.expect("call:offer", timeout=5)
    assert offer["call_id"] == call_a  # still first in line
    for c in (back, second, agent):
        await c.close()


async def test_customer_gone_past_grace_is_abandoned(hub: Hub) -> None:
    cust = Connection(hub.url, "/customer", hub.customer_token())
    await cust.connect()
    call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
    await cust.close()
    for _ in range(150):  # the grace period runs out, then the call ends
        detail = await hub.call_detail(call_id)
        if detail["call"]["end_reason"] is not None:
            break
        await asyncio.sleep(0.2)
    kinds = [e["kind"] for e in detail["timeline"] if e["kind"] != "audit.viewed"]  # polls
    assert kinds[-1] == "call.ended"
    assert detail["call"]["end_reason"] == "abandoned"


async def test_service_catalogue_is_public(hub: Hub) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{hub.url}/api/services") as r:
            data = await r.json()
    codes = {s["code"] for s in data["services"]}
    assert {"card_loss", "password_reset", "contact_change", "large_transfer",
            "car_loan"} <= codes
    loan = next(s for s in data["services"] if s["code"] == "car_loan")
    assert loan["kind"] == "loan_interview" and loan["required_skill"] == "loans"
