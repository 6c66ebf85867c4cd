"""Media benchmark: hub CPU per call, encoded forwarding vs a decode-and-re-encode relay.

    .venv/bin/python loadtests/bench_media.py [--calls 8] [--baseline-calls 2]
        [--seconds 10] [--no-record] [--clip FILE.webm]

The hub side runs in this process (one ``CallMedia`` per call, recorded, or
per call two plain peer connections joined by aiortc's ``MediaRelay``); the
customers and agents run in a separate process and send pre-encoded 640x480
30 fps VP8 + Opus both ways (``EncodedFilePlayer``) and count what they
receive without decoding. CPU is this process's user+system time (all its
threads, aiortc's encoder threads included) over the measurement window.
Prints figures; asserts nothing.
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

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaRelay  # noqa: E402

from cloudcounter.media import seam  # noqa: E402
from cloudcounter.media.call import CallMedia  # noqa: E402
from cloudcounter.media.client import ClientPeer  # noqa: E402
from cloudcounter.media.sources import EncodedFilePlayer, prepare_vp8_webm  # noqa: E402
from cloudcounter.vision.data import faces_dir  # noqa: E402

LOOPBACK = ["127.0.0.1"]
DEFAULT_SOURCE = faces_dir() / "video" / "talking.mp4"  # CLOUDCOUNTER_FACES_DIR


# -- the client process: customers and agents ----------------------------------------


async def _client(conn: Connection, clip: Path, calls: int) -> None:
    peers: list[tuple[ClientPeer, ClientPeer]] = []
    for _ in range(calls):
        pair = []
        for _role in ("customer", "agent"):
            player = EncodedFilePlayer(clip)
            pair.append(
                ClientPeer(
                    audio=player.audio, video=player.video, host_addresses=LOOPBACK, decode=False
                )
            )
        peers.append((pair[0], pair[1]))
    offers = [(await c.offer(), await a.offer()) for c, a in peers]
    conn.send(offers)
    answers = await asyncio.to_thread(conn.recv)
    for (customer, agent), (answer_c, answer_a) in zip(peers, answers, strict=True):
        await customer.accept(answer_c)
        await agent.accept(answer_a)
    proc = psutil.Process()
    while True:
        command = await asyncio.to_thread(conn.recv)
        if command == "snapshot":
            conn.send(
                {
                    "at": time.monotonic(),
                    "cpu": sum(proc.cpu_times()[:2]),
                    "agent_video": [a.received.frames["video"] for _, a in peers],
                    "customer_video": [c.received.frames["video"] for c, _ in peers],
                    "agent_audio": [a.received.frames["audio"] for _, a in peers],
                }
            )
        elif command == "stop":
            for customer, agent in peers:
                await customer.close()
                await agent.close()
            conn.send("stopped")
            return


def client_main(conn: Connection, clip: str, calls: int, rcvbuf: int) -> None:
    seam.set_udp_receive_buffer(rcvbuf)
    asyncio.run(_client(conn, Path(clip), calls))


# -- the hub side ---------------------------------------------------------------------


class RelayCall:
    """The baseline: decoded by aiortc's receivers, re-encoded by each sender (MediaRelay)."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.pcs: list[RTCPeerConnection] = []

    async def answer(self, offer_customer: str, offer_agent: str) -> tuple[str, str]:
        pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2)]
        self.pcs = pcs
        tracks: list[list[Any]] = [[], []]
        for i, pc in enumerate(pcs):
            pc.on("track", lambda track, i=i: tracks[i].append(track))
        for pc, offer in zip(pcs, (offer_customer, offer_agent), strict=True):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for i, pc in enumerate(pcs):
            for track in tracks[1 - i]:
                pc.addTrack(self.relay.subscribe(track))
        answers = []
        for pc in pcs:
            with seam.host_addresses(LOOPBACK):
                await pc.setLocalDescription(await pc.createAnswer())
            answers.append(pc.localDescription.sdp)
        return answers[0], answers[1]

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


