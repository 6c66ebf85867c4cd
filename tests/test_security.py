"""Authentication, authorisation and hostile input: refused with codes, hub stays up."""

from __future__ import annotations

import asyncio
import json
import random
import string
from typing import Any

import aiohttp
import pytest
import socketio

from cloudcounter.hub.auth import mint_customer_token
from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.client import Connection
from cloudcounter.sim.customer import run_customer
from tests.conftest import Hub

pytestmark = pytest.mark.integration
CALL_ID = "call_0123456789abcdef"


async def refused(hub: Hub, namespace: str, auth: Any) -> dict[str, Any]:
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", lambda data: errors.append(data), namespace=namespace)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(hub.url, namespaces=[namespace], transports=["websocket"],
                              auth=auth, wait_timeout=5)
    finally:
        await sio.disconnect()
    assert len(errors) == 1, errors
    return errors[0]["data"]


async def test_unauthenticated_connections_are_refused(hub: Hub) -> None:
    for ns in ("/customer", "/agent"):
        assert (await refused(hub, ns, None))["code"] == "unauthenticated"
        assert (await refused(hub, ns, {"token": "nonsense"}))["code"] == "unauthenticated"
        assert (await refused(hub, ns, {"token": 42}))["code"] == "unauthenticated"
    forged = mint_customer_token("x" * 40, "cus_demo_barack", 60)
    assert (await refused(hub, "/customer", {"token": forged}))["code"] == "unauthenticated"
    expired = mint_customer_token(hub.settings.customer_token_secret, "cus_demo_barack", -30)
    assert (await refused(hub, "/customer", {"token": expired}))["code"] == "token_expired"
    ghost = hub.customer_token("cus_nobody")
    assert (await refused(hub, "/customer", {"token": ghost}))["code"] == "unknown_customer"
    old = {"token": hub.customer_token(), "protocol": 99}
    assert (await refused(hub, "/customer", old))["code"] == "unsupported_protocol"


async def test_roles_are_checked_on_connect(hub: Hub) -> None:
    # a customer token on the agent namespace, an auditor on the agent console
    assert (await refused(hub, "/agent", {"token": hub.customer_token()}))["code"] == \
        "wrong_role"
    auditor = await hub.agent_token("audrey")
    assert (await refused(hub, "/agent", {"token": auditor}))["code"] == "wrong_role"
    # a staff token is not a customer token
    alice = await hub.agent_token("alice")
    assert (await refused(hub, "/customer", {"token": alice}))["code"] == "wrong_role"


async def test_customer_cannot_use_agent_events_or_touch_another_call(hub: Hub) -> None:
    mine = Connection(hub.url, "/customer", hub.customer_token("cus_demo_barack"))
    other = Connection(hub.url, "/customer", hub.customer_token("cus_demo_joe"))
    await mine.connect()
    await other.connect()
    call_id = (await other.call("call:request", {"service": "card_loss"}))["call_id"]
    for event in ("call:accept", "agent:status", "call:wrapup", "queue:snapshot"):
        reply = await mine.call(event, {"call_id": call_id})
        assert reply["error"]["code"] == "unknown_event", event
    reply = await mine.call("call:hangup", {"call_id": call_id})
    assert reply["error"]["code"] == "forbidden"
    reply = await mine.call("media:offer", {"call_id": call_id, "type": "offer",
                                            "sdp": "v=0\r\n" * 5})
    assert reply["error"]["code"] == "unknown_call"
    # the other customer's call is untouched
    assert (await other.call("call:hangup", {"call_id": call_id}))["ok"]
    # a token limited to one service
    limited = Connection(hub.url, "/customer",
                         hub.customer_token("cus_demo_eileen", services=["card_loss"]))
    await limited.connect()
    reply = await limited.call("call:request", {"service": "car_loan"})
    assert reply["error"]["code"] == "service_not_allowed"
    reply = await limited.call("call:request", {"service": "no_such_service"})
    assert reply["error"]["code"] == "unknown_service"
    for c in (mine, other, limited):
        await c.close()


