"""A call over a bad mobile link: loss, delay with jitter and a bandwidth cap on the
customer's side. Prints what the agent receives, how much loss NACKs recovered, what the
customer's encoder was told to send, and whether the recording decodes.

    sudo .venv/bin/python loadtests/bench_network.py [--seconds 20] [--loss 0.05]
        [--delay-ms 150] [--jitter-ms 30] [--rate-kbps 600] [--size 640x480] [--json]

Everything runs on this machine: the hub (``create_app``, demo settings, a temporary
SQLite database and recordings directory) and the agent (an aiortc peer on loopback)
in this process; the customer's phone (``tests/netpeer.py``: aiortc, a moving pattern
encoded to VP8 and a tone in Opus) in a network namespace whose only link to the hub is
the link emulator (``loadtests/linkem.py``; ``tc netem`` is missing from this kernel).
The namespace and the emulator are created here and removed at the end, even on
failure. Needs root and ``ip netns``. Asserts nothing; ``--json`` prints the figures
as one JSON line at the end (``tests/test_network_loss.py`` reads it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
from aiohttp import web  # noqa: E402
from aiortc import rtcrtpreceiver  # noqa: E402

from cloudcounter.db.engine import make_engine, make_sessionmaker  # noqa: E402
from cloudcounter.db.migrate import upgrade_engine  # noqa: E402
from cloudcounter.hub.app import create_app  # noqa: E402
from cloudcounter.hub.auth import mint_customer_token  # noqa: E402
from cloudcounter.hub.demo import DEMO_USERS, seed  # noqa: E402
from cloudcounter.hub.settings import Settings  # noqa: E402
from cloudcounter.media.client import ClientPeer  # noqa: E402
from cloudcounter.media.sources import PatternVideoTrack, ToneAudioTrack  # noqa: E402
from cloudcounter.sim.client import Connection, login  # noqa: E402
from cloudcounter.vision.data import faces_dir  # noqa: E402

OUTER, INNER = "10.231.43.1", "10.231.43.2"


def track_nacks() -> None:
    """Count, per receiver, the packets found missing (NACKed) and those that arrived
    after all (recovered by retransmission)."""
    original = rtcrtpreceiver.NackGenerator.add

    def add(self: Any, packet: Any) -> bool:
        if packet.sequence_number in self.missing:
            self.cc_recovered = getattr(self, "cc_recovered", 0) + 1
        before = len(self.missing)
        missed = original(self, packet)
        if missed:
            self.cc_missed = getattr(self, "cc_missed", 0) + len(self.missing) - before
        return bool(missed)

    rtcrtpreceiver.NackGenerator.add = add  # type: ignore[method-assign]


def decode_recording(path: Path) -> dict[str, Any]:
    """Decode every packet of a recording: frames per kind, and the packets that do not
    decode (with their index among the video packets)."""
    frames: dict[str, Any] = {"video": 0, "audio": 0, "undecodable": 0, "bad_at": [],
                              "video_packets": 0}
    with av.open(str(path)) as c:
        for packet in c.demux():
            if packet.size == 0:
                continue
            kind = packet.stream.type
            if kind == "video":
                frames["video_packets"] += 1
            try:
                frames[kind] += len(packet.decode())
            except av.error.InvalidDataError:
                frames["undecodable"] += 1
                if len(frames["bad_at"]) < 20:
                    frames["bad_at"].append((kind, frames["video_packets"], packet.is_keyframe,
                                             packet.size))
    return frames


class Lines:
    """A child process spoken to line by line (JSON answers)."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc, self.name = proc, name

    async def read(self, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            err = await self.proc.stderr.read() if self.proc.stderr else b""
            raise RuntimeError(f"{self.name} ended: {err.decode()[-3000:]}")
        return dict(json.loads(line))

    async def ask(self, command: str, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read(timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.terminate()
                try:
                    await asyncio.wait_for(self.proc.wait(), 5)
                except asyncio.TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()


async def spawn(name: str, *cmd: str) -> Lines:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    return Lines(proc, name)


def ip(*args: str, check: bool = True) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


async def start_hub(workdir: Path) -> tuple[web.AppRunner, Any, str, Settings]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{workdir}/hub.db", demo=True, port=0,
        recordings_dir=workdir / "recordings", customer_photos_dir=workdir / "photos",
        ice_servers=[], media_host_addresses=["127.0.0.1", OUTER], vision_workers=0,
        # media stays in the hub process: the figures read the hub receiver's NACK counters
        media_workers=0,
        vision_prestart=False, faces_dir=faces_dir(), web_dir=ROOT / "clients/web",
        node_modules_dir=ROOT / "node_modules", log_level="WARNING").checked()
    engine = make_engine(settings.database_url)
    try:
        await upgrade_engine(engine)
        await seed(make_sessionmaker(engine), settings.faces_dir)
    finally:
        await engine.dispose()
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await web.TCPSite(runner, OUTER, port).start()
    return runner, app, f"http://127.0.0.1:{port}", settings


async def scenario(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    track_nacks()
    ns = f"ccnet{os.getpid() % 100000}"
    ip("netns", "add", ns)
    link: Lines | None = None
    phone: Lines | None = None
    runner: web.AppRunner | None = None
    agent: Connection | None = None
    staff: ClientPeer | None = None
    try:
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        config = {"loss": args.loss, "delay_ms": args.delay_ms, "jitter_ms": args.jitter_ms,
                  "rate_kbps": args.rate_kbps, "seed": args.seed}
        link = await spawn("the link emulator", sys.executable, str(ROOT / "loadtests/linkem.py"),
                           ns, OUTER, INNER, json.dumps(config))
        await link.read()
        runner, app, url, settings = await start_hub(workdir)
        from cloudcounter.hub.api import CTX
        ctx = app[CTX]
        password = next(p for u, p, *_ in DEMO_USERS if u == "alice")
        agent = Connection(url, "/agent", await login(url, "alice", password))
        await agent.connect()
        await agent.call("agent:status", {"status": "available"})
        w, h = (int(v) for v in (args.agent_size or args.size).split("x"))
        staff = ClientPeer(audio=ToneAudioTrack(), video=PatternVideoTrack(w, h), decode=False)
        token = mint_customer_token(settings.customer_token_secret, "cus_demo_barack", 600)
        phone = await spawn("the phone", "ip", "netns", "exec", ns, sys.executable, "-m",
                            "tests.netpeer", url.replace("127.0.0.1", OUTER), token,
                            "card_loss", args.size)
        _, offer = await agent.expect("call:offer", timeout=120)
        call_id = offer["call_id"]
        await agent.call("call:accept", {"call_id": call_id})
        reply = await agent.call("media:offer", {"call_id": call_id, "type": "offer",
                                                 "sdp": await staff.offer()})
        await staff.accept(reply["sdp"])
        ready = await phone.read(120)
        assert ready.get("ready"), ready
        deadline = time.monotonic() + 60
        while staff.received.frames["video"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.warmup)
        media = ctx.media.segments[call_id].media
        nacks = media._legs["customer"].receivers["video"]._RTCRtpReceiver__nack_generator

        def snap() -> dict[str, Any]:
            return {"t": time.monotonic(), "video": staff.received.frames["video"],
                    "audio": staff.received.frames["audio"],
                    "missed": getattr(nacks, "cc_missed", 0),
                    "recovered": getattr(nacks, "cc_recovered", 0)}

        start, start_link, start_phone = snap(), await link.ask("stats"), await phone.ask("stats")
        buckets: list[int] = []  # audio frames at the agent per second
        last = start["audio"]
        for _ in range(int(args.seconds)):
            await asyncio.sleep(1.0)
            now = staff.received.frames["audio"]
            buckets.append(now - last)
            last = now
        end, end_link, end_phone = snap(), await link.ask("stats"), await phone.ask("stats")
        hub_stats = media.stats()
        await phone.ask("hangup")
        await agent.expect("call:ended", timeout=30)
        window = end["t"] - start["t"]
        up0, up1 = start_link["uplink"], end_link["uplink"]
        down0, down1 = start_link["downlink"], end_link["downlink"]
        (path,) = Path(settings.recordings_dir).glob(f"**/{call_id}-customer.webm")
        recorded = await asyncio.to_thread(decode_recording, path)
        missed = end["missed"] - start["missed"]
        recovered = end["recovered"] - start["recovered"]
        return {
            "link": config | {"size": args.size, "agent_size": args.agent_size or args.size,
                              "seconds": round(window, 1)},
            "agent_video_fps": round((end["video"] - start["video"]) / window, 1),
            "agent_audio_pps": round((end["audio"] - start["audio"]) / window, 1),
            "agent_audio_min_per_s": min(buckets) if buckets else 0,
            # totals since the call began: what the hub forwarded, what the agent got
            "agent_audio_packets": end["audio"],
            "hub_forwarded_audio": hub_stats.from_customer.forwarded_audio,
            "uplink_kbps": round((up1["bytes_delivered"] - up0["bytes_delivered"]) * 8
                                 / window / 1000, 1),
            "uplink_packets": up1["packets_in"] - up0["packets_in"],
            "uplink_lost": up1["lost"] - up0["lost"],
            "uplink_queue_dropped": up1["queue_dropped"] - up0["queue_dropped"],
            "downlink_kbps": round((down1["bytes_delivered"] - down0["bytes_delivered"]) * 8
                                   / window / 1000, 1),
            "downlink_lost": down1["lost"] - down0["lost"],
            "downlink_queue_dropped": down1["queue_dropped"] - down0["queue_dropped"],
            "hub_video_packets_nacked": missed,
            "hub_video_packets_recovered": recovered,
            "recovered_share": round(recovered / missed, 3) if missed else None,
            "customer_retransmitted": end_phone["retransmitted"] - start_phone["retransmitted"],
            "customer_encoder_target_kbps": (end_phone["target_bitrate"] or 0) // 1000,
            "customer_received_video_fps": round(
                (end_phone["video"] - start_phone["video"]) / window, 1),
            "hub_received_video_frames": hub_stats.from_customer.video_frames,
            "hub_keyframes_from_customer": hub_stats.from_customer.video_keyframes,
            "hub_broken_video_dropped": hub_stats.from_customer.broken_video,
            "keyframe_requests": dict(hub_stats.keyframe_requests),
            "remb_relayed": dict(hub_stats.remb_relayed),
            "remb_coalesced": dict(hub_stats.remb_coalesced),
            "recording_frames": recorded,
        }
    finally:
        if phone is not None:
            await phone.stop()
        if staff is not None:
            await staff.close()
        if agent is not None:
            await agent.close()
        if runner is not None:
            await runner.cleanup()
        if link is not None:
            await link.stop()
        ip("netns", "del", ns, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--delay-ms", type=float, default=150)
    parser.add_argument("--jitter-ms", type=float, default=30)
    parser.add_argument("--rate-kbps", type=float, default=600)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--agent-size", default="",
                        help="the agent's video (default: --size); the hub does not relay "
                        "the customer's bandwidth feedback to the agent yet, so a large "
                        "agent picture congests the customer's downlink")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_network needs root (network namespaces and TUN devices)")
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        figures = asyncio.run(scenario(args, Path(tmp)))
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
