"""A team lead takes over a call whose agent dropped (issue 15): the call waits again at its
place, the wallboard shows it, the lead answers it from the agent console, the customer is
told who serves them now, media comes up on a new segment, the business flow goes on where
the agent left it, and the timeline says who took it over from whom. Nobody else may."""

from __future__ import annotations

import asyncio

from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack
from cloudcounter.sim.client import Connection
from tests.conftest import Hub, wait_until
from tests.test_hub_media import answered_call
from tests.test_monitor_hub import timeline


def peer(width: int = 640, height: int = 480) -> ClientPeer:
    return ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(width, height),
                      ice_servers=[], host_addresses=["127.0.0.1"])


async def dropped_call(hub: Hub) -> tuple[Connection, str, dict]:  # type: ignore[type-arg]
    """A card-loss call answered by alice, whose console then dies: the customer connection,
    the call id and alice's flow snapshot at the answer."""
    agent, cust, call_id = await answered_call(hub)
    flow = (await agent.call("flow:snapshot", {"call_id": call_id}))["flow"]
    await agent.close()  # the agent's browser dies mid-call
    _, queued = await cust.expect("call:queued", timeout=5)
    assert queued["requeued"] is True
    return cust, call_id, flow


async def test_a_lead_takes_over_a_call_whose_agent_dropped(hub: Hub) -> None:
    cust, call_id, alice_flow = await dropped_call(hub)
    board = await hub.ctx.wallboard.board()
    assert [(c["call_id"], c["dropped_by"], c["state"]) for c in board["dropped"]] == \
        [(call_id, "alice", "queued")]
    lead = Connection(hub.url, "/agent", await hub.agent_token("leo"))
    peers = {"customer": peer(), "agent": peer(320, 240)}
    try:
        await lead.connect()
        _, state = await lead.expect("agent:state", timeout=5)
        assert state["state"] == "away"
        # a lead's console is never routed a call
        refused = await lead.call("agent:status", {"status": "available"})
        assert refused["error"]["code"] == "lead_not_routed"
        reply = await lead.call("call:take_over", {"call_id": call_id})
        assert reply["ok"] and reply["taken_over"] is True, reply
        assert reply["service"]["code"] == "card_loss"
        # the flow goes on: the same script, the same steps as alice had
        assert [s["id"] for s in reply["flow"]["steps"]] == \
            [s["id"] for s in alice_flow["steps"]]
        _, accepted = await cust.expect("call:accepted", timeout=5)
        assert accepted["agent"]["display_name"] == "Leo Novak"
        while (await lead.expect("agent:state", timeout=5))[1]["state"] != "busy":
            pass  # the away of signing in, told twice (the connect's and the queue's)
        assert (await hub.ctx.wallboard.board())["dropped"] == []
        # media on a new segment: both sides offer again, the lead sees the customer
        for role, conn in (("customer", cust), ("agent", lead)):
            answer = await conn.call("media:offer", {"call_id": call_id, "type": "offer",
                                                     "sdp": await peers[role].offer()})
            assert answer["ok"], answer
            await peers[role].accept(answer["sdp"])
        await wait_until(lambda: all(p.received.frames["video"] >= 10
                                     for p in peers.values()), 20, "video both ways")
        assert peers["agent"].received.video_size == (640, 480)
        assert peers["customer"].received.video_size == (320, 240)
        # the lead works the call as its agent: a note, then hangs up and wraps up
        assert (await lead.call("call:note", {"call_id": call_id, "text": "took over"}))["ok"]
        assert (await lead.call("call:hangup", {"call_id": call_id}))["ok"]
        await lead.expect("call:ended", timeout=5)
        wrap = await lead.call("call:wrapup", {"call_id": call_id, "outcome": "resolved",
                                               "notes": "taken over from alice",
                                               "skip_reason": "agent dropped"})
        assert wrap["ok"], wrap
        agents = {a.username: a for a in await hub.ctx.dispatcher.store.agents()}
        assert agents["leo"].state.value == "away" and agents["leo"].call_id is None
        events = await timeline(hub, call_id)
        kinds = [(a, k) for a, k, _ in events]
        taken = next(p for _, k, p in events if k == "call.taken_over")
        assert taken["lead"] == "leo" and taken["from_agent"] == "alice"
        assert taken["after_s"] >= 0
        i = kinds.index(("lead:leo", "call.taken_over"))
        assert ("system", "call.requeued") in kinds[:i]
        assert ("lead:leo", "call.answered") in kinds[i:]
        assert ("lead:leo", "flow.resumed") in kinds[i:]
        assert ("lead:leo", "agent.note") in kinds[i:]
        assert ("lead:leo", "call.ended") in kinds[i:]
    finally:
        for p in peers.values():
            await p.close()
        for c in (lead, cust):
            await c.close()
        await asyncio.sleep(0)