async def test_agent_cannot_act_on_a_call_not_offered_to_it(hub: Hub) -> None:
    alice = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    bob = Connection(hub.url, "/agent", await hub.agent_token("bob"))
    await alice.connect()
    await bob.connect()
    await alice.call("agent:status", {"status": "available"})
    cust = Connection(hub.url, "/customer", hub.customer_token())
    await cust.connect()
    call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
    await alice.expect("call:offer", timeout=5)
    assert (await bob.call("call:accept", {"call_id": call_id}))["error"]["code"] == \
        "offer_expired"
    assert (await bob.call("call:hangup", {"call_id": call_id}))["error"]["code"] == "forbidden"
    assert (await bob.call("call:note", {"call_id": call_id, "text": "x"}))["error"]["code"] == \
        "unknown_call"
    assert (await bob.call("call:wrapup", {"call_id": call_id, "outcome": "resolved"}))[
        "error"]["code"] == "no_wrap_up"
    assert (await alice.call("call:accept", {"call_id": call_id}))["ok"]
    for c in (alice, bob, cust):
        await c.close()


@pytest.mark.parametrize("payload,code", [
    ("just a string", "invalid_message"),
    (None, "invalid_message"),
    (17, "invalid_message"),
    ([{"service": "card_loss"}], "invalid_message"),
    ({"service": ["card_loss"]}, "invalid_message"),
    ({"service": "card_loss", "priority": 9}, "invalid_message"),
    ({"service": "x" * 70_000}, "message_too_large"),
])
async def test_malformed_messages_get_codes_and_the_connection_stays(
        hub: Hub, payload: Any, code: str) -> None:
    c = Connection(hub.url, "/customer", hub.customer_token())
    await c.connect()
    reply = await c.sio.call("call:request", payload, namespace="/customer", timeout=5)
    assert reply["ok"] is False and reply["error"]["code"] == code
    ok = await c.call("call:request", {"service": "card_loss"})
    assert ok["ok"] and c.sio.connected
    await c.close()


async def raw_session(hub: Hub, namespace: str, token: str) -> tuple[aiohttp.ClientSession,
                                                                   aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(hub.url + "/socket.io/?EIO=4&transport=websocket")
    opening = await ws.receive_str()
    assert opening.startswith("0{")
    await ws.send_str(f"40{namespace},{json.dumps({'token': token})}")
    reply = await ws.receive_str()
    while reply.startswith(f"42{namespace},"):  # events sent during connect come first
        reply = await ws.receive_str()
    assert reply.startswith(f"40{namespace},"), reply
    return http, ws


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 1e308, -0.0])
    if kind == 2:
        return "".join(rng.choice(string.printable + "\u0000\u202e\U0001f600")
                       for _ in range(rng.randrange(0, 80)))
    if kind == 3:
        return "call_" + "".join(rng.choice("0123456789abcdef") for _ in range(16))
    if kind == 4:
        return rng.choice(["card_loss", "available", "offer", "resolved", ""])
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["service", "call_id", "status", "type", "sdp", "outcome", "text", "notes", "then",
            "__proto__", "constructor", ""]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet: float) -> int:
    """Read what the hub sent until it is quiet; count acknowledgements."""
    acks = 0
    while not ws.closed:
        try:
            msg = await asyncio.wait_for(ws.receive(), quiet)
        except asyncio.TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith("43"):
            acks += 1
        elif msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
            await ws.send_str("3")  # answer Engine.IO pings
        elif msg.type != aiohttp.WSMsgType.TEXT:
            break
    return acks


