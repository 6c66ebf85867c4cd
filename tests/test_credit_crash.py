"""A hub killed with SIGKILL between the interview's end and the delivery of its result
loses nothing and sends nothing twice: the credit system records the result exactly once
(slow tier).

1. The credit system refuses the result with 500s: the outcome is in the outbox, pending;
   the hub is killed.
2. The restarted hub sends it; the credit system records it but its answer never comes;
   the hub is killed again, before it knows.
3. The third hub sends it again when the lease runs out: the credit system answers with
   the first record (the idempotency key); one record in all.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import pytest

from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.client import login
from cloudcounter.sim.customer import run_customer
from tests.conftest import ROOT, wait_until
from tests.credit_service import CreditService
from tests.test_webhook_crash import CLI, hub_env, start_hub
from tests.webhook_receiver import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def delivery(db: Path) -> tuple[str, int] | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state, attempts FROM credit_result_deliveries").fetchone()
    return (row[0], int(row[1])) if row else None


async def test_a_killed_hub_delivers_the_interview_result_exactly_once(tmp_path: Path) -> None:
    credit = await CreditService(tmp_path).start()
    port = free_port()
    env = hub_env(tmp_path, port)
    env.update({"CLOUDCOUNTER_CREDIT_URL": credit.url, "CLOUDCOUNTER_CREDIT_TIMEOUT_S": "1",
                "CLOUDCOUNTER_CREDIT_RETRIES": "0",
                "CLOUDCOUNTER_CREDIT_BREAKER_THRESHOLD": "1000",
                "CLOUDCOUNTER_CREDIT_DELIVERY_RETRY_BASE_S": "0.3",
                "CLOUDCOUNTER_CREDIT_DELIVERY_RETRY_MAX_S": "1"})
    for cmd in (["db", "upgrade"], ["demo", "seed"]):
        done = subprocess.run([str(CLI), *cmd], cwd=ROOT, env=env, capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    log, db, url = tmp_path / "hub.log", tmp_path / "hub.db", f"http://127.0.0.1:{port}"
    credit.faults.mode, credit.faults.only_path = "500", "interview-results"
    try:
        proc = await start_hub(env, log)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(url + "/api/demo/customer-token",
                                     json={"customer_id": "cus_demo_eileen"}) as r:
                    token = (await r.json())["token"]
            ready = asyncio.Event()
            agent = asyncio.create_task(run_agent(
                url, await login(url, "bob", "bob-demo-123"), calls=1, accept_delay=0,
                ready=ready, steps="none", outcome="escalated", loan_outcome="decline"))
            await ready.wait()
            res = await run_customer(url, token, "car_loan", seconds=0.3)
            assert res.outcome == "completed"
            a = await agent
            assert a.calls == 1 and a.loan_outcomes[0]["ok"], a
            await wait_until(lambda: (delivery(db) or ("", 0))[1] >= 2, 30,
                             "the credit system refusing the result")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert delivery(db)[0] == "pending"  # type: ignore[index]
        assert await credit.results() == []

        credit.faults.mode, credit.faults.delay_s = "record_then_hang", 60.0
        proc = await start_hub(env, log)
        try:
            await wait_until(lambda: credit.faults.recorded >= 1, 30,
                             "the restarted hub's result recorded by the credit system")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert delivery(db)[0] == "pending"  # type: ignore[index]  # the hub never knew
        assert len(await credit.results()) == 1

        credit.faults.mode = None
        credit.faults.release.set()  # the hung answer goes to a hub that is gone
        proc = await start_hub(env, log)
        try:
            await wait_until(lambda: (delivery(db) or ("", 0))[0] == "delivered", 60,
                             "the result delivered by the third hub")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        rows = await credit.results()
        assert len(rows) == 1, rows  # exactly once in the credit system's records
        assert rows[0]["outcome"] == "decline" and rows[0]["call_id"] == res.call_id
        with sqlite3.connect(db) as conn:
            result_id, key = conn.execute("SELECT result_id, idempotency_key "
                                          "FROM credit_result_deliveries").fetchone()
        assert result_id == rows[0]["result_id"] and key == rows[0]["idempotency_key"]
        posts = [s for s in credit.faults.seen if s.startswith("POST")]
        assert len(posts) >= 3  # refused, recorded without an answer, answered as duplicate
    finally:
        await credit.stop()
