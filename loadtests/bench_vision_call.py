"""In-call analysis through a real hub: analysed frames per second, check latency, CPU.

    .venv/bin/python loadtests/bench_vision_call.py [--calls 2] [--idle-s 8]

Starts a hub in this process (temporary SQLite and recordings), then ``--calls``
simultaneous calls (demo agents alice, carol, bob and three demo customers; services
without automatic checks) whose customers stream talking.mp4 (VP8, 640x480, 30 fps).
Per call: a first identity check (waits for the pool's models if cold), a second one
(warm latency), ``--idle-s`` of continuity monitoring, then a 3-challenge liveness
check (the clip does not follow the prompts: it measures the challenge rate only).

Reports analysed fps (idle and during the challenge), identity latency (request ack to
result) and CPU seconds: of the vision workers (psutil, children of this process) and of
this process with and without analysis (``--compare``, a second run with
CLOUDCOUNTER_VISION_WORKERS=0: the difference is the hub-side cost, i.e. tap decoding,
frame conversion and the analysis loop; the simulators are in the same process).
Asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudcounter.db.engine import make_engine, make_sessionmaker  # noqa: E402
from cloudcounter.db.migrate import upgrade_engine  # noqa: E402
from cloudcounter.hub.api import CTX  # noqa: E402
from cloudcounter.hub.app import create_app  # noqa: E402
from cloudcounter.hub.auth import mint_customer_token  # noqa: E402
from cloudcounter.hub.demo import DEMO_USERS, seed  # noqa: E402
from cloudcounter.hub.settings import Settings  # noqa: E402
from cloudcounter.media.sources import prepare_vp8_webm  # noqa: E402
from cloudcounter.sim.client import Connection, login  # noqa: E402
from cloudcounter.sim.media import SimMedia  # noqa: E402
from cloudcounter.vision.data import faces_dir  # noqa: E402

AGENTS = [("alice", "card_loss"), ("carol", "car_loan"), ("bob", "large_transfer")]
CUSTOMERS = {"alice": "cus_demo_barack", "carol": "cus_demo_joe", "bob": "cus_demo_eileen"}


async def next_event(conn: Connection, name: str, timeout: float = 30.0,
                     **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event, data = await asyncio.wait_for(conn.events.get(), deadline - time.monotonic())
        if event == name and all(data.get(k) == v for k, v in match.items()):
            return data


async def start_call(url: str, secret: str, agent: str, service: str, clip: Path
                     ) -> tuple[Connection, Connection, str, list[SimMedia]]:
    """An answered call with media flowing both ways: agent, customer, call id, media."""
    password = next(p for u, p, *_ in DEMO_USERS if u == agent)
    a = Connection(url, "/agent", await login(url, agent, password))
    await a.connect()
    await a.call("agent:status", {"status": "available"})
    c = Connection(url, "/customer", mint_customer_token(secret, CUSTOMERS[agent], 600))
    await c.connect()
    call_id = (await c.call("call:request", {"service": service}))["call_id"]
    await next_event(a, "call:offer", call_id=call_id)
    await a.call("call:accept", {"call_id": call_id})
    await next_event(c, "call:accepted", call_id=call_id)
    medias = [SimMedia("customer", video=clip), SimMedia("agent")]
    await asyncio.gather(medias[0].start(c, call_id), medias[1].start(a, call_id))
    return a, c, call_id, medias


async def one_call(url: str, secret: str, agent: str, service: str, clip: Path,
                   idle_s: float, ctx: Any) -> dict[str, Any]:
    a, c, call_id, medias = await start_call(url, secret, agent, service, clip)
    out: dict[str, Any] = {"call_id": call_id}
    try:
        latencies = []
        for _ in range(2):
            while True:
                started = time.monotonic()
                ack = await a.call("check:identity", {"call_id": call_id})
                if ack.get("ok"):
                    break
                await asyncio.sleep(0.1)
            await next_event(a, "check:result", check_id=ack["check_id"])
            latencies.append(time.monotonic() - started)
        out["identity_s"] = latencies
        print(agent, "identity", latencies, flush=True)
        analysis = ctx.analysis.calls[call_id]
        n0, t0 = analysis.stats.analysed, time.monotonic()
        await asyncio.sleep(idle_s)
        out["idle_fps"] = (analysis.stats.analysed - n0) / (time.monotonic() - t0)
        ack = await a.call("check:liveness", {"call_id": call_id, "count": 3})
        print(agent, "idle", out["idle_fps"], flush=True)
        first = await next_event(a, "check:progress", check_id=ack["check_id"])
        n0, t0 = analysis.stats.analysed, time.monotonic()
        result = await next_event(a, "check:result", check_id=ack["check_id"])
        out["challenge_fps"] = (analysis.stats.analysed - n0) / (time.monotonic() - t0)
        out["liveness"] = (result["verdict"], first["action"])
        out["analysis_ms_p50"] = statistics.median(analysis.stats.analysis_ms)
    except TimeoutError:
        analysis = ctx.analysis.calls.get(call_id)
        out["error"] = f"timed out: {out}, {analysis and analysis.sampler.stats}"
        raise
    finally:
        await a.call("call:hangup", {"call_id": call_id})
        for m in medias:
            await m.stop()
        await a.close()
        await c.close()
    return out


async def run(calls: int, idle_s: float, workers: int, clip: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp}/hub.db", demo=True,
                            recordings_dir=Path(tmp) / "rec", faces_dir=faces_dir(),
                            vision_workers=workers).checked()
        engine = make_engine(settings.database_url)
        await upgrade_engine(engine)
        await seed(make_sessionmaker(engine), settings.faces_dir)
        await engine.dispose()
        app = create_app(settings)
        ctx = app[CTX]
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        for code in ctx.services:
            ctx.services[code] = dataclasses.replace(ctx.services[code], auto_checks=())
        me = psutil.Process()
        cpu0, wall0 = me.cpu_times(), time.monotonic()
        try:
            if workers:
                results = await asyncio.gather(*(
                    one_call(url, settings.customer_token_secret, agent, service, clip,
                             idle_s, ctx) for agent, service in AGENTS[:calls]))
            else:  # the same calls, media only
                results = []
                await asyncio.gather(*(media_only(url, settings.customer_token_secret, agent,
                                                  service, clip, idle_s + 10)
                                       for agent, service in AGENTS[:calls]))
            workers_cpu = sum(sum(p.cpu_times()[:2]) for p in me.children(recursive=True))
            cpu1 = me.cpu_times()
            return {"calls": results, "wall_s": time.monotonic() - wall0,
                    "hub_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
                    "workers_cpu_s": workers_cpu}
        finally:
            await runner.cleanup()


async def media_only(url: str, secret: str, agent: str, service: str, clip: Path,
                     seconds: float) -> None:
    a, c, call_id, medias = await start_call(url, secret, agent, service, clip)
    await asyncio.sleep(seconds)
    await a.call("call:hangup", {"call_id": call_id})
    for m in medias:
        await m.stop()
    await a.close()
    await c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1, choices=[1, 2, 3])
    ap.add_argument("--idle-s", type=float, default=8.0)
    ap.add_argument("--compare", action="store_true", help="also run without analysis")
    args = ap.parse_args()
    clip = prepare_vp8_webm(faces_dir() / "video/talking.mp4",
                            Path(tempfile.gettempdir()) / "cc-bench-talking.webm", seconds=8)
    report = asyncio.run(run(args.calls, args.idle_s, 1, clip))
    for r in report["calls"]:
        cold, warm = r["identity_s"]
        print(f"{r['call_id']}: identity {cold:.2f} s (first) / {warm:.2f} s (warm), "
              f"idle {r['idle_fps']:.1f} fps, challenge {r['challenge_fps']:.1f} fps, "
              f"analysis p50 {r['analysis_ms_p50']:.1f} ms, liveness {r['liveness']}")
    print(f"wall {report['wall_s']:.1f} s; CPU: this process {report['hub_cpu_s']:.1f} s, "
          f"vision workers {report['workers_cpu_s']:.1f} s")
    if args.compare:
        base = asyncio.run(run(args.calls, args.idle_s, 0, clip))
        print(f"without analysis, {base['wall_s']:.1f} s of the same calls: this process "
              f"{base['hub_cpu_s']:.1f} s")


if __name__ == "__main__":
    main()