@dataclass
class Result:
    mode: str
    calls: int
    hub_cpu_per_call: float  # fraction of one core
    hub_cpu_total: float
    hub_user_per_call: float
    hub_sys_per_call: float
    loop_lag_median_ms: float
    loop_lag_p99_ms: float
    client_cpu_total: float
    agent_fps_mean: float
    agent_fps_min: float
    customer_fps_mean: float
    audio_pps_mean: float
    hub_in_fps_mean: float

    @property
    def hub_cpu_per_call_30fps(self) -> float:
        """CPU per call scaled to 30 fps delivered both ways (fair when a run falls behind)."""
        delivered = (self.agent_fps_mean + self.customer_fps_mean) / 2
        return self.hub_cpu_per_call * 30 / delivered if delivered else float("nan")


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class LoopLag:
    """How late a 10 ms sleep wakes up: the hub's event loop latency."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append(loop.time() - start - 0.01)

    def start(self) -> None:
        self.samples.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> tuple[float, float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        ordered = sorted(self.samples) or [0.0]
        return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


async def run_mode(
    mode: str,
    calls: int,
    clip: Path,
    seconds: float,
    warmup: float,
    record_dir: Path | None,
    rcvbuf: int = 2 << 20,
) -> Result:
    seam.set_udp_receive_buffer(rcvbuf)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=client_main, args=(child, str(clip), calls, rcvbuf), daemon=True)
    proc.start()
    hubs: list[Any] = []
    try:
        offers = await asyncio.to_thread(parent.recv)
        answers = []
        for i, (offer_c, offer_a) in enumerate(offers):
            if mode == "forward":
                call = CallMedia(call_id=f"bench{i}", ice_servers=[], host_addresses=LOOPBACK)
                if record_dir is not None:
                    call.start_recording(record_dir)
                hubs.append(call)
                answers.append((await call.answer("customer", offer_c),
                                await call.answer("agent", offer_a)))
            else:
                relay = RelayCall()
                hubs.append(relay)
                answers.append(await relay.answer(offer_c, offer_a))
        parent.send(answers)
        await asyncio.sleep(warmup)

        async def snapshot() -> tuple[tuple[float, float], dict[str, Any]]:
            cpu = _cpu()
            parent.send("snapshot")
            return cpu, await asyncio.to_thread(parent.recv)

        def hub_frames() -> int:
            return sum(h.stats().from_customer.video_frames for h in hubs if mode == "forward")

        lag = LoopLag()
        cpu0, snap0 = await snapshot()
        hub0 = hub_frames()
        lag.start()
        await asyncio.sleep(seconds)
        lag_median, lag_p99 = await lag.stop()
        cpu1, snap1 = await snapshot()
        hub1 = hub_frames()
        parent.send("stop")
        await asyncio.to_thread(parent.recv)
    finally:
        for hub in hubs:
            await hub.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    elapsed = snap1["at"] - snap0["at"]

    def rates(key: str) -> list[float]:
        return [(b - a) / elapsed for a, b in zip(snap0[key], snap1[key], strict=True)]

    agent_fps = rates("agent_video")
    hub_user = (cpu1[0] - cpu0[0]) / elapsed
    hub_sys = (cpu1[1] - cpu0[1]) / elapsed
    hub_cpu = hub_user + hub_sys
    return Result(
        mode=mode,
        calls=calls,
        hub_cpu_per_call=hub_cpu / calls,
        hub_cpu_total=hub_cpu,
        hub_user_per_call=hub_user / calls,
        hub_sys_per_call=hub_sys / calls,
        loop_lag_median_ms=lag_median * 1000,
        loop_lag_p99_ms=lag_p99 * 1000,
        client_cpu_total=(snap1["cpu"] - snap0["cpu"]) / elapsed,
        agent_fps_mean=sum(agent_fps) / calls,
        agent_fps_min=min(agent_fps),
        customer_fps_mean=sum(rates("customer_video")) / calls,
        audio_pps_mean=sum(rates("agent_audio")) / calls,
        hub_in_fps_mean=(hub1 - hub0) / elapsed / calls,
    )


def show(result: Result) -> None:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{result.mode:8} calls={result.calls:3d}  hub CPU/call={result.hub_cpu_per_call:6.1%}"
        f" (user {result.hub_user_per_call:.1%} sys {result.hub_sys_per_call:.1%})"
        f" ({result.hub_cpu_per_call_30fps:.1%} at 30 fps)  hub CPU={result.hub_cpu_total:6.1%}"
        f"  clients CPU={result.client_cpu_total:6.1%}"
        f"  agent fps mean={result.agent_fps_mean:5.1f} min={result.agent_fps_min:5.1f}"
        f"  hub in fps={result.hub_in_fps_mean:5.1f}"
        f"  customer fps={result.customer_fps_mean:5.1f}  audio pps={result.audio_pps_mean:5.1f}"
        f"  loop lag p50/p99={result.loop_lag_median_ms:.1f}/{result.loop_lag_p99_ms:.1f} ms"
        f"  (load average {load})",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8, help="concurrent forwarded calls")
    parser.add_argument(
        "--baseline-calls", type=int, default=None,
        help="concurrent relay calls (default: --calls; fewer if the relay saturates the "
        "CPU; 0 skips the baseline)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--no-record", action="store_true", help="forward without recording")
    parser.add_argument("--clip", type=Path, help="a VP8/Opus WebM (default: made from a clip)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument(
        "--rcvbuf", type=int, default=2 << 20, help="UDP SO_RCVBUF for ICE sockets (bytes)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_media_") as tmp:
        clip = args.clip or prepare_vp8_webm(
            args.source, Path(tmp) / "clip.webm", size=(640, 480), fps=30, seconds=10, gop=60
        )
        record_dir = None if args.no_record else Path(tmp) / "recordings"
        print(
            f"cpus={os.cpu_count()}  clip={clip.name} 640x480 30 fps VP8+Opus both ways, "
            f"window={args.seconds:.0f}s, recording={'off' if record_dir is None else 'on'}, "
            f"rcvbuf={args.rcvbuf}",
            flush=True,
        )
        forward = await run_mode(
            "forward", args.calls, clip, args.seconds, args.warmup, record_dir, args.rcvbuf
        )
        show(forward)
        if args.baseline_calls == 0:
            return
        relay_calls = args.calls if args.baseline_calls is None else args.baseline_calls
        baseline = await run_mode(
            "relay", relay_calls, clip, args.seconds, args.warmup, None, args.rcvbuf
        )
        show(baseline)
        ratio = forward.hub_cpu_per_call / baseline.hub_cpu_per_call
        ratio_30 = forward.hub_cpu_per_call_30fps / baseline.hub_cpu_per_call_30fps
        print(
            f"forwarding costs {ratio:.2f} of the relay's CPU per call ({ratio_30:.2f} scaled "
            f"to 30 fps; target <= 0.20); one core would carry "
            f"~{1 / forward.hub_cpu_per_call_30fps:.0f} forwarded recorded calls",
            flush=True,
        )


if __name__ == "__main__":
    if "--uvloop" in sys.argv:  # the hub's production loop (cloudcounter serve uses it)
        sys.argv.remove("--uvloop")
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
