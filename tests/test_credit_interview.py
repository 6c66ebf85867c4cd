"""The car-loan interview end to end over real sockets and real HTTP: the simulated agent
looks the application up in the reference credit service, answers the questions and
records the outcome; the result goes through the outbox and is recorded once by the credit
system, also when the credit system is down for the whole call; bad input is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.client import Connection
from cloudcounter.sim.customer import run_customer
from tests.conftest import Hub, wait_until
from tests.credit_service import CreditService
from tests.test_db import pg_url  # noqa: F401 - the PostgreSQL fixture
from tests.webhook_receiver import free_port

pytestmark = pytest.mark.integration
EILEEN = "cus_demo_eileen"
FAST = dict(credit_delivery_retry_base_s=0.2, credit_delivery_retry_max_s=0.5,
            credit_timeout_s=10.0, credit_retries=1, credit_breaker_threshold=100)


@pytest.fixture
async def credit(tmp_path: Path) -> AsyncIterator[CreditService]:
    svc = await CreditService(tmp_path).start()
    yield svc
    await svc.stop()


def deliveries(hub: Hub) -> list[tuple[str, str, int]]:
    db = hub.settings.database_url.split("///", 1)[1]
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT call_id, state, attempts FROM credit_result_deliveries"))


async def kinds(hub: Hub, call_id: str) -> list[str]:
    return [e["kind"] for e in (await hub.call_detail(call_id))["timeline"]]


async def loan_call(hub: Hub, outcome: str = "pass") -> tuple[Any, Any]:
    ready = asyncio.Event()
    agent = asyncio.create_task(run_agent(hub.url, await hub.agent_token("bob"), calls=1,
                                          accept_delay=0.05, ready=ready, loan_outcome=outcome))
    await ready.wait()
    token = hub.customer_token(EILEEN, subject={"reference": "APP-2026-1138",
                                                "amount": 32000.0, "currency": "EUR"})
    cust = await run_customer(hub.url, token, "car_loan", seconds=0.5)
    res = await agent
    assert res.error is None and res.calls == 1, res
    return cust, res


async def test_the_interview_result_is_written_back_once(hub_factory: Any,
                                                        credit: CreditService) -> None:
    outcome = "pass"  # refer: below; decline: tests/test_credit_crash.py
    hub = await hub_factory(credit_url=credit.url, metrics_token="m" * 32, **FAST)
    cust, res = await loan_call(hub, outcome)
    view = res.loans[0]
    assert view["application"]["id"] == "APP-2026-1138"
    assert {c["field"] for c in view["confirm"]} >= {"loan_amount", "down_payment",
                                                      "term_months", "employer"}
    assert res.loan_outcomes[0]["ok"] and res.loan_outcomes[0]["delivery"] == "pending"
    await wait_until(lambda: [s for _, s, _ in deliveries(hub)] == ["delivered"], 20,
                     "the result delivered")
    rows = await credit.results("APP-2026-1138")
    assert len(rows) == 1
    r = rows[0]
    assert r["outcome"] == outcome and r["call_id"] == cust.call_id
    assert r["interviewer"] == "agent:bob" and r["customer_id"] == EILEEN
    assert [a["question"] for a in r["answers"]] == ["purpose", "employer", "income",
                                                     "driver", "dealer", "others"]
    assert not any(a.get("contradicts") for a in r["answers"])
    assert (r["reasons"] != []) == (outcome != "pass")
    await wait_until(lambda: hub.ctx.journal.pending == 0, 10, "the journal written")
    k = await kinds(hub, cust.call_id)
    for kind in ("credit.lookup", "credit.answer", "credit.outcome", "credit.result.pending",
                 "credit.result.delivered", "call.wrapped_up"):
        assert kind in k, (kind, k)
    assert k.index("credit.result.pending") < k.index("credit.result.delivered")
    import aiohttp
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer " + "m" * 32}) as h:
        async with h.get(hub.url + "/metrics") as r:
            text = await r.text()
    assert "cloudcounter_credit_results_delivered_total 1.0" in text
    assert "cloudcounter_credit_circuit_open 0.0" in text
    assert 'cloudcounter_credit_results_backlog{state="failed"} 0.0' in text


@pytest.mark.postgres
async def test_the_write_back_on_postgresql(pg_url: str, hub_factory: Any,  # noqa: F811
                                            credit: CreditService) -> None:
    from sqlalchemy import select, text

    from cloudcounter.db.engine import make_engine
    from cloudcounter.db.loan_models import CreditResultDelivery, LoanInterview

    engine = make_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    hub = await hub_factory(database_url=pg_url, credit_url=credit.url, **FAST)
    cust, res = await loan_call(hub, "pass")

    async def delivered() -> bool:
        async with hub.ctx.sm() as s:
            return await s.scalar(select(CreditResultDelivery.state)) == "delivered"
    await wait_until(delivered, 20, "the result delivered")
    async with hub.ctx.sm() as s:
        iv = await s.get(LoanInterview, cust.call_id)
    assert iv is not None and iv.state == "closed" and iv.outcome == "pass"
    assert iv.application_id == "APP-2026-1138" and len(iv.answers) == 6
    assert len(await credit.results()) == 1


async def test_the_credit_system_down_for_the_whole_call_loses_nothing(
        hub_factory: Any, tmp_path: Path) -> None:
    port = free_port()
    hub = await hub_factory(credit_url=f"http://127.0.0.1:{port}", **FAST)
    cust, res = await loan_call(hub, "refer")
    view = res.loans[0]  # the panel shows the error; the call went on
    assert view["application"] is None and view["error"]["code"] == "credit_unavailable"
    assert res.outcomes == ["resolved"]
    await wait_until(lambda: any(a >= 2 for _, s, a in deliveries(hub) if s == "pending"), 20,
                     "failed attempts, the result still pending")
    await hub.ctx.journal.flush()
    assert "credit.result.retrying" in await kinds(hub, cust.call_id)
    svc = await CreditService(tmp_path, port=port).start()  # the credit system comes back
    try:
        await wait_until(lambda: [s for _, s, _ in deliveries(hub)] == ["delivered"], 30,
                         "the result delivered after the credit system came back")
        rows = await svc.results()
        assert len(rows) == 1 and rows[0]["outcome"] == "refer"
        assert rows[0]["application_id"] == "APP-2026-1138"  # from the customer's token
    finally:
        await svc.stop()


async def test_an_outcome_is_required_and_only_the_calls_agent_reads_the_application(
        hub_factory: Any, credit: CreditService) -> None:
    hub = await hub_factory(credit_url=credit.url, **FAST)
    bob = Connection(hub.url, "/agent", await hub.agent_token("bob"))
    carol = Connection(hub.url, "/agent", await hub.agent_token("carol"))
    cust = Connection(hub.url, "/customer", hub.customer_token(EILEEN), protocol="1.1")
    for c in (bob, carol, cust):
        await c.connect()
    try:
        assert (await bob.call("agent:status", {"status": "available"}))["ok"]
        req = await cust.call("call:request", {"service": "car_loan"})
        call_id = req["call_id"]
        _, offer = await bob.expect("call:offer", timeout=10)
        assert (await bob.call("call:accept", {"call_id": call_id}))["ok"]
        # another agent: no application, no answers, no outcome
        for event, extra in (("credit:lookup", {}), ("credit:view", {}),
                             ("credit:answer", {"question": "purpose", "answer": "x"}),
                             ("credit:outcome", {"outcome": "pass"})):
            r = await carol.call(event, {"call_id": call_id, **extra})
            assert r["error"]["code"] == "unknown_call", (event, r)
        view = await bob.call("credit:lookup", {"call_id": call_id})
        assert view["ok"] and view["application"]["customer_id"] == EILEEN
        r = await bob.call("credit:answer", {"call_id": call_id, "question": "employer",
                                             "answer": "Acme Corp"})
        assert r["ok"] and r["contradictions"] == 1 and "Orbital" in r["contradicts"]
        r = await bob.call("credit:answer", {"call_id": call_id, "question": "income",
                                             "answer": "about 9,000 EUR"})
        assert r["contradictions"] == 2
        for bad in ({"question": "nope", "answer": "x"}, {"question": "purpose", "answer": ""},
                    {"question": "purpose", "answer": "a\u0000b"}):
            r = await bob.call("credit:answer", {"call_id": call_id, **bad})
            assert not r["ok"], bad
        snap = await bob.call("flow:snapshot", {"call_id": call_id})
        rules = [x["rule"] for x in snap["flow"]["risk"]["reasons"]]
        assert "credit_contradictions" in rules
        r = await bob.call("credit:outcome", {"call_id": call_id, "outcome": "decline"})
        assert r["error"]["code"] == "reasons_required"
        r = await bob.call("credit:outcome", {"call_id": call_id, "outcome": "pass",
                                              "application_id": "APP-2026-1201"})
        assert r["error"]["code"] == "wrong_application"  # another customer's application
        assert (await bob.call("call:hangup", {"call_id": call_id}))["ok"]
        await bob.expect("call:ended", timeout=10)
        r = await bob.call("call:wrapup", {"call_id": call_id, "outcome": "resolved",
                                           "skip_reason": None} | {})
        assert r["error"]["code"] == "credit_outcome_required"
        assert deliveries(hub) == []  # nothing written
        r = await bob.call("credit:outcome", {"call_id": call_id, "outcome": "refer",
                                              "reasons": ["income differs"]})
        assert r["ok"] and r["delivery"] == "pending"
        r = await bob.call("credit:outcome", {"call_id": call_id, "outcome": "pass"})
        assert r["error"]["code"] == "interview_closed"
        _, news = await bob.expect("credit:delivery", timeout=20)
        assert news["call_id"] == call_id and news["state"] == "delivered"
        r = await bob.call("call:wrapup", {"call_id": call_id, "outcome": "resolved",
                                           "skip_reason": "script not run in this test"})
        assert r["ok"], r
        rows = await credit.results()
        assert len(rows) == 1 and rows[0]["outcome"] == "refer"
        assert sum(1 for a in rows[0]["answers"] if a.get("contradicts")) == 2
    finally:
        for c in (bob, carol, cust):
            await c.close()


async def test_an_interview_whose_wrap_up_time_runs_out_is_referred(
        hub_factory: Any, credit: CreditService) -> None:
    hub = await hub_factory(credit_url=credit.url, wrap_up_s=1.0, **FAST)
    bob = Connection(hub.url, "/agent", await hub.agent_token("bob"))
    cust = Connection(hub.url, "/customer", hub.customer_token(EILEEN), protocol="1.1")
    for c in (bob, cust):
        await c.connect()
    try:
        assert (await bob.call("agent:status", {"status": "available"}))["ok"]
        call_id = (await cust.call("call:request", {"service": "car_loan"}))["call_id"]
        await bob.expect("call:offer", timeout=10)
        assert (await bob.call("call:accept", {"call_id": call_id}))["ok"]
        assert (await bob.call("credit:lookup", {"call_id": call_id}))["application"]
        assert (await bob.call("call:hangup", {"call_id": call_id}))["ok"]
        # no outcome, no wrap-up: the time runs out
        await wait_until(lambda: [s for _, s, _ in deliveries(hub)] == ["delivered"], 20,
                         "the interview referred and delivered")
        rows = await credit.results()
        assert len(rows) == 1 and rows[0]["outcome"] == "refer"
        assert rows[0]["reasons"] == ["not assessed: the wrap-up time ran out"]
    finally:
        for c in (bob, cust):
            await c.close()