async def test_hub_survives_thousands_of_random_messages(hub: Hub) -> None:
    rng = random.Random(20261125)
    events = ["call:request", "call:hangup", "media:offer", "agent:status", "call:accept",
              "call:decline", "call:wrapup", "call:note", "queue:snapshot", "connect",
              "disconnect", "", "x" * 300, "call:request\u0000"]
    sessions = [await raw_session(hub, "/customer", hub.customer_token()),
                await raw_session(hub, "/agent", await hub.agent_token("carol"))]
    sent = 0
    acked = 0
    reopened = 0
    for i in range(3000):
        http, ws = sessions[i % 2]
        ns = "/customer" if i % 2 == 0 else "/agent"
        if ws.closed:  # a protocol violation may close that one connection: open a new one
            await http.close()
            token = hub.customer_token() if ns == "/customer" else await hub.agent_token("carol")
            sessions[i % 2] = http, ws = await raw_session(hub, ns, token)
            reopened += 1
        if rng.random() < 0.1:  # garbage at the Engine.IO / Socket.IO packet level
            frame = rng.choice(["42", "4", "42/customer,", "42/agent,[", "49[]", "2probe",
                                "43/customer,7[{}]", "42/nope,[\"x\"]", "\u0000\ufffd",
                                '42/customer,{"a":1}', "4" * 1000])
        else:
            args = [rng.choice(events)] + [random_json(rng) for _ in range(rng.randrange(3))]
            frame = f"42{ns},{i}{json.dumps(args)}"
            sent += 1
        try:
            await ws.send_str(frame)
        except aiohttp.ClientConnectionResetError:
            continue
        if i % 25 == 24:
            for _, each in sessions:
                acked += await drain(each, quiet=0.02)
    for _, each in sessions:
        acked += await drain(each, quiet=0.5)
    for http, ws in sessions:
        await ws.close()
        await http.close()
    assert sent > 2500 and acked > 1000, (sent, acked, reopened)
    assert hub.ctx.sio.refused_packets > 0  # the hardened packet edge saw the garbage
    # the hub is still up and still does its job
    async with aiohttp.ClientSession() as http:
        async with http.get(hub.url + "/healthz") as r:
            assert r.status == 200
    ready = asyncio.Event()
    agent = asyncio.create_task(run_agent(hub.url, await hub.agent_token("alice"), calls=1,
                                          accept_delay=0, ready=ready))
    await ready.wait()
    res = await run_customer(hub.url, hub.customer_token("cus_demo_grace"), "card_loss", 0.2)
    assert res.outcome == "completed", res
    assert (await agent).calls == 1


async def test_http_auth_and_roles(hub: Hub) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(hub.url + "/api/login",
                             json={"username": "alice", "password": "wrong-password"}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "bad_credentials"
        async with http.post(hub.url + "/api/login", data=b"{not json",
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_message"
        async with http.post(hub.url + "/api/login", data=b"{not json") as r:
            assert r.status == 415 and (await r.json())["error"]["code"] == "json_required"
        async with http.post(hub.url + "/api/login", json={"username": "a", "password": "b",
                                                           "role": "admin"}) as r:
            assert r.status == 400
        async with http.post(hub.url + "/api/login", data=b"x" * 300_000) as r:
            assert r.status == 413
        for path in ("/api/calls", "/api/calls/" + CALL_ID, "/api/recordings/1", "/api/me",
                     "/api/queue"):
            async with http.get(hub.url + path) as r:
                assert r.status == 401, path
                assert (await r.json())["error"]["code"] == "unauthenticated"
    agent = await hub.agent_token("alice")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {agent}"}) as http:
        for path in ("/api/calls", "/api/calls/" + CALL_ID, "/api/recordings/1"):
            async with http.get(hub.url + path) as r:
                assert r.status == 403, path
        async with http.get(hub.url + "/api/me") as r:
            assert (await r.json())["role"] == "agent"
    auditor = await hub.agent_token("audrey")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {auditor}"}) as http:
        async with http.get(hub.url + "/api/calls?date_from=yesterday") as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_query"
        async with http.get(hub.url + "/api/calls") as r:
            assert r.status == 200 and (await r.json())["total"] == 0


async def test_demo_endpoints_are_off_outside_demo_mode(hub_factory) -> None:  # type: ignore[no-untyped-def]
    hub = await hub_factory(demo=False, secret_key="k" * 40, customer_token_secret="c" * 40)
    async with aiohttp.ClientSession() as http:
        async with http.post(hub.url + "/api/demo/customer-token",
                             json={"customer_id": "cus_demo_barack"}) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "demo_disabled"
