"""TURN with ephemeral credentials, against a real coturn on loopback.

The hub mints a credential per participant (coturn's shared-secret scheme); a customer
restricted to relay candidates completes a call through coturn with media both ways; an
expired or forged credential is refused by coturn itself.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aioice.stun
import aioice.turn
import pytest

from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack
from cloudcounter.media.turn import credential_for, mint
from cloudcounter.sim.client import Connection
from tests.conftest import Hub, wait_until
from tests.netlab import TurnServer, coturn, turnserver_binary

pytestmark = [pytest.mark.integration]
TTL_S = 600


@pytest.fixture
def turn(tmp_path: Path) -> Any:
    turnserver_binary()  # skip with the reason when coturn is missing
    with coturn(tmp_path / "coturn") as server:
        yield server


def selected_local_candidate(peer: ClientPeer) -> str | None:
    """The type of the local candidate ICE nominated (``relay``, ``host``...)."""
    for transceiver in peer.pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        pairs = getattr(ice._connection, "_nominated", {})  # aioice: component → pair
        for pair in pairs.values():
            return str(pair.local_candidate.type)
    return None


async def answered(hub: Hub) -> tuple[Connection, Connection, str, dict[str, Any],
                                      dict[str, Any]]:
    agent = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await agent.connect()
    await agent.call("agent:status", {"status": "available"})
    cust = Connection(hub.url, "/customer", hub.customer_token())
    await cust.connect()
    call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
    await agent.expect("call:offer", timeout=10)
    ack = await agent.call("call:accept", {"call_id": call_id})
    assert ack["ok"], ack
    _, accepted = await cust.expect("call:accepted", timeout=10)
    return agent, cust, call_id, accepted, ack


def check_minted(servers: list[dict[str, Any]], turn: TurnServer, actor: str) -> dict[str, Any]:
    (entry,) = [s for s in servers if "username" in s]
    assert entry["urls"] == [turn.url]
    expiry, _, who = entry["username"].partition(":")
    assert who == actor
    assert abs(int(expiry) - (time.time() + TTL_S)) < 120  # expires with the TTL, not never
    assert entry["credential"] == credential_for(turn.secret, entry["username"])
    return entry


@pytest.mark.parametrize("hub_relays", [
    pytest.param(False, id="hub-host"),
    pytest.param(True, id="hub-relay-too", marks=pytest.mark.slow)])
async def test_a_relay_only_customer_completes_a_call_through_coturn(
        hub_factory: Any, turn: TurnServer, hub_relays: bool) -> None:
    hub = await hub_factory(turn_urls=[turn.url], turn_secret=turn.secret, turn_ttl_s=TTL_S,
                            turn_for_hub=hub_relays, vision_workers=0)
    agent, cust, call_id, accepted, ack = await answered(hub)
    # each participant gets its own credential, naming it, expiring
    mine = check_minted(accepted["ice_servers"], turn, f"customer.{call_id}")
    theirs = check_minted(ack["ice_servers"], turn, f"agent.{call_id}")
    assert mine["username"] != theirs["username"] or mine["credential"] != theirs["credential"]
    assert hub.settings.turn_secret not in repr(hub.settings)

    customer = ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240),
                          ice_servers=accepted["ice_servers"], relay_only=True,
                          host_addresses=None)
    staff = ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(320, 240),
                       ice_servers=[])
    try:
        offer = await customer.offer()
        candidates = [line for line in offer.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" typ relay" in c for c in candidates), candidates
        reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer",
                                                "sdp": offer})
        assert reply["ok"], reply
        if hub_relays:  # the hub's leg gathered a relay candidate with its own credential
            assert " typ relay" in reply["sdp"], reply["sdp"]
        await customer.accept(reply["sdp"])
        reply = await agent.call("media:offer", {"call_id": call_id, "type": "offer",
                                                 "sdp": await staff.offer()})
        assert reply["ok"], reply
        await staff.accept(reply["sdp"])
        await wait_until(lambda: customer.received.frames["video"] > 20
                         and customer.received.frames["audio"] > 50
                         and staff.received.frames["video"] > 20
                         and staff.received.frames["audio"] > 50,
                         60, "video and audio both ways with a relay-only customer")
        assert selected_local_candidate(customer) == "relay"
        # coturn authenticated the minted username (its log names the allocation's user)
        assert mine["username"] in turn.log_text()
        if hub_relays:
            assert f"hub.{call_id}" in turn.log_text()
        assert (await agent.call("call:hangup", {"call_id": call_id}))["ok"]
        await cust.expect("call:ended", timeout=10)
    finally:
        await customer.close()
        await staff.close()
        await cust.close()
        await agent.close()
    detail = await hub.call_detail(call_id)
    assert detail["call"]["end_reason"] == "completed", detail["call"]
    recordings = {r["participant"]: r for r in detail["recordings"]}
    assert recordings["customer"]["size_bytes"] > 0 and recordings["agent"]["size_bytes"] > 0


async def _allocate(turn: TurnServer, username: str, credential: str) -> None:
    transport, _ = await aioice.turn.create_turn_endpoint(
        asyncio.DatagramProtocol, server_addr=(turn.host, turn.port), username=username,
        password=credential)
    transport.close()


async def test_coturn_refuses_expired_and_forged_credentials(turn: TurnServer) -> None:
    username, credential = mint(turn.secret, "customer.c1", TTL_S)
    await _allocate(turn, username, credential)  # a fresh credential is accepted

    expired, expired_credential = mint(turn.secret, "customer.c1", TTL_S,
                                       now=time.time() - TTL_S - 60)
    forged_user, forged = mint("not-the-secret-" * 3, "customer.c1", TTL_S)
    longer = username.replace(username.split(":")[0], str(int(time.time()) + 10 * 86400))
    for user, cred in ((expired, expired_credential),  # expired: coturn checks the time
                       (forged_user, forged),  # another secret
                       (longer, credential)):  # a later expiry does not match the HMAC
        with pytest.raises(aioice.stun.TransactionFailed) as refused:
            await _allocate(turn, user, cred)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401, user
