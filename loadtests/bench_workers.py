"""Media worker benchmark: hub CPU per call with and without the worker hop, same run.

    .venv/bin/python loadtests/bench_workers.py [--workers 1|2] [--calls 4] [--seconds 10]
        [--uvloop]

Three modes over the same clients (a separate process sending pre-encoded 640x480 30 fps
VP8 + Opus both ways, counting what it receives without decoding), each call recorded:

* ``in-hub``: one ``CallMedia`` per call in this process (media in the hub, as
  ``CLOUDCOUNTER_MEDIA_WORKERS=0``): this process's CPU is a call's forwarding cost;
* ``workers``: the same calls on ``--workers`` worker processes started by the hub's
  supervisor, driven over the internal protocol (``RemoteCallMedia``): this process's CPU
  is the hop's cost on the hub (flows, load reports, the proxy), the workers' CPU the
  forwarding moved off the hub.

Prints per call: hub CPU, worker CPU, and the ratios: hub-side hop / forwarding, and the
whole hop ((hub + workers) - in-hub) / in-hub. Target: the hop under 10 % of forwarding.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloudcounter.media import seam  # noqa: E402
from cloudcounter.media.call import CallMedia  # noqa: E402
from cloudcounter.media.client import ClientPeer  # noqa: E402
from cloudcounter.media.sources import EncodedFilePlayer, prepare_vp8_webm  # noqa: E402
from cloudcounter.media.workers.remote import RemoteCallMedia  # noqa: E402
from cloudcounter.media.workers.supervisor import Supervisor, WorkerPool  # noqa: E402
from cloudcounter.vision.data import faces_dir  # noqa: E402

LOOPBACK = ["127.0.0.1"]
DEFAULT_SOURCE = faces_dir() / "video" / "talking.mp4"  # CLOUDCOUNTER_FACES_DIR
RCVBUF = 2 << 20


async def _client(conn: Connection, clip: Path, calls: int) -> None:
    peers = []
    for _ in range(calls):
        pair = []
        for _role in ("customer", "agent"):
            player = EncodedFilePlayer(clip)
            pair.append(ClientPeer(audio=player.audio, video=player.video,
                                   host_addresses=LOOPBACK, decode=False))
        peers.append((pair[0], pair[1]))
    conn.send([(await c.offer(), await a.offer()) for c, a in peers])
    answers = await asyncio.to_thread(conn.recv)
    for (customer, agent), (answer_c, answer_a) in zip(peers, answers, strict=True):
        await customer.accept(answer_c)
        await agent.accept(answer_a)
    while True:
        command = await asyncio.to_thread(conn.recv)
        if command == "snapshot":
            conn.send({"at": time.monotonic(),
                       "agent_video": [a.received.frames["video"] for _, a in peers],
                       "customer_video": [c.received.frames["video"] for c, _ in peers]})
        else:
            for customer, agent in peers:
                await customer.close()
                await agent.close()
            conn.send("stopped")
            return


def client_main(conn: Connection, clip: str, calls: int) -> None:
    seam.set_udp_receive_buffer(RCVBUF)
    asyncio.run(_client(conn, Path(clip), calls))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _workers_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += sum(psutil.Process(pid).cpu_times()[:2])
        except psutil.Error:
            pass
    return total


@dataclass
class Result:
    mode: str
    calls: int
    hub_cpu_per_call: float  # share of one core
    worker_cpu_per_call: float
    agent_fps: float
    customer_fps: float


async def run_mode(mode: str, calls: int, workers: int, clip: Path, seconds: float,
                   warmup: float, record_dir: Path) -> Result:
    seam.set_udp_receive_buffer(RCVBUF)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=client_main, args=(child, str(clip), calls), daemon=True)
    proc.start()
    hubs: list[Any] = []
    pool = supervisor = None
    try:
        if mode == "workers":
            pool = WorkerPool(capacity=100, lease_s=3.0)
            supervisor = Supervisor(pool, workers, "bench", 100)
            await supervisor.start()
        offers = await asyncio.to_thread(parent.recv)
        answers = []
        for i, (offer_c, offer_a) in enumerate(offers):
            call: Any
            if mode == "in-hub":
                call = CallMedia(call_id=f"bench{i}", ice_servers=[], host_addresses=LOOPBACK)
            else:
                assert pool is not None
                link = await pool.place()
                assert link is not None, "no worker"
                call = RemoteCallMedia(link, f"bench{i}", f"bench{i}", None, None)
                await call.open([], LOOPBACK)
            call.start_recording(record_dir / mode)
            hubs.append(call)
            answers.append((await call.answer("customer", offer_c),
                            await call.answer("agent", offer_a)))
        parent.send(answers)
        await asyncio.sleep(warmup)
        pids = supervisor.pids() if supervisor is not None else []

        async def snapshot() -> tuple[float, float, dict[str, Any]]:
            cpu, wcpu = _cpu(), _workers_cpu(pids)
            parent.send("snapshot")
            return cpu, wcpu, await asyncio.to_thread(parent.recv)

        cpu0, w0, snap0 = await snapshot()
        await asyncio.sleep(seconds)
        cpu1, w1, snap1 = await snapshot()
        parent.send("stop")
        await asyncio.to_thread(parent.recv)
    finally:
        for hub in hubs:
            await hub.close()
        if supervisor is not None:
            await supervisor.stop()
        if pool is not None:
            await pool.stop()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    elapsed = snap1["at"] - snap0["at"]

    def fps(key: str) -> float:
        return sum(b - a for a, b in zip(snap0[key], snap1[key], strict=True)) / elapsed / calls
    return Result(mode, calls, (cpu1 - cpu0) / elapsed / calls, (w1 - w0) / elapsed / calls,
                  fps("agent_video"), fps("customer_video"))


def show(r: Result, workers: int) -> None:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    label = r.mode if r.mode == "in-hub" else f"workers={workers}"
    print(f"{label:10} calls={r.calls}  hub CPU/call={r.hub_cpu_per_call:6.1%}  "
          f"worker CPU/call={r.worker_cpu_per_call:6.1%}  fps agent={r.agent_fps:4.1f} "
          f"customer={r.customer_fps:4.1f}  load={load}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, choices=(1, 2))
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clip", type=Path, help="a VP8/Opus WebM (default: made from a clip)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    os.environ.setdefault("CLOUDCOUNTER_LOG_LEVEL", "WARNING")  # the workers' logs
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp:
        clip = args.clip or prepare_vp8_webm(args.source, Path(tmp) / "clip.webm",
                                             size=(640, 480), fps=30, seconds=10, gop=60)
        print(f"cpus={os.cpu_count()}  640x480 30 fps VP8+Opus both ways, recorded, "
              f"window={args.seconds:.0f}s, load before={os.getloadavg()[0]:.1f}", flush=True)
        base = await run_mode("in-hub", args.calls, 0, clip, args.seconds, args.warmup,
                              Path(tmp))
        show(base, 0)
        hop = await run_mode("workers", args.calls, args.workers, clip, args.seconds,
                             args.warmup, Path(tmp))
        show(hop, args.workers)
        forwarding = base.hub_cpu_per_call
        whole = hop.hub_cpu_per_call + hop.worker_cpu_per_call - forwarding
        print(f"hub-side hop = {hop.hub_cpu_per_call / forwarding:.1%} of a call's forwarding "
              f"cost; whole hop (hub + workers - in-hub) = {whole / forwarding:+.1%} "
              f"(target < 10 %); load after={os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    if "--uvloop" in sys.argv:  # the hub's production loop (the workers use it by default)
        sys.argv.remove("--uvloop")
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