async def test_only_a_lead_takes_over_and_only_a_dropped_call(hub: Hub) -> None:
    agent, cust, call_id = await answered_call(hub)
    lead = Connection(hub.url, "/agent", await hub.agent_token("leo"))
    carol = Connection(hub.url, "/agent", await hub.agent_token("carol"))
    try:
        await lead.connect()
        await carol.connect()
        # the agent is still there: nothing to take over
        live = await lead.call("call:take_over", {"call_id": call_id})
        assert live["error"]["code"] == "not_dropped"
        await agent.close()
        await cust.expect("call:queued", timeout=5)
        # an agent may not take a call over: it waits for its offer like any other
        assert (await carol.call("call:take_over", {"call_id": call_id}))["error"]["code"] \
            == "lead_only"
        assert (await lead.call("call:take_over", {"call_id": "call_" + "0" * 16})
                )["error"]["code"] == "unknown_call"
        assert (await lead.call("call:take_over", {"call_id": 7}))["error"]["code"] \
            == "invalid_message"
        # once taken over, a second take-over is refused and the call is the lead's
        assert (await lead.call("call:take_over", {"call_id": call_id}))["ok"]
        again = await lead.call("call:take_over", {"call_id": call_id})
        assert again["error"]["code"] == "not_dropped"
        assert (await carol.call("call:hangup", {"call_id": call_id}))["error"]["code"] \
            == "forbidden"
        # a lead on /supervisor has no take-over there (the console carries the call)
        sup = Connection(hub.url, "/supervisor", await hub.agent_token("leo"))
        await sup.connect()
        assert (await sup.call("call:take_over", {"call_id": call_id}))["error"]["code"] \
            == "unknown_event"
        await sup.close()
        kinds = [k for _, k, _ in await timeline(hub, call_id)]
        assert kinds.count("call.taken_over") == 1
    finally:
        for c in (lead, carol, cust):
            await c.close()


async def test_a_call_offered_to_another_agent_is_withdrawn_when_taken_over(hub: Hub) -> None:
    cust, call_id, _ = await dropped_call(hub)
    carol = Connection(hub.url, "/agent", await hub.agent_token("carol"))
    lead = Connection(hub.url, "/agent", await hub.agent_token("leo"))
    try:
        await carol.connect()
        await carol.call("agent:status", {"status": "available"})
        _, offer = await carol.expect("call:offer", timeout=5)
        assert offer["call_id"] == call_id
        board = await hub.ctx.wallboard.board()
        assert [c["state"] for c in board["dropped"]] == ["offered"]
        await lead.connect()
        assert (await lead.call("call:take_over", {"call_id": call_id}))["ok"]
        _, withdrawn = await carol.expect("call:offer_withdrawn", timeout=5)
        assert withdrawn == {"call_id": call_id, "reason": "taken_over"}
        # carol is available again, with no penalty, and cannot accept the old offer
        assert (await carol.call("call:accept", {"call_id": call_id}))["error"]["code"] \
            == "offer_expired"
        agents = {a.username: a for a in await hub.ctx.dispatcher.store.agents()}
        assert agents["carol"].state.value == "available"
        assert agents["carol"].missed_offers == 0
        assert agents["leo"].state.value == "busy" and agents["leo"].call_id == call_id
    finally:
        for c in (lead, carol, cust):
            await c.close()


async def test_a_lead_whose_console_drops_hands_the_call_back_to_the_queue(hub: Hub) -> None:
    cust, call_id, _ = await dropped_call(hub)
    lead = Connection(hub.url, "/agent", await hub.agent_token("leo"))
    try:
        await lead.connect()
        assert (await lead.call("call:take_over", {"call_id": call_id}))["ok"]
        await cust.expect("call:accepted", timeout=5)
        await lead.close()
        _, queued = await cust.expect("call:queued", timeout=5)
        assert queued["requeued"] is True
        board = await hub.ctx.wallboard.board()
        assert [(c["call_id"], c["dropped_by"]) for c in board["dropped"]] == [(call_id, "leo")]
    finally:
        for c in (lead, cust):
            await c.close()
