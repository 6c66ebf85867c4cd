"""Robustness at the edge (issue 13): refused input logged once, briefly, rate-limited;
slow bodies cut off; per-address limits on connections, requests and call requests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
import socketio

from cloudcounter.logs import RefusalLog
from cloudcounter.sim.client import Connection
from tests.conftest import Hub

pytestmark = pytest.mark.integration


def test_refusal_log_is_brief_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RefusalLog(logging.getLogger("t.refusals"), burst=5, window_s=10.0,
                     clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="t.refusals")
    for i in range(1000):
        log.refused("/customer call:request", "customer:cus_x@127.0.0.1", "invalid_message")
    assert len(caplog.records) == 5 and log.total == 1000
    now[0] = 11.0
    log.refused("x", "y", "z")
    assert "995 more refusals not logged" in caplog.records[5].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    assert all(len(r.getMessage()) < 200 for r in caplog.records)


async def test_hostile_messages_leave_a_few_short_log_lines(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = Connection(hub.url, "/customer", hub.customer_token())
    await c.connect()
    for i in range(300):
        await c.sio.emit("call:request", {"service": "x\u0000" * (i % 7), "junk": [i] * 50},
                         namespace="/customer")
    reply = await c.call("call:request", {"service": "card\u0000loss"})
    assert reply["error"]["code"] == "invalid_message"
    await c.close()
    mine = [r for r in caplog.records if r.name.startswith("cloudcounter")]
    assert len(mine) <= 25, [r.getMessage() for r in mine][:30]
    assert not [r for r in mine if r.exc_info], "no tracebacks for refused input"
    assert sum(len(r.getMessage()) for r in mine) < 5_000


async def test_a_slow_body_is_cut_off(hub_factory: Any) -> None:
    hub = await hub_factory(body_timeout_s=0.3)
    host, port = hub.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"user")
    await writer.drain()  # ...and never the rest
    head = await asyncio.wait_for(reader.read(4096), 30)
    assert await asyncio.wait_for(reader.read(), 30) == b""  # and the hub hangs up
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 408"), head[:100]
    assert b'"body_timeout"' in head


async def test_connections_per_address_are_limited(hub_factory: Any) -> None:
    hub = await hub_factory(max_connections_per_address=3)
    conns = [Connection(hub.url, "/customer", hub.customer_token(c))
             for c in ("cus_demo_barack", "cus_demo_joe", "cus_demo_eileen")]
    for c in conns:
        await c.connect()
    extra = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    extra.on("connect_error", lambda data: errors.append(data), namespace="/customer")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await extra.connect(hub.url, namespaces=["/customer"], transports=["websocket"],
                            auth={"token": hub.customer_token("cus_demo_grace")},
                            wait_timeout=5)
    await extra.disconnect()
    assert errors[0]["data"]["code"] == "too_many_connections"
    await conns[0].close()
    for _ in range(100):  # the slot frees when the hub has seen the disconnect
        if hub.ctx.security.connections.get("127.0.0.1", 0) < 3:
            break
        await asyncio.sleep(0.05)
    again = Connection(hub.url, "/customer", hub.customer_token("cus_demo_grace"))
    await again.connect()
    for c in (*conns[1:], again):
        await c.close()


async def test_requests_in_flight_per_address_are_limited(hub_factory: Any) -> None:
    hub = await hub_factory(max_requests_in_flight_per_address=2, body_timeout_s=5.0)
    host, port = hub.url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(2):  # two requests whose bodies are slow to come
        r, w = await asyncio.open_connection(host, int(port))
        w.write(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 50\r\n\r\n{")
        await w.drain()
        stalled.append((r, w))
    for _ in range(100):
        if hub.ctx.security.in_flight.get("127.0.0.1") == 2:
            break
        await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as http:
        async with http.get(hub.url + "/api/services") as resp:
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == "too_many_requests"
    for _, w in stalled:
        w.close()
        await w.wait_closed()
    for _ in range(100):
        if not hub.ctx.security.in_flight:
            break
        await asyncio.sleep(0.05)


async def test_call_requests_are_rate_limited(hub: Hub) -> None:
    """30 request/hang-up cycles in a row: the first ten pass, the rest are refused
    (retryable) until the minute has passed."""
    c = Connection(hub.url, "/customer", hub.customer_token())
    await c.connect()
    codes = []
    for _ in range(30):
        reply = await c.call("call:request", {"service": "card_loss"})
        if reply["ok"]:
            codes.append("ok")
            assert (await c.call("call:hangup", {"call_id": reply["call_id"]}))["ok"]
        else:
            codes.append(reply["error"]["code"])
            assert reply["error"]["retryable"] is True
            assert reply["error"]["details"]["retry_after_s"] >= 1
    assert codes == ["ok"] * 10 + ["rate_limited"] * 20
    hub.ctx.security.clock = lambda: 1e12  # a minute later (and more)
    reply = await c.call("call:request", {"service": "card_loss"})
    assert reply["ok"], reply
    await c.close()


async def test_frames_engineio_cannot_decode_do_not_leak_the_connection(hub: Hub) -> None:
    """A frame that made Engine.IO's receive loop raise left the agent online and its
    connection slot taken forever; now it is dropped and the socket lives on."""
    from tests.test_security import raw_session

    token = await hub.agent_token("carol")
    for frame in ("\u0000", "bnot-base64!", "4" + "[" * 5000, ""):
        http, ws = await raw_session(hub, "/agent", token)
        await ws.send_str(frame)
        await ws.send_str('42/agent,5["agent:status",{"status":"available"}]')
        reply = await asyncio.wait_for(ws.receive_str(), 10)
        while not reply.startswith("43/agent,5"):
            reply = await asyncio.wait_for(ws.receive_str(), 10)
        assert '"ok":true' in reply, (frame[:10], reply)
        await ws.close()
        await http.close()
        for _ in range(100):
            if not hub.ctx.security.connections:
                break
            await asyncio.sleep(0.05)
        assert not hub.ctx.security.connections, frame[:10]
