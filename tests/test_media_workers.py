"""Media worker processes (issue 16), real processes: a hub with 2 workers, real aiortc
peers on loopback, real recordings decoded by PyAV. Calls spread over the workers; a worker
killed with SIGKILL mid-call fails its calls cleanly (recordings finalized and decodable to
the kill) while the other worker's calls go on and the supervisor starts it again; a
draining worker takes no new call and exits after its last."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from cloudcounter.recordings.crypto import sha256_and_size
from cloudcounter.sim.client import Connection
from cloudcounter.sim.media import SimMedia
from tests.conftest import Hub, wait_until
from tests.test_operations import TOKEN, samples, scrape

pytestmark = [pytest.mark.integration]


@dataclass
class Rig:
    agent: Connection
    cust: Connection
    call_id: str
    media: tuple[SimMedia, SimMedia]

    def frames(self) -> int:
        peer = self.media[0].peer
        return peer.received.frames["video"] if peer is not None else 0

    async def close(self) -> None:
        for m in self.media:
            await m.stop()
        for c in (self.agent, self.cust):
            await c.close()


async def call(hub: Hub, agent_user: str, customer_id: str) -> Rig:
    agent = Connection(hub.url, "/agent", await hub.agent_token(agent_user))
    await agent.connect()
    await agent.call("agent:status", {"status": "available"})
    cust = Connection(hub.url, "/customer", hub.customer_token(customer_id))
    await cust.connect()
    call_id = (await cust.call("call:request", {"service": "card_loss"}))["call_id"]
    await agent.expect("call:offer", timeout=10)
    assert (await agent.call("call:accept", {"call_id": call_id}))["ok"]
    await cust.expect("call:accepted", timeout=10)
    cm, am = SimMedia("customer"), SimMedia("agent")
    await asyncio.gather(cm.start(cust, call_id), am.start(agent, call_id))
    rig = Rig(agent, cust, call_id, (cm, am))
    await wait_until(lambda: rig.frames() > 10, 30, f"video of {call_id} reaching the customer")
    return rig


def worker_of(hub: Hub, call_id: str) -> Any:
    return hub.ctx.media.segments[call_id].media.link


async def admin_post(hub: Hub, path: str, user: str = "admin") -> tuple[int, Any]:
    token = await hub.agent_token(user)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as h:
        async with h.post(hub.url + path, headers={"Origin": hub.url}) as r:
            return r.status, await r.json()


def decoded(path: Path) -> tuple[int, float | None]:
    with av.open(str(path)) as c:
        duration = c.duration / 1e6 if c.duration else None
        return sum(1 for _ in c.decode(video=0)), duration


async def test_calls_spread_over_two_workers(hub_factory: Any) -> None:
    hub = await hub_factory(media_workers=2, vision_workers=0, metrics_token=TOKEN)
    pool = hub.ctx.media.pool
    await wait_until(lambda: len(pool.links) == 2, 30, "2 workers")
    first = await call(hub, "alice", "cus_demo_barack")
    second = await call(hub, "carol", "cus_demo_joe")
    a, b = worker_of(hub, first.call_id), worker_of(hub, second.call_id)
    assert a is not b and a.pid != b.pid != os.getpid()  # both legs of each on its worker
    assert {len(link.medias) for link in (a, b)} == {1}
    # per worker on /metrics: its calls, CPU and packets (from its load reports)
    await wait_until(lambda: all(link.load.get("calls") == 1 and link.load.get("packets_in")
                                 for link in (a, b)), 15, "both workers' load reports")
    status, text = await scrape(hub, TOKEN)
    assert status == 200
    got = samples(text)
    for link in (a, b):
        label = (("worker", link.worker_id),)
        assert got[("cloudcounter_media_worker_calls", label)] == 1
        assert got[("cloudcounter_media_worker_packets_in_total", label)] > 0
        assert got[("cloudcounter_media_worker_cpu_seconds_total", label)] > 0
    assert got[("cloudcounter_media_workers_lost_total", ())] == 0
    for rig in (first, second):
        assert (await rig.agent.call("call:hangup", {"call_id": rig.call_id}))["ok"]
        await rig.cust.expect("call:ended", timeout=10)
        await rig.close()
    # the hub closes a call's media after it has told both sides (a task of its own)
    await wait_until(lambda: hub.ctx.media.segments == {}, 15, "every call's media closed")
    status, body, _ = await hub.get("/api/admin/media-workers", user="admin")
    assert status == 200 and len(body["workers"]) == 2, body
    assert all(w["alive"] and w["calls"] == 0 for w in body["workers"]), body
    assert (await hub.get("/api/admin/media-workers", user="alice"))[0] == 403


@pytest.mark.slow
async def test_a_killed_worker_fails_its_calls_and_is_restarted(hub_factory: Any) -> None:
    hub = await hub_factory(media_workers=2, vision_workers=0)
    pool = hub.ctx.media.pool
    await wait_until(lambda: len(pool.links) == 2, 30, "2 workers")
    doomed = await call(hub, "alice", "cus_demo_barack")
    survivor = await call(hub, "carol", "cus_demo_joe")
    victim = worker_of(hub, doomed.call_id)
    assert victim is not worker_of(hub, survivor.call_id)
    paths = dict(hub.ctx.media.segments[doomed.call_id].media.recording_paths)

    def grown() -> bool:
        return all(p.exists() and p.stat().st_size > 30_000 for p in paths.values())
    await wait_until(grown, 60, "both recordings of the doomed call growing")
    os.kill(victim.pid, signal.SIGKILL)

    # its call fails cleanly: both participants told, cause on the timeline
    for conn in (doomed.agent, doomed.cust):
        _, ended = await conn.expect("call:ended", timeout=20)
        assert ended["call_id"] == doomed.call_id and ended["reason"] == "failed", ended
    # the other worker's call goes on
    frames = survivor.frames()
    await wait_until(lambda: survivor.frames() > frames + 30, 30, "the surviving call's video")
    assert survivor.call_id in hub.ctx.media.segments

    async def recovered() -> bool:
        detail = await hub.call_detail(doomed.call_id)
        return [e["kind"] for e in detail["timeline"]].count("recording.recovered") == 2
    await wait_until(recovered, 60, "both recordings finalized")
    detail = await hub.call_detail(doomed.call_id)
    timeline = [(e["kind"], e["payload"]) for e in detail["timeline"]]
    (end,) = [p for k, p in timeline if k == "call.ended"]
    assert end == {"reason": "failed", "cause": "worker_lost"}, end
    assert ("media.worker_lost", {"worker": victim.worker_id, "segment": 1}) in timeline
    assert detail["call"]["end_reason"] == "failed"
    for rec in detail["recordings"]:
        path = paths[rec["participant"]]
        assert rec["error"] is None and rec["duration_s"] > 0.5, rec
        assert (rec["sha256"], rec["size_bytes"]) == sha256_and_size(path, None)
        frames_in_file, duration = await asyncio.to_thread(decoded, path)
        assert frames_in_file > 10 and duration is not None  # decodes to the kill, seekable

    # the supervisor started the slot again: a new process with a new id takes calls
    await wait_until(lambda: len(pool.links) == 2 and victim.worker_id not in pool.links,
                     60, "the killed worker's replacement")
    assert victim.pid not in {link.pid for link in pool.links.values()}
    assert pool.lost_total == 1
    assert (await survivor.agent.call("call:hangup", {"call_id": survivor.call_id}))["ok"]
    await survivor.close()
    await doomed.close()
    again = await call(hub, "alice", "cus_demo_barack")  # both workers free: either takes it
    assert (await again.agent.call("call:hangup", {"call_id": again.call_id}))["ok"]
    await again.close()


@pytest.mark.slow
async def test_a_draining_worker_takes_no_new_call_and_exits_after_its_last(
        hub_factory: Any) -> None:
    hub = await hub_factory(media_workers=2, vision_workers=0)
    pool = hub.ctx.media.pool
    await wait_until(lambda: len(pool.links) == 2, 30, "2 workers")
    first = await call(hub, "alice", "cus_demo_barack")
    draining = worker_of(hub, first.call_id)
    path = f"/api/admin/media-workers/{draining.worker_id}/drain"
    assert (await admin_post(hub, path, user="alice"))[0] == 403
    assert (await admin_post(hub, "/api/admin/media-workers/nope/drain"))[0] == 404
    status, body = await admin_post(hub, path)
    assert status == 200 and body == {"worker": draining.worker_id, "draining": True,
                                      "calls": 1}, body
    # the other worker would take it anyway when the first is busier, so make it the
    # choice that only draining explains: end the call on the other one first
    second = await call(hub, "carol", "cus_demo_joe")
    assert worker_of(hub, second.call_id) is not draining
    assert (await second.agent.call("call:hangup", {"call_id": second.call_id}))["ok"]
    await second.close()
    third = await call(hub, "carol", "cus_demo_joe")  # both idle but one: still not there
    assert worker_of(hub, third.call_id) is not draining
    assert draining.alive and draining.worker_id in pool.links  # its call goes on
    frames = first.frames()
    await wait_until(lambda: first.frames() > frames + 10, 30, "the draining worker's call")
    assert (await first.agent.call("call:hangup", {"call_id": first.call_id}))["ok"]
    await first.close()
    # its last call ended: it exits cleanly (not lost: no call failed) and is replaced
    await wait_until(lambda: not draining.alive, 30, "the drained worker to exit")
    await wait_until(lambda: len(pool.links) == 2, 30, "its replacement")
    assert pool.lost_total == 0
    assert (await third.agent.call("call:hangup", {"call_id": third.call_id}))["ok"]
    await third.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    from tests.redislab import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.mark.slow
async def test_a_worker_on_another_machine_takes_calls_over_redis(
        hub_factory: Any, redis_server: Any, tmp_path: Path) -> None:
    """A second process started on its own with ``--redis`` (as on another machine)
    registers itself; the hub, with no local worker, places the call on it; SIGTERM drains
    it: it leaves once the call ended."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    hub = await hub_factory(media_workers=0, media_worker_redis=True,
                            redis_url=redis_server.url, vision_workers=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    with (tmp_path / "worker.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudcounter", "media-worker", "--redis", redis_server.url,
             "--id", "far-away-1"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        pool = hub.ctx.media.pool
        await wait_until(lambda: "far-away-1" in pool.links, 30, "the worker to register")
        rig = await call(hub, "alice", "cus_demo_barack")
        link = worker_of(hub, rig.call_id)
        assert link.worker_id == "far-away-1" and link.pid == proc.pid
        await wait_until(lambda: link.load.get("calls") == 1, 15, "its load in its lease")
        proc.send_signal(signal.SIGTERM)  # drain: the call goes on
        frames = rig.frames()
        await wait_until(lambda: rig.frames() > frames + 10, 30, "the call's video")
        assert proc.poll() is None
        assert (await rig.agent.call("call:hangup", {"call_id": rig.call_id}))["ok"]
        await rig.close()
        await wait_until(lambda: proc.poll() is not None, 30, "the drained worker to exit")
        assert proc.returncode == 0, (tmp_path / "worker.log").read_text()[-2000:]
        detail = await hub.call_detail(rig.call_id)
        assert detail["call"]["end_reason"] == "completed"
        for rec in detail["recordings"]:
            assert rec["sha256"] and rec["duration_s"] > 0.5, rec
        await wait_until(lambda: "far-away-1" not in pool.links, 30, "it to leave the pool")
        assert pool.lost_total == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
async def test_a_hub_killed_mid_call_leaves_no_worker_and_recovers_the_call(
        tmp_path: Path) -> None:
    """``cloudcounter serve`` with CLOUDCOUNTER_MEDIA_WORKERS=2 (the CLI's path) carries a
    call on a worker; the hub killed with SIGKILL leaves no worker behind (their socket
    closes), and started again on the same database it ends the call ``failed``
    (``hub_restarted``) with both recordings finalized and verified."""
    import sqlite3

    import psutil

    from tests.test_crash_recovery import (frames_and_duration, recorded_call,
                                           restarted_and_recovered, seeded_env)
    from tests.test_webhook_crash import start_hub
    from tests.webhook_receiver import free_port

    port = free_port()
    env = seeded_env(tmp_path, port, CLOUDCOUNTER_MEDIA_WORKERS="2")
    url, db, log = f"http://127.0.0.1:{port}", tmp_path / "hub.db", tmp_path / "hub.log"
    proc = await start_hub(env, log)
    try:
        hub = psutil.Process(proc.pid)

        def workers() -> list[psutil.Process]:
            return [c for c in hub.children() if "media-worker" in " ".join(c.cmdline())]
        await wait_until(lambda: len(workers()) == 2, 30, "2 worker processes")
        pids = [w.pid for w in workers()]
        sims = await recorded_call(url, env, db, tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def gone() -> bool:
        return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                       for p in pids)
    await wait_until(gone, 30, "the workers to exit after the hub")
    for p, name in zip(sims, ("agent", "customer")):
        await wait_until(lambda p=p: p.poll() is not None, 60, f"the {name} simulator to exit")  # type: ignore[misc]
    await restarted_and_recovered(env, log, db)  # the same database: recovery at start-up
    with sqlite3.connect(db) as conn:
        state, reason = conn.execute("SELECT state, end_reason FROM call_sessions").fetchone()
        rows = conn.execute("SELECT path, sha256, size_bytes, error FROM recordings").fetchall()
    assert (state, reason) == ("ended", "failed")
    for path, sha, size, error in rows:
        assert error is None and (sha, size) == sha256_and_size(Path(path), None)
        frames, playable = frames_and_duration(Path(path))
        assert frames > 10 and playable is not None


@pytest.mark.slow
async def test_a_frozen_worker_takes_no_new_call_and_is_killed(hub_factory: Any) -> None:
    """SIGSTOP: its lease lapses (no new call for it), then the watchdog kills it: its
    call ends ``worker_lost`` and the slot starts again."""
    hub = await hub_factory(media_workers=2, vision_workers=0, media_worker_lease_s=1.0)
    pool = hub.ctx.media.pool
    await wait_until(lambda: len(pool.links) == 2, 30, "2 workers")
    frozen_call = await call(hub, "alice", "cus_demo_barack")
    victim = worker_of(hub, frozen_call.call_id)
    paths = dict(hub.ctx.media.segments[frozen_call.call_id].media.recording_paths)
    await wait_until(lambda: all(p.exists() and p.stat().st_size > 30_000
                                 for p in paths.values()), 60, "both recordings growing")
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        async def lapsed() -> bool:
            return not any(v.alive for v in await pool.views() if v.worker_id == victim.worker_id)
        await wait_until(lapsed, 15, "its lease to lapse")
        other = await call(hub, "carol", "cus_demo_joe")
        assert worker_of(hub, other.call_id) is not victim
        _, ended = await frozen_call.agent.expect("call:ended", timeout=30)
        assert ended["reason"] == "failed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.pid, signal.SIGCONT)
    detail = await hub.call_detail(frozen_call.call_id)
    (end,) = [e["payload"] for e in detail["timeline"] if e["kind"] == "call.ended"]
    assert end["cause"] == "worker_lost"
    await wait_until(lambda: len(pool.links) == 2, 60, "its replacement")
    assert (await other.agent.call("call:hangup", {"call_id": other.call_id}))["ok"]
    await other.close()
    await frozen_call.close()

    async def recovered() -> bool:
        d = await hub.call_detail(frozen_call.call_id)
        return [e["kind"] for e in d["timeline"]].count("recording.recovered") == 2
    await wait_until(recovered, 60, "its recordings finalized")


@pytest.mark.slow
async def test_a_redis_worker_whose_lease_lapses_fails_its_calls(
        hub_factory: Any, redis_server: Any, tmp_path: Path) -> None:
    """SIGKILL of a worker on "another machine": nobody sees a socket close; its lease
    lapses on Redis's clock and the hub ends its call ``worker_lost``."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    hub = await hub_factory(media_workers=0, media_worker_redis=True, media_worker_lease_s=1.5,
                            redis_url=redis_server.url, vision_workers=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    env["CLOUDCOUNTER_MEDIA_WORKER_LEASE_S"] = "1.5"
    with (tmp_path / "worker.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudcounter", "media-worker", "--redis", redis_server.url,
             "--id", "far-away-2"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        pool = hub.ctx.media.pool
        await wait_until(lambda: "far-away-2" in pool.links, 30, "the worker to register")
        rig = await call(hub, "alice", "cus_demo_barack")
        paths = dict(hub.ctx.media.segments[rig.call_id].media.recording_paths)
        await wait_until(lambda: all(p.exists() and p.stat().st_size > 30_000
                                     for p in paths.values()), 60, "both recordings growing")
        proc.kill()
        proc.wait(10)
        _, ended = await rig.cust.expect("call:ended", timeout=30)
        assert ended["reason"] == "failed"
        await rig.close()

        async def recovered() -> bool:
            d = await hub.call_detail(rig.call_id)
            return [e["kind"] for e in d["timeline"]].count("recording.recovered") == 2
        await wait_until(recovered, 60, "its recordings finalized")
        detail = await hub.call_detail(rig.call_id)
        (end,) = [e["payload"] for e in detail["timeline"] if e["kind"] == "call.ended"]
        assert end["cause"] == "worker_lost" and pool.lost_total == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
