"""Silent monitoring through the hub (issue 15): a team lead watches and listens to both
participants of a live call over /supervisor, on the timeline as "monitored by"; nobody
else may; the call goes on untouched."""

from __future__ import annotations

import asyncio

from cloudcounter.media.client import ClientPeer, MonitorPeer
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack
from cloudcounter.sim.client import Connection
from tests.conftest import Hub, wait_until
from tests.test_hub_media import answered_call
from tests.test_sdp_offers import OFFER


async def timeline(hub: Hub, call_id: str) -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    from sqlalchemy import select

    from cloudcounter.db.models import CallEvent
    await hub.ctx.journal.flush()
    async with hub.ctx.sm() as s:
        rows = (await s.scalars(select(CallEvent).where(CallEvent.call_id == call_id)
                                .order_by(CallEvent.seq))).all()
    return [(e.actor, e.kind, e.payload) for e in rows]


async def test_a_lead_watches_a_live_call(hub: Hub) -> None:
    agent, cust, call_id = await answered_call(hub)
    peers = {"customer": ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(),
                                    ice_servers=[], host_addresses=["127.0.0.1"]),
             "agent": ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240),
                                 ice_servers=[], host_addresses=["127.0.0.1"])}
    lead = Connection(hub.url, "/supervisor", await hub.agent_token("leo"))
    watchers = {r: MonitorPeer([], ["127.0.0.1"]) for r in peers}
    try:
        for role, conn in (("customer", cust), ("agent", agent)):
            reply = await conn.call("media:offer", {"call_id": call_id, "type": "offer",
                                                    "sdp": await peers[role].offer()})
            assert reply["ok"], reply
            await peers[role].accept(reply["sdp"])
        await lead.connect()
        for role, w in watchers.items():
            reply = await lead.call("monitor:offer", {"call_id": call_id, "participant": role,
                                                      "type": "offer", "sdp": await w.offer()})
            assert reply["ok"], reply
            await w.accept(reply["sdp"])
        await wait_until(lambda: all(w.received["video"] >= 10 and w.received["audio"] >= 10
                                     for w in watchers.values()), 20, "the call at the lead")
        assert watchers["customer"].video_size == (640, 480)
        assert watchers["agent"].video_size == (320, 240)
        # a second offer for the same participant is refused; a bad one too
        again = await lead.call("monitor:offer", {"call_id": call_id, "participant": "agent",
                                                  "type": "offer", "sdp": OFFER})
        assert again["error"]["code"] == "media_invalid_state"  # already watching
        assert (await lead.call("monitor:offer", {
            "call_id": "call_" + "0" * 16, "participant": "agent", "type": "offer",
            "sdp": OFFER}))["error"]["code"] == "unknown_call"
        # nobody else may watch
        assert (await agent.call("monitor:offer", {
            "call_id": call_id, "participant": "customer", "type": "offer",
            "sdp": OFFER}))["error"]["code"] == "unknown_event"
        assert (await lead.call("monitor:stop", {"call_id": call_id}))["stopped"] == 2
        events = await timeline(hub, call_id)
        monitored = [(a, k, p["participant"]) for a, k, p in events if k.startswith("monitor.")]
        assert monitored == [("lead:leo", "monitor.started", "customer"),
                             ("lead:leo", "monitor.started", "agent"),
                             ("lead:leo", "monitor.stopped", "customer"),
                             ("lead:leo", "monitor.stopped", "agent")]
        # the participants were never told
        seen = [e for c in (agent, cust) for e in list(c.events._queue)  # type: ignore[attr-defined]
                if e[0].startswith("monitor")]
        assert seen == []
    finally:
        for w in watchers.values():
            await w.close()
        for p in peers.values():
            await p.close()
        for c in (lead, agent, cust):
            await c.close()
        await asyncio.sleep(0)


async def test_a_lead_who_leaves_stops_watching(hub: Hub) -> None:
    agent, cust, call_id = await answered_call(hub)
    peer = ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(), ice_servers=[],
                      host_addresses=["127.0.0.1"])
    lead = Connection(hub.url, "/supervisor", await hub.agent_token("leo"))
    watcher = MonitorPeer([], ["127.0.0.1"])
    try:
        reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer",
                                                "sdp": await peer.offer()})
        await peer.accept(reply["sdp"])
        await lead.connect()
        reply = await lead.call("monitor:offer", {"call_id": call_id, "participant": "customer",
                                                  "type": "offer", "sdp": await watcher.offer()})
        assert reply["ok"], reply
        await lead.close()
        await wait_until(lambda: hub.ctx.media.segments[call_id].media.monitors == [], 10,
                         "the monitor closed with the lead's connection")
        kinds = [k for _, k, _ in await timeline(hub, call_id)]
        assert kinds.count("monitor.started") == kinds.count("monitor.stopped") == 1
    finally:
        await watcher.close()
        await peer.close()
        for c in (agent, cust):
            await c.close()
