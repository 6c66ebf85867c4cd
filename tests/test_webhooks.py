"""Webhooks: events, signatures, and delivery from the durable outbox against a real local
HTTP receiver that fails, is slow, refuses one event, or is down (for an hour of the
injected clock); a restart resumes delivery; a call's lifecycle reaches the receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.migrate import upgrade_engine
from cloudcounter.db.ops_models import WebhookAttempt, WebhookDelivery
from cloudcounter.db.outbox import retry_delay
from cloudcounter.webhooks import signing, subscriptions
from cloudcounter.webhooks.delivery import DeliveryConfig, WebhookDispatcher, classify
from cloudcounter.webhooks.events import (
    CallFacts, EventType, NewEvent, from_timeline, matches, valid_pattern,
)
from cloudcounter.webhooks.outbox import WebhookPublisher
from tests.conftest import wait_until
from tests.webhook_receiver import Receiver


# -- pure parts ------------------------------------------------------------------------
def test_signatures_verify_and_refuse_tampering_and_replays() -> None:
    body = b'{"id":"evt_1"}'
    now = 1_800_000_000
    value = signing.header(["whsec_a"], now, body)
    assert signing.verify("whsec_a", value, body, now=now + 10)
    assert not signing.verify("whsec_b", value, body, now=now)
    assert not signing.verify("whsec_a", value, body + b" ", now=now)
    assert not signing.verify("whsec_a", value, body, now=now + 301)  # a replay, later
    rotating = signing.header(["whsec_new", "whsec_old"], now, body)
    assert signing.verify("whsec_old", rotating, body, now=now)
    assert signing.verify("whsec_new", rotating, body, now=now)
    assert not signing.verify("whsec_a", "v1=00,t=x", body, now=now)


def test_event_filters() -> None:
    assert matches(["call.*"], "call.ended") and not matches(["call.*"], "check.completed")
    assert matches(["*"], "finding.recorded") and matches(["risk.changed"], "risk.changed")
    assert valid_pattern("callback.*") and valid_pattern("check.completed")
    assert not valid_pattern("webhook.test") and not valid_pattern("calls.*")


def test_timeline_events_carry_identifiers_and_verdicts_only() -> None:
    at = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
    facts = CallFacts("card_loss", "cus_1", "alice")
    wrapped = from_timeline({"call_id": "call_" + "1" * 16, "seq": 9, "actor": "agent:alice",
                             "kind": "call.wrapped_up", "at": at, "payload": {
                                 "outcome": "resolved", "notes": "customer's secret story",
                                 "business_state": "completed",
                                 "risk": {"score": 30, "level": "medium", "rules_version": 1,
                                          "reasons": [{"rule": "record_high_risk", "text": "x",
                                                       "weight": 30}]}}}, facts)
    assert wrapped is not None and wrapped.type == "call.wrapped_up"
    body = json.loads(wrapped.body())
    assert body["data"] == {"call_id": "call_" + "1" * 16, "service": "card_loss",
                            "customer_id": "cus_1", "agent": "alice", "timeline_seq": 9,
                            "outcome": "resolved", "business_state": "completed",
                            "late": False, "skipped_steps": [],
                            "risk": {"score": 30, "level": "medium", "rules_version": 1,
                                     "reasons": ["record_high_risk"]}}
    assert "secret story" not in wrapped.body() and body["created_at"].startswith("2026-12-01")
    assert from_timeline({"call_id": "c", "kind": "call.note", "payload": {}}, facts) is None
    requested = from_timeline({"call_id": "c", "kind": "call.requested", "seq": 1,
                               "actor": "customer:cus_9", "payload": {"service": "car_loan",
                                                                      "priority": 2}},
                              CallFacts())
    assert requested is not None
    assert json.loads(requested.body())["data"]["customer_id"] == "cus_9"


def test_status_classes_and_the_retry_schedule() -> None:
    assert classify(204) == (True, False) and classify(None) == (False, True)
    assert classify(503) == (False, True) and classify(429) == (False, True)
    assert classify(301) == (False, True) and classify(400) == (False, False)
    mid = [retry_delay(n, 5, 600, rand=lambda: 0.5) for n in range(1, 10)]
    assert mid == [5, 10, 20, 40, 80, 160, 320, 600, 600]


# -- delivery --------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sm(tmp_path: Path) -> AsyncIterator[Any]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/w.db")
    await upgrade_engine(engine)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()


async def subscribe(sm: Any, receiver: Receiver, types: list[str] | None = None) -> int:
    async with sm() as s, s.begin():
        row, secret = await subscriptions.create(s, name="core banking", url=receiver.url,
                                                 event_types=types or ["*"], actor="test")
    receiver.secret = secret
    return row.id


def events(n: int, kind: str = EventType.CALL_ENDED.value) -> list[NewEvent]:
    return [NewEvent(kind, {"call_id": f"call_{i:016x}", "reason": "completed"},
                     call_id=f"call_{i:016x}") for i in range(n)]


async def drain(d: WebhookDispatcher, until: Any, rounds: int = 200) -> None:
    for _ in range(rounds):
        if until():
            return
        await d.run_round()
    assert until(), "delivery did not finish"


def dispatcher(sm: Any, clock: Any = time.time, **config: Any) -> WebhookDispatcher:
    base = dict(timeout_s=1.0, retry_base_s=5.0, retry_max_s=600.0)
    base.update(config)
    return WebhookDispatcher(sm, DeliveryConfig(**base), clock=clock)


async def states(sm: Any) -> dict[str, int]:
    async with sm() as s:
        rows = (await s.execute(select(WebhookDelivery.state, func.count())
                                .group_by(WebhookDelivery.state))).all()
    return {k: v for k, v in rows}


async def test_deliveries_are_signed_and_carry_their_event_id(sm: Any,
                                                              receiver: Receiver) -> None:
    await receiver.start()
    await subscribe(sm, receiver, ["call.*"])
    published = events(3) + events(1, EventType.CHECK_COMPLETED.value)
    assert await WebhookPublisher(sm).publish(published) == 3  # check.* not subscribed
    d = dispatcher(sm)
    await d.start()
    try:
        await wait_until(lambda: len(receiver.events) == 3, 10, "three deliveries")
        # the receiver answers before the dispatcher records the outcome
        async def settled() -> bool:
            return await states(sm) == {"delivered": 3}
        await wait_until(settled, 10, "three deliveries recorded")
    finally:
        await d.stop()
    got = receiver.requests[0]
    assert got.signed and got.headers["CloudCounter-Event-Type"] == "call.ended"
    assert got.headers["CloudCounter-Event-Id"] == got.body["id"]
    assert set(receiver.events) == {e.id for e in published[:3]}
    assert await states(sm) == {"delivered": 3}


async def test_a_receiver_down_for_an_hour_loses_nothing(sm: Any, receiver: Receiver) -> None:
    await subscribe(sm, receiver)
    published = events(30)
    await WebhookPublisher(sm).publish(published)
    clock = Clock()
    d = dispatcher(sm, clock)
    await d.start()
    await d.loop.stop()  # rounds are driven by hand, on the injected clock
    start = clock.now
    while clock.now - start < 3600:  # the receiver is down (nothing listens on its port)
        await d.run_round()
        clock.now += 30
    async with sm() as s:
        attempts = await s.scalar(select(func.count()).select_from(WebhookAttempt))
    # one probe per back-off step (5, 10, 20 ... 600 s): about a dozen, not 30 per step
    assert 8 <= attempts <= 16, attempts
    assert await states(sm) == {"pending": 30}
    await receiver.start()
    clock.now += 601  # past the longest back-off
    await drain(d, lambda: len(receiver.events) == 30)
    await d.stop()
    assert set(receiver.events) == {e.id for e in published}
    assert await states(sm) == {"delivered": 30}


async def test_a_failing_then_slow_receiver_gets_everything_at_least_once(
        sm: Any, receiver: Receiver) -> None:
    receiver.mode = "fail"
    await receiver.start()
    await subscribe(sm, receiver)
    published = events(5)
    await WebhookPublisher(sm).publish(published)
    clock = Clock()
    d = dispatcher(sm, clock, timeout_s=0.3)
    await d.start()
    await d.loop.stop()
    await d.run_round()  # 503: the endpoint backs off
    assert receiver.requests and all(r.signed for r in receiver.requests)
    assert await states(sm) == {"pending": 5}
    receiver.mode, receiver.slow_s = "slow", 1.0  # answers after the hub's timeout
    clock.now += 601
    seen = len(receiver.requests)
    await d.run_round()
    assert len(receiver.requests) > seen and await states(sm) == {"pending": 5}
    receiver.mode = "ok"
    for _ in range(50):
        if await states(sm) == {"delivered": 5}:
            break
        clock.now += 601
        await d.run_round()
    await d.stop()
    assert set(receiver.events) == {e.id for e in published}  # deduplicated by id
    assert await states(sm) == {"delivered": 5}
    detail = await subscriptions.delivery_detail(sm, 1)
    assert detail["log"][0]["status"] == 503 and detail["log"][-1]["status"] == 204
    assert any(a["error"] and "no answer" in a["error"] for a in detail["log"])


async def test_an_event_the_receiver_refuses_does_not_hold_back_the_others(
        sm: Any, receiver: Receiver) -> None:
    await receiver.start()
    await subscribe(sm, receiver)
    published = events(4)
    receiver.refuse = {published[0].id}
    await WebhookPublisher(sm).publish(published)
    d = dispatcher(sm)
    await d.start()
    await d.loop.stop()
    await drain(d, lambda: len(receiver.events) == 3)
    await d.stop()
    assert await states(sm) == {"delivered": 3, "pending": 1}
    sub = (await subscriptions.listing(sm))[0]
    assert sub["health"]["consecutive_failures"] == 0  # the endpoint itself is fine


async def test_given_up_after_the_maximum_age_and_redelivered(sm: Any,
                                                              receiver: Receiver) -> None:
    await subscribe(sm, receiver)
    await WebhookPublisher(sm).publish(events(2))
    clock = Clock()
    d = dispatcher(sm, clock, max_age_s=3600.0)
    await d.start()
    await d.loop.stop()
    await d.run_round()
    clock.now += 3601
    await d.run_round()
    assert await states(sm) == {"failed": 2} and d.given_up == 2
    await receiver.start()
    async with sm() as s, s.begin():
        await subscriptions.redeliver(s, 1)
    async with sm() as s, s.begin():
        with pytest.raises(Exception) as err:
            await subscriptions.redeliver(s, 1)
    assert getattr(err.value, "code", "") == "delivery_pending"
    clock.now = time.time()
    await drain(d, lambda: len(receiver.events) == 1)
    await d.stop()
    assert await states(sm) == {"failed": 1, "delivered": 1}


async def test_a_restart_resumes_delivery_and_a_dead_hubs_lease_runs_out(
        sm: Any, receiver: Receiver) -> None:
    await subscribe(sm, receiver)
    published = events(3)
    await WebhookPublisher(sm).publish(published)
    clock = Clock()
    first = dispatcher(sm, clock)
    await first.start()
    await first.loop.stop()
    # the first hub claims a delivery and dies before settling it (no release)
    row_id = (await first.outbox.due(clock(), 1))[0]
    assert await first.outbox.claim(row_id, clock(), first.config.lease_s) is not None
    first._held.clear()
    await first.stop()
    await receiver.start()
    second = dispatcher(sm, clock)
    await second.start()
    await second.loop.stop()
    await drain(second, lambda: len(receiver.events) == 2)
    assert row_id not in {r.body["id"] for r in receiver.requests}
    clock.now += second.config.lease_s + 1  # the dead hub's lease has run out
    await drain(second, lambda: len(receiver.events) == 3)
    await second.stop()
    assert set(receiver.events) == {e.id for e in published}


async def test_secret_rotation_signs_with_both_for_a_day(sm: Any, receiver: Receiver) -> None:
    await receiver.start()
    sub_id = await subscribe(sm, receiver)
    old = receiver.secret
    async with sm() as s, s.begin():
        new = await subscriptions.rotate_secret(s, sub_id)
    await WebhookPublisher(sm).publish(events(1))
    d = dispatcher(sm)
    await d.start()
    await wait_until(lambda: receiver.requests, 10, "a delivery")
    await d.stop()
    raw = json.dumps(receiver.requests[0].body, separators=(",", ":")).encode()
    header = receiver.requests[0].headers[signing.HEADER]
    assert signing.verify(new, header, raw) and signing.verify(old, header, raw)
    assert header.count("v1=") == 2
    await asyncio.sleep(0)
