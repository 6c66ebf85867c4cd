"""Operations through a running hub: a call's lifecycle reaches a webhook subscriber; the
webhook admin API refuses bad values and changes nothing; /metrics is protected, parses
with the Prometheus text parser, and says what happened (media legs included)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.customer import run_customer
from cloudcounter.signaling.schemas import PROTOCOL_TEXT
from tests.conftest import Hub, wait_until
from tests.test_admin_api import Admin, snapshot
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration
TOKEN = "metrics-token-for-the-tests-0123456789"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def one_call(hub: Hub, seconds: float = 0.3, media: bool = False) -> None:
    customer_media = agent_media = None
    if media:
        from cloudcounter.sim.media import SimMedia
        customer_media = SimMedia("customer")
        agent_media = lambda: SimMedia("agent")  # noqa: E731
    ready = asyncio.Event()
    agent = asyncio.create_task(run_agent(hub.url, await hub.agent_token("alice"), calls=1,
                                          accept_delay=0, ready=ready, steps="none",
                                          outcome="escalated", media_factory=agent_media))
    await ready.wait()
    res = await run_customer(hub.url, hub.customer_token(), "card_loss", seconds=seconds,
                             media=customer_media)
    assert res.outcome == "completed", res
    assert (await agent).calls == 1


async def test_a_calls_lifecycle_reaches_the_subscriber(hub_factory: Any,
                                                        receiver: Receiver) -> None:
    hub = await hub_factory(vision_workers=0)
    admin = Admin(hub, await hub.agent_token("admin"))
    status, reply = await admin.call("POST", "/api/admin/webhooks", {
        "name": "CRM", "url": receiver.url, "event_types": ["call.*", "risk.changed"]})
    assert status == 201
    receiver.secret = reply["secret"]
    await one_call(hub)
    await hub.ctx.journal.flush()
    wanted = {"call.requested", "call.answered", "call.ended", "call.wrapped_up"}
    await wait_until(lambda: wanted <= {e.type for e in receiver.events.values()}, 15,
                     "the call's lifecycle at the receiver")
    got = {e.type: e.body["data"] for e in receiver.events.values()}
    assert all(e.signed for e in receiver.requests)
    call_id = got["call.requested"]["call_id"]
    assert got["call.requested"]["customer_id"] == "cus_demo_barack"
    assert got["call.answered"]["agent"] == "alice" and got["call.ended"]["reason"] == "completed"
    assert got["call.wrapped_up"]["outcome"] == "escalated"
    assert {d["service"] for d in got.values()} == {"card_loss"}
    # each event is one of the call's timeline: the same transaction wrote both
    detail = await hub.call_detail(call_id)
    seqs = {e["seq"]: e["kind"] for e in detail["timeline"]}
    assert all(seqs[d["timeline_seq"]] == t for t, d in got.items() if t != "risk.changed")
    status, reply = await admin.call("GET", "/api/admin/webhooks")
    assert reply["webhooks"][0]["health"]["last_success_at"]


INVALID_HOOKS: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/api/admin/webhooks", {"name": "x", "url": "ftp://host/x", "event_types": ["*"]},
     400, "invalid_url"),
    ("POST", "/api/admin/webhooks", {"name": "x", "url": "http://crm.bank.example/hooks",
                                     "event_types": ["*"]}, 400, "invalid_url"),
    ("POST", "/api/admin/webhooks", {"name": "x", "url": "https://u:p@crm.example/h",
                                     "event_types": ["*"]}, 400, "invalid_url"),
    ("POST", "/api/admin/webhooks", {"name": "x", "url": "https://crm.example:99999/h",
                                     "event_types": ["*"]}, 400, "invalid_url"),
    ("POST", "/api/admin/webhooks", {"name": "x", "url": "https://crm.example/h",
                                     "event_types": ["calls.*"]}, 400, "unknown_event_type"),
    ("POST", "/api/admin/webhooks", {"name": "x", "url": "https://crm.example/h",
                                     "event_types": ["webhook.test"]}, 400,
     "unknown_event_type"),
    ("POST", "/api/admin/webhooks", {"name": "x", "url": "https://crm.example/h",
                                     "event_types": []}, 400, "invalid_message"),
    ("POST", "/api/admin/webhooks", {"name": "", "url": "https://crm.example/h",
                                     "event_types": ["*"]}, 400, "invalid_message"),
    ("PATCH", "/api/admin/webhooks/1", {"url": "gopher://x"}, 400, "invalid_url"),
    ("PATCH", "/api/admin/webhooks/1", {"active": "yes please"}, 400, "invalid_message"),
    ("PATCH", "/api/admin/webhooks/77", {"name": "n"}, 404, "unknown_webhook"),
    ("PATCH", "/api/admin/webhooks/99999999999999999999", {"name": "n"}, 404, "not_found"),
    ("DELETE", "/api/admin/webhooks/77", None, 404, "unknown_webhook"),
    ("POST", "/api/admin/webhooks/77/test", None, 404, "unknown_webhook"),
    ("GET", "/api/admin/webhooks/1/deliveries?state=lost", None, 400, "invalid_query"),
    ("GET", "/api/admin/webhooks/deliveries/5", None, 404, "unknown_delivery"),
    ("POST", "/api/admin/webhooks/deliveries/5/redeliver", None, 404, "unknown_delivery"),
]


async def test_webhook_administration(hub_factory: Any, receiver: Receiver) -> None:
    hub = await hub_factory(vision_workers=0)
    admin = Admin(hub, await hub.agent_token("admin"))
    status, reply = await admin.call("POST", "/api/admin/webhooks", {
        "name": "Core", "url": receiver.url, "event_types": ["finding.*"]})
    assert status == 201 and reply["secret"].startswith("whsec_")
    assert "secret" not in reply["webhook"]
    receiver.secret = reply["secret"]
    before = await snapshot(hub)
    for method, path, body, status, code in INVALID_HOOKS:
        got, answer = await admin.call(method, path, body)
        assert (got, answer["error"]["code"]) == (status, code), (path, body, answer)
    assert await snapshot(hub) == before
    # a test event goes to this subscription only, whatever its filter; the log shows it
    status, reply = await admin.call("POST", "/api/admin/webhooks/1/test")
    assert status == 202
    await wait_until(lambda: reply["event_id"] in receiver.events, 10, "the test event")

    async def recorded() -> bool:  # the receiver answers before the hub records it
        listing = (await admin.call("GET", "/api/admin/webhooks/1/deliveries"))[1]
        return listing["deliveries"][0]["state"] == "delivered"
    await wait_until(recorded, 10, "the delivery recorded")
    status, listing = await admin.call("GET", "/api/admin/webhooks/1/deliveries")
    delivery = listing["deliveries"][0]
    assert delivery["state"] == "delivered" and delivery["event_type"] == "webhook.test"
    status, detail = await admin.call("GET", f"/api/admin/webhooks/deliveries/"
                                      f"{delivery['delivery_id']}")
    assert detail["delivery"]["log"][0]["status"] == 204
    status, again = await admin.call(
        "POST", f"/api/admin/webhooks/deliveries/{delivery['delivery_id']}/redeliver")
    assert status == 200
    await wait_until(lambda: len(receiver.requests) == 2, 10, "the redelivery")
    assert receiver.requests[1].body["id"] == reply["event_id"]  # the same event id
    old = receiver.secret
    status, rotated = await admin.call("POST", "/api/admin/webhooks/1/rotate-secret")
    assert rotated["secret"] != old
    status, changed = await admin.call("PATCH", "/api/admin/webhooks/1",
                                       {"active": False, "event_types": ["call.ended"]})
    assert changed["webhook"]["active"] is False
    status, gone = await admin.call("DELETE", "/api/admin/webhooks/1")
    assert status == 200 and (await admin.call("GET", "/api/admin/webhooks"))[1]["webhooks"] == []
    status, log = await admin.call("GET", "/api/admin/security-events?kind=admin.webhook*")
    assert [e["kind"] for e in reversed(log["events"])] == [
        "admin.webhook_created", "admin.webhook_tested", "admin.webhook_redelivered",
        "admin.webhook_secret_rotated", "admin.webhook_updated", "admin.webhook_deleted"]


async def scrape(hub: Hub, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(hub.url + "/metrics") as r:
            return r.status, await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_are_off_by_default(hub: Hub) -> None:
    status, body = await scrape(hub, None)
    assert status == 404 and "metrics_disabled" in body


async def test_metrics_need_the_token_and_parse(hub_factory: Any) -> None:
    hub = await hub_factory(vision_workers=0, metrics_token=TOKEN)
    assert (await scrape(hub, None))[0] == 401
    assert (await scrape(hub, "wrong-token"))[0] == 401
    await hub.ctx.security.log.flush()
    await one_call(hub, seconds=2.5, media=True)
    deadline = asyncio.get_running_loop().time() + 15
    while True:  # the recordings are closed as the call ends, not before the wrap-up
        await hub.ctx.journal.flush()
        status, text = await scrape(hub)
        assert status == 200
        found = samples(text)
        if value(found, "cloudcounter_recordings_total") == 2 or \
                asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert value(found, "cloudcounter_calls_requested_total", service="card_loss") == 1
    assert value(found, "cloudcounter_calls_answered_total", service="card_loss") == 1
    assert value(found, "cloudcounter_calls_answered_within_target_total",
                 service="card_loss") == 1
    assert value(found, "cloudcounter_calls_ended_total", service="card_loss",
                 reason="completed") == 1
    assert value(found, "cloudcounter_queue_wait_seconds_count", service="card_loss",
                 outcome="answered") == 1
    assert value(found, "cloudcounter_offer_results_total", service="card_loss",
                 result="accepted") == 1
    assert value(found, "cloudcounter_recordings_total") == 2
    assert value(found, "cloudcounter_recording_bytes_total") > 0
    assert value(found, "cloudcounter_queue_waiting", service="card_loss") == 0
    assert value(found, "cloudcounter_journal_backlog") >= 0  # wrap-up events may be on the way
    assert ("cloudcounter_event_loop_lag_seconds_count", ()) in found
    assert ("cloudcounter_agents", (("state", "wrap_up"),)) in found or \
        ("cloudcounter_agents", (("state", "available"),)) in found
    assert value(found, "cloudcounter_build_info", node=hub.settings.node_id,
                 protocol=PROTOCOL_TEXT) == 1


async def test_media_legs_are_measured_during_a_call(hub_factory: Any) -> None:
    hub = await hub_factory(vision_workers=0, metrics_token=TOKEN)
    call = asyncio.create_task(one_call(hub, seconds=8.0, media=True))
    legs: dict[str, float] = {}

    async def measured() -> bool:
        found = samples((await scrape(hub))[1])
        legs.clear()
        for (name, labels), v in found.items():
            d = dict(labels)
            if name.startswith("cloudcounter_media_") and d.get("participant") == "customer":
                legs[name + ":" + d.get("kind", "")] = v
        return legs.get("cloudcounter_media_frames_received_total:", 0) > 0 and \
            "cloudcounter_media_rtt_seconds:" in legs
    deadline = asyncio.get_running_loop().time() + 20
    while not await measured():
        assert asyncio.get_running_loop().time() < deadline, legs
        await asyncio.sleep(0.2)
    await call
    assert legs["cloudcounter_media_received_bytes_total:"] > 0
    assert legs["cloudcounter_media_packets_received_total:video"] > 0
    assert "cloudcounter_media_jitter_seconds:audio" in legs
    assert 0 <= legs["cloudcounter_media_rtt_seconds:"] < 1.0  # loopback
    status, text = await scrape(hub)
    assert not [k for k in samples(text) if k[0].startswith("cloudcounter_media_frames")]


async def test_metrics_on_a_separate_listener(hub_factory: Any) -> None:
    from tests.webhook_receiver import free_port
    port = free_port()
    hub = await hub_factory(vision_workers=0, metrics_address=f"127.0.0.1:{port}")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            assert samples(await r.text())
    assert (await scrape(hub, None))[0] == 404  # not on the public port


async def test_the_grafana_dashboard_uses_metrics_the_hub_exports(hub_factory: Any) -> None:
    import json
    import re

    from tests.conftest import ROOT
    hub = await hub_factory(vision_workers=1, metrics_token=TOKEN)
    await one_call(hub)
    await hub.ctx.journal.flush()
    families = {f.name for f in text_string_to_metric_families((await scrape(hub))[1])}
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|total|count|sum)$", "", m)
            for e in exprs for m in re.findall(r"\bcloudcounter_[a-z_]+", e)}
    # media-per-leg families exist only while a call has media (test above)
    media = {n for n in used
             if n.startswith("cloudcounter_media_") and n != "cloudcounter_media_segments"}
    assert not used - families - media, sorted(used - families - media)
    assert len(exprs) >= 30
