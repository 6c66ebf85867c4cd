"""The hub does exactly what docs/protocol.md says (issue 12, "the protocol says exactly what
the hub does"): one test per difference a client written from the document alone found."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import socketio

from cloudcounter.hub.app import queue_config
from cloudcounter.hub.auth import verify_customer_token
from cloudcounter.signaling.schemas import PROTOCOL_TEXT
from cloudcounter.sim.client import Connection
from tests.conftest import Hub, make_settings
from tests.test_sdp_offers import OFFER

AUDIO_ONLY = OFFER[:OFFER.index("m=video")].replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")


async def agent(hub: Hub, name: str = "alice") -> Connection:
    conn = Connection(hub.url, "/agent", await hub.agent_token(name))
    await conn.connect()
    return conn


async def test_an_offered_agent_gets_offer_withdrawn_and_no_call_ended(hub: Hub) -> None:
    alice = await agent(hub)
    _, state = await alice.expect("agent:state", timeout=10)
    assert state["state"] == "away"  # agents start away after every connect (documented)
    assert (await alice.call("agent:status", {"status": "available"}))["ok"]
    joe = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await joe.connect()
    first = (await joe.call("call:request", {"service": "card_loss"}))["call_id"]
    await alice.expect("call:offer", timeout=10)
    assert (await joe.call("call:hangup", {"call_id": first}))["ok"]  # gone while offered
    _, withdrawn = await alice.expect("call:offer_withdrawn", timeout=10)
    assert withdrawn["call_id"] == first
    # a second call, answered and ended: its call:ended is the only one alice receives
    second = (await joe.call("call:request", {"service": "card_loss"}))["call_id"]
    seen: list[tuple[str, dict[str, Any]]] = []
    while True:
        event, data = await alice.expect("call:offer", "call:ended", timeout=10)
        seen.append((event, data))
        if event == "call:offer":
            break
    assert (await alice.call("call:accept", {"call_id": second}))["ok"]
    assert (await joe.call("call:hangup", {"call_id": second}))["ok"]
    while True:
        event, data = await alice.expect("call:offer", "call:ended", timeout=10)
        seen.append((event, data))
        if event == "call:ended":
            break
    ended = [d["call_id"] for e, d in seen if e == "call:ended"]
    assert ended == [second], seen
    for c in (alice, joe):
        await c.close()


async def test_agent_status_answers_invalid_status_for_states_agents_cannot_choose(
        hub: Hub) -> None:
    alice = await agent(hub)
    for status in ("busy", "offered", "wrap_up", "sleeping"):
        reply = await alice.call("agent:status", {"status": status})
        assert reply["error"]["code"] == "invalid_status", (status, reply)
    reply = await alice.call("agent:status", {"status": "Not A Status!"})
    assert reply["error"]["code"] == "invalid_message"
    assert (await alice.call("agent:status", {"status": "available"}))["ok"]
    await alice.close()


async def test_a_binary_attachment_gets_exactly_one_refusal(hub: Hub) -> None:
    joe = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await joe.connect()
    reply = await joe.sio.call("call:request", {"service": b"card_loss"},
                               namespace="/customer", timeout=10)
    assert reply["ok"] is False and reply["error"]["code"] == "binary_not_supported"
    # the connection stays usable, and nothing was queued
    reply = await joe.call("call:request", {"service": "card_loss"})
    assert reply["ok"] and reply["position"] == 1
    await joe.close()


async def test_protocol_versions_given_as_numbers_strings_or_not_at_all(hub: Hub) -> None:
    for auth in ({"protocol": 1}, {"protocol": "1"}, {"protocol": "1.2"}, {"protocol": 1.1},
                 {}):
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(hub.url, namespaces=["/customer"], transports=["websocket"],
                          auth={"token": hub.customer_token("cus_demo_joe"), **auth},
                          wait_timeout=10)
        assert sio.connected, auth
        await sio.disconnect()
    async with aiohttp.ClientSession() as http:
        async with http.get(hub.url + "/healthz") as r:
            health = await r.json()
    assert health["protocol_version"] == PROTOCOL_TEXT and health["protocols"] == [1]


async def test_the_customer_must_offer_video_and_the_agent_may_be_camera_off(hub: Hub) -> None:
    alice = await agent(hub)
    await alice.call("agent:status", {"status": "available"})
    joe = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await joe.connect()
    call_id = (await joe.call("call:request", {"service": "card_loss"}))["call_id"]
    await alice.expect("call:offer", timeout=10)
    assert (await alice.call("call:accept", {"call_id": call_id}))["ok"]
    offer = {"call_id": call_id, "type": "offer", "sdp": AUDIO_ONLY}
    refused = await joe.call("media:offer", offer)
    assert refused["error"]["code"] == "video_required"
    assert (await alice.call("media:offer", offer))["ok"]  # the agent: audio only is fine
    assert (await joe.call("media:offer", {**offer, "sdp": OFFER}))["ok"]  # call goes on
    for c in (alice, joe):
        await c.close()


async def test_a_waiting_customer_refreshes_the_token_in_band(hub: Hub) -> None:
    joe = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await joe.connect()
    assert (await joe.call("auth:refresh"))["error"]["code"] == "no_active_call"
    call_id = (await joe.call("call:request", {"service": "card_loss"}))["call_id"]
    fresh = await joe.call("auth:refresh")
    assert fresh["ok"] and fresh["expires_in_s"] == hub.settings.customer_token_ttl_s
    ident = verify_customer_token(hub.settings.customer_token_secret, fresh["token"])
    assert ident.customer_id == "cus_demo_joe"
    await joe.close()
    again = Connection(hub.url, "/customer", fresh["token"])  # reconnects with it
    await again.connect()
    _, state = await again.expect("call:state", timeout=10)
    assert state["call_id"] == call_id and state["state"] == "queued"
    await again.close()
    await asyncio.sleep(0)


def test_queue_limits_are_settings(tmp_path: Any) -> None:
    config = queue_config(make_settings(tmp_path, decline_exclusion_s=5.0,
                                        max_queue_wait_s=600.0, max_queue_length=10))
    assert (config.exclusion_s, config.max_wait_s, config.max_queue_length) == (5.0, 600.0, 10)
