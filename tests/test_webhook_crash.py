"""A hub killed with SIGKILL while its webhook receiver is down loses no event: the
restarted hub delivers everything the killed one had published (slow tier)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.client import login
from cloudcounter.sim.customer import run_customer
from tests.conftest import FACES_DIR, ROOT, wait_until
from tests.webhook_receiver import Receiver, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = Path(sys.executable).with_name("cloudcounter")


def hub_env(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    env.update({"CLOUDCOUNTER_DEMO": "1", "CLOUDCOUNTER_PORT": str(port),
                "CLOUDCOUNTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/hub.db",
                "CLOUDCOUNTER_RECORDINGS_DIR": str(tmp / "rec"),
                "CLOUDCOUNTER_FACES_DIR": str(FACES_DIR), "CLOUDCOUNTER_VISION_WORKERS": "0",
                "CLOUDCOUNTER_WEBHOOK_RETRY_BASE_S": "0.5", "CLOUDCOUNTER_WEBHOOK_RETRY_MAX_S": "1",
                "CLOUDCOUNTER_WEBHOOK_TIMEOUT_S": "1", "CLOUDCOUNTER_WRAP_UP_S": "5",
                "CLOUDCOUNTER_LOG_LEVEL": "WARNING"})
    return env


async def start_hub(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([str(CLI), "serve"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['CLOUDCOUNTER_PORT']}/healthz"
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "the hub did not start"
            await asyncio.sleep(0.2)


def pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM webhook_deliveries "
                                "WHERE state = 'pending'").fetchone()[0])


async def test_a_killed_hub_loses_no_webhook(tmp_path: Path) -> None:
    port = free_port()
    env = hub_env(tmp_path, port)
    for cmd in (["db", "upgrade"], ["demo", "seed"]):
        done = subprocess.run([str(CLI), *cmd], cwd=ROOT, env=env, capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    log = tmp_path / "hub.log"
    url = f"http://127.0.0.1:{port}"
    receiver = Receiver()  # not listening yet: the receiver is down
    proc = await start_hub(env, log)
    try:
        admin = await login(url, "admin", "admin-demo-1")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
            async with http.post(url + "/api/admin/webhooks", json={
                    "name": "core", "url": receiver.url, "event_types": ["call.*"]}) as r:
                assert r.status == 201
                receiver.secret = (await r.json())["secret"]
            async with http.post(url + "/api/demo/customer-token",
                                 json={"customer_id": "cus_demo_barack"}) as r:
                token = (await r.json())["token"]
        ready = asyncio.Event()
        agent = asyncio.create_task(run_agent(url, await login(url, "alice", "alice-demo-1"),
                                              calls=1, accept_delay=0, ready=ready,
                                              steps="none", outcome="escalated"))
        await ready.wait()
        res = await run_customer(url, token, "card_loss", seconds=0.3)
        assert res.outcome == "completed"
        assert (await agent).calls == 1
        db = tmp_path / "hub.db"
        await wait_until(lambda: pending(db) >= 4, 20, "the call's events in the outbox")
        published = pending(db)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    await receiver.start()
    try:
        proc = await start_hub(env, log)
        try:
            await wait_until(lambda: pending(db) == 0 and len(receiver.events) >= published,
                             60, "the killed hub's events delivered by the restarted one")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    finally:
        await receiver.stop()
    types = {e.type for e in receiver.events.values()}
    assert {"call.requested", "call.answered", "call.ended", "call.wrapped_up"} <= types
    assert all(r.signed for r in receiver.requests)
    with sqlite3.connect(db) as conn:  # every event of the outbox reached the receiver
        ids = {r[0] for r in conn.execute("SELECT public_id FROM webhook_events")}
    assert ids == set(receiver.events)
