"""The slow fuzz (issue 13): 20,000+ hostile messages across both namespaces, from the
owners of a live call, with 0 ``internal_error`` acknowledgements and 0 tracebacks."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import string
from typing import Any

import aiohttp
import pytest

from cloudcounter.signaling.schemas import AGENT_EVENTS, CUSTOMER_EVENTS
from tests.conftest import Hub
from tests.test_sdp_offers import MALFORMED, OFFER
from tests.test_security import raw_session

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MESSAGES = 20_000
ACK = re.compile(r"^43(?:/[a-z]+,)?(\d+)(\[.*\])$", re.S)
NASTY = ["\u0000", "\u001b[2J", "\ud800", "\u202e", "\U0001f600", "\u0085", "\r\n", "%00",
         "' OR 1=1 --", "../../etc/passwd", "<script>", "\\", "{}", "x" * 5000]


def value(rng: random.Random, ids: list[str], depth: int = 0) -> Any:
    kind = rng.randrange(11 if depth < 4 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 1, 5, 6, 2**63, -(2**64), 1e308, -0.0, 3.5])
    if kind == 2:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 60)))
    if kind == 3:
        return rng.choice(NASTY) * rng.randrange(1, 4)
    if kind == 4:
        return rng.choice(ids + ["call_" + "".join(rng.choice("0123456789abcdef")
                                                   for _ in range(16))])
    if kind == 5:
        return rng.choice(["card_loss", "car_loan", "available", "away", "offer", "resolved",
                           "escalated", "", "identity", OFFER])
    if kind == 6:
        return rng.choice(MALFORMED)[1]
    if kind in (7, 8):
        return [value(rng, ids, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["service", "call_id", "status", "type", "sdp", "outcome", "text", "notes", "then",
            "count", "__proto__", "", "token"]
    return {rng.choice(keys): value(rng, ids, depth + 1) for _ in range(rng.randrange(6))}


def message(rng: random.Random, events: list[str], ids: list[str]) -> list[Any]:
    """An event with a payload: mostly shaped like the event's schema, then spoiled."""
    event = rng.choice(events)
    schema = {**CUSTOMER_EVENTS, **AGENT_EVENTS}.get(event)
    if schema is not None and rng.random() < 0.6:
        payload = {name: value(rng, ids) for name in schema.model_fields}
        if "call_id" in payload and rng.random() < 0.7:
            payload["call_id"] = rng.choice(ids)
        for name in list(payload):
            if rng.random() < 0.2:
                del payload[name]
        return [event, payload]
    return [event] + [value(rng, ids) for _ in range(rng.randrange(3))]


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet: float,
                codes: dict[str, int]) -> int:
    acks = 0
    while not ws.closed:
        try:
            msg = await asyncio.wait_for(ws.receive(), quiet)
        except asyncio.TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        if msg.data == "2":
            await ws.send_str("3")
            continue
        m = ACK.match(msg.data)
        if m:
            acks += 1
            reply = json.loads(m.group(2))[0]
            code = "ok" if reply.get("ok") else reply["error"]["code"]
            codes[code] = codes.get(code, 0) + 1
    return acks


async def test_twenty_thousand_hostile_messages(hub_factory: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    hub: Hub = await hub_factory(vision_workers=0)
    caplog.set_level(logging.INFO)
    rng = random.Random(13)
    agent_token = await hub.agent_token("carol")
    namespaces = {"/customer": sorted(CUSTOMER_EVENTS) + ["call:accept", "connect", ""],
                  "/agent": sorted(AGENT_EVENTS) + ["call:request", "disconnect",
                                                     "x" * 100, "call:note\u0000"]}

    async def customer_token() -> str:
        return hub.customer_token("cus_demo_joe")

    async def staff_token() -> str:
        return agent_token

    tokens = {"/customer": customer_token, "/agent": staff_token}
    sessions = {ns: await raw_session(hub, ns, await tokens[ns]()) for ns in namespaces}
    # a live call between the two: call ids that resolve, owners that may act
    _, cws = sessions["/customer"]
    _, aws = sessions["/agent"]
    await aws.send_str('42/agent,1["agent:status",{"status":"available"}]')
    await cws.send_str('42/customer,2["call:request",{"service":"card_loss"}]')
    ids: list[str] = []
    for _ in range(200):
        msg = await asyncio.wait_for(cws.receive(), 10)
        if msg.type == aiohttp.WSMsgType.TEXT and '"call_id"' in msg.data:
            ids = re.findall(r"call_[0-9a-f]{16}", msg.data)[:1]
            break
    assert ids, "the call was not created"
    codes: dict[str, int] = {}
    sent = acked = reopened = garbage = 0
    names = list(namespaces)
    i = -1
    while sent < MESSAGES:
        i += 1
        ns = names[i % 2]
        http, ws = sessions[ns]
        if ws.closed:  # a protocol violation may close that one connection: open another
            await http.close()
            sessions[ns] = http, ws = await raw_session(hub, ns, await tokens[ns]())
            reopened += 1
        if rng.random() < 0.05:  # garbage at the packet level
            frame = rng.choice(["42", "4", f"42{ns},", f"42{ns},[", "49[]", "2probe",
                                f"43{ns},7[{{}}]", '42/nope,["x"]', "\u0000\ufffd",
                                f'42{ns},{{"a":1}}', "4" * 1000, f"42{ns},1" + "[" * 5000,
                                "4" + "[" * 5000, "bnot-base64!", "", "\u0000"])
            garbage += 1
        else:
            frame = f"42{ns},{i + 10}{json.dumps(message(rng, namespaces[ns], ids))}"
            sent += 1
        try:
            await ws.send_str(frame)
        except (aiohttp.ClientConnectionResetError, ConnectionResetError):
            continue
        if i % 50 == 49:
            for _, each in sessions.values():
                acked += await drain(each, 0.01, codes)
    for _, each in sessions.values():
        acked += await drain(each, 1.0, codes)
    for http, ws in sessions.values():
        await ws.close()
        await http.close()
    print(f"fuzz: {sent} messages and {garbage} garbage frames sent, {acked} acknowledged, "
          f"{reopened} reconnections, "
          f"codes {dict(sorted(codes.items(), key=lambda kv: -kv[1]))}")
    assert sent >= MESSAGES and acked >= MESSAGES * 0.9, (sent, acked, reopened)
    assert codes.get("internal_error", 0) == 0, codes
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, caplog.text[-3000:]
    async with aiohttp.ClientSession() as http:
        async with http.get(hub.url + "/healthz") as r:
            assert r.status == 200
