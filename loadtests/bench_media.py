"""Media benchmark: hub CPU per call, encoded forwarding vs a decode-and-re-encode relay
and vs Janus.

    .venv/bin/python loadtests/bench_media.py [--calls 8] [--baseline-calls 2]
        [--janus-calls 8] [--forwarding frame,packet] [--seconds 10] [--no-record]
        [--clip FILE.webm]
    .venv/bin/python loadtests/bench_media.py --workers 1|2 [--calls 6] [--seconds 15]
        (the media workers' hop: runs loadtests/bench_workers.py, see its docstring)

The hub side runs in this process (one ``CallMedia`` per call, recorded, or
per call two plain peer connections joined by aiortc's ``MediaRelay``); the
customers and agents run in a separate process and send pre-encoded 640x480
30 fps VP8 + Opus both ways (``EncodedFilePlayer``) and count what they
receive without decoding. CPU is this process's user+system time (all its
threads, aiortc's encoder threads included) over the measurement window.

Janus (Debian's ``janus`` package, ``make janus``), when installed, is measured in the
same run as the baseline media server: a private Janus on loopback (its own
configuration in a temporary directory: only the VideoRoom plugin and the HTTP
transport, the Janus and admin APIs on free loopback ports), started and stopped here.
Janus leaves loopback interfaces out when it gathers ICE candidates; an ``LD_PRELOAD``
shim of ``getifaddrs`` (:data:`SHIM_C`, compiled with gcc into the same directory)
shows it only ``lo``, its loopback flag cleared, so its candidates are on 127.0.0.1.
Per call one room, two publishers (aiortc peers sending the same clip) and two
subscribers each watching the other participant: two video and two audio streams
forwarded per call, as a hub call does. Janus' CPU is its process's user+system time.
Printed: cores per forwarded video stream (CPU per call / 2) for both, and the ratio.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from cloudcounter.media import seam  # noqa: E402
from cloudcounter.media.call import CallMedia  # noqa: E402
from cloudcounter.media.client import ClientPeer  # noqa: E402
from cloudcounter.media.sources import EncodedFilePlayer, prepare_vp8_webm  # noqa: E402
from cloudcounter.vision.data import faces_dir  # noqa: E402

LOOPBACK = ["127.0.0.1"]
DEFAULT_SOURCE = faces_dir() / "video" / "talking.mp4"  # CLOUDCOUNTER_FACES_DIR
JANUS_PLUGIN = "janus.plugin.videoroom"
JANUS_TIMEOUT = aiohttp.ClientTimeout(total=60)


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


# -- Janus, the baseline media server ------------------------------------------------

SHIM_C = r"""
/* getifaddrs() that lists only "lo", its IFF_LOOPBACK flag cleared (Janus skips loopback). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC 0x6c6f6f70u
struct block { unsigned magic; struct ifaddrs *orig; struct ifaddrs items[]; };

int getifaddrs(struct ifaddrs **out) {
    int (*real)(struct ifaddrs **) = dlsym(RTLD_NEXT, "getifaddrs");
    struct ifaddrs *all = NULL, *ifa;
    size_t n = 0, i = 0;
    if (real(&all) != 0) return -1;
    for (ifa = all; ifa; ifa = ifa->ifa_next) n += strcmp(ifa->ifa_name, "lo") == 0;
    struct block *b = calloc(1, sizeof(struct block) + (n ? n : 1) * sizeof(struct ifaddrs));
    if (!b) return -1;
    b->magic = MAGIC;
    b->orig = all;
    for (ifa = all; ifa; ifa = ifa->ifa_next) {
        if (strcmp(ifa->ifa_name, "lo") != 0) continue;
        b->items[i] = *ifa;
        b->items[i].ifa_flags &= ~IFF_LOOPBACK;
        b->items[i].ifa_next = i + 1 < n ? &b->items[i + 1] : NULL;
        i++;
    }
    *out = n ? b->items : NULL;
    if (!n) {
        void (*real_free)(struct ifaddrs *) = dlsym(RTLD_NEXT, "freeifaddrs");
        real_free(all);
        free(b);
    }
    return 0;
}

void freeifaddrs(struct ifaddrs *ifa) {
    void (*real)(struct ifaddrs *) = dlsym(RTLD_NEXT, "freeifaddrs");
    if (!ifa) return;
    struct block *b = (struct block *)((char *)ifa - offsetof(struct block, items));
    if (b->magic != MAGIC) { real(ifa); return; }
    b->magic = 0;
    real(b->orig);
    free(b);
}
"""


def janus_available() -> bool:
    """Whether Janus (``make janus``) and gcc are installed."""
    return shutil.which("janus") is not None and shutil.which("gcc") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _janus_libdir() -> Path:
    for candidate in sorted(Path("/usr/lib").glob("*/janus")) + [Path("/usr/lib/janus")]:
        if (candidate / "plugins").is_dir():
            return candidate
    raise FileNotFoundError("Janus' plugins folder (Debian: /usr/lib/<arch>/janus)")


class JanusServer:
    """A private Janus on loopback, for one benchmark run: ``with JanusServer() as janus``."""

    def __init__(self, debug_level: int = 2) -> None:
        self.debug_level = debug_level
        self.port = 0
        self.admin_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/janus"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _configure(self, root: Path) -> None:
        libdir = _janus_libdir()
        for folder, name in (("plugins", "libjanus_videoroom.so"),
                             ("transports", "libjanus_http.so")):
            (root / folder).mkdir()
            (root / folder / name).symlink_to(libdir / folder / name)
        for folder in ("events", "loggers"):
            (root / folder).mkdir()
        self.port, self.admin_port = _free_port(), _free_port()
        (root / "janus.jcfg").write_text(f"""
general: {{
    configs_folder = "{root}"
    plugins_folder = "{root}/plugins"
    transports_folder = "{root}/transports"
    events_folder = "{root}/events"
    loggers_folder = "{root}/loggers"
    debug_level = {self.debug_level}
    session_timeout = 120
    server_name = "cloudcounter-bench"
}}
certificates: {{}}
media: {{}}
nat: {{
    ice_enforce_list = "lo"
}}
plugins: {{}}
transports: {{}}
events: {{}}
loggers: {{}}
""")
        (root / "janus.transport.http.jcfg").write_text(f"""
general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {self.port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_base_path = "/admin"
    admin_http = true
    admin_port = {self.admin_port}
    admin_ip = "127.0.0.1"
    admin_https = false
}}
cors: {{}}
""")
        (root / "janus.plugin.videoroom.jcfg").write_text("general: {}\n")
        shim = root / "getifaddrs_lo.c"
        shim.write_text(SHIM_C)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(root / "getifaddrs_lo.so"),
                        str(shim), "-ldl"], check=True, timeout=60)

    def start(self, timeout: float = 20.0) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench_janus_")
        root = Path(self._tmp.name)
        self._configure(root)
        log = open(root / "janus.log", "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            ["janus", "-F", str(root), "-C", str(root / "janus.jcfg"), "-o"],
            stdout=log, stderr=subprocess.STDOUT, cwd=root,
            env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(root / "getifaddrs_lo.so")},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited ({self.process.returncode}): {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"janus did not listen on {self.port} within {timeout}s")

    def log(self) -> str:
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / "janus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the Janus process, all its threads."""
        times = psutil.Process(self.pid).cpu_times()
        return times.user, times.system

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> JanusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Janus' client process: its signalling and the peers ------------------------------


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One Janus API session over HTTP, with a long-poll reader routing events by handle."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.id: int | None = None
        self._ids = itertools.count(1)
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"transaction": f"t{next(self._ids)}", **body}
        async with self.http.post(self.url + path, json=body, timeout=JANUS_TIMEOUT) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        return reply

    async def start(self) -> None:
        self.id = int((await self._post("", {"janus": "create"}))["data"]["id"])
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            async with self.http.get(f"{self.url}/{self.id}?maxev=20",
                                     timeout=JANUS_TIMEOUT) as response:
                events = await response.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                sender = event.get("sender")
                if sender in self._events:
                    self._events[sender].put_nowait(event)

    async def attach(self) -> int:
        handle = int((await self._post(f"/{self.id}", {"janus": "attach",
                                                        "plugin": JANUS_PLUGIN}))["data"]["id"])
        self._events[handle] = asyncio.Queue(maxsize=100)
        return handle

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (``create``): its plugin data."""
        reply = await self._post(f"/{self.id}/{handle}", {"janus": "message", "body": body})
        data: dict[str, Any] = reply["plugindata"]["data"]
        if "error" in data:
            raise JanusError(data["error"])
        return data

    async def message(self, handle: int, body: dict[str, Any],
                      jsep: dict[str, str] | None = None,
                      timeout: float = 30.0) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous plugin request: (plugin data, jsep) of its event."""
        message: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        await self._post(f"/{self.id}/{handle}", message)
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events[handle].get()
                if event.get("janus") != "event":
                    continue  # webrtcup, media, ...
                data = event["plugindata"]["data"]
                if "error" in data:
                    raise JanusError(data["error"])
                return data, event.get("jsep")

    async def wait_for(self, handle: int, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        """The handle's next event of type ``kind`` (``webrtcup``, ``media``...)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events[handle].get()
                if event.get("janus") == kind:
                    return event

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self.id is not None:
            with contextlib.suppress(aiohttp.ClientError, JanusError, TimeoutError):
                await self._post(f"/{self.id}", {"janus": "destroy"})


class Subscriber:
    """A receive-only aiortc peer answering Janus' offer; counts the encoded frames."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = {"audio": 0, "video": 0}
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                seam.passthrough(transceiver.receiver)
        self._tasks.append(asyncio.get_running_loop().create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            self.frames[track.kind] += 1

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        with seam.host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _publish(janus: JanusSession, room: int, name: str,
                   peer: ClientPeer) -> int:
    handle = await janus.attach()
    data, jsep = await janus.message(
        handle, {"request": "joinandconfigure", "room": room, "ptype": "publisher",
                 "display": name, "audio": True, "video": True},
        {"type": "offer", "sdp": await peer.offer()})
    if jsep is None:
        raise JanusError(f"no answer for publisher {name}: {data}")
    await peer.accept(jsep["sdp"])
    await janus.wait_for(handle, "webrtcup")
    return int(data["id"])


async def _subscribe(janus: JanusSession, room: int, feed: int, sub: Subscriber) -> None:
    handle = await janus.attach()
    async with asyncio.timeout(30):
        while True:  # a feed is subscribable once its media is set up
            try:
                data, jsep = await janus.message(
                    handle, {"request": "join", "room": room, "ptype": "subscriber",
                             "feed": feed})
                break
            except JanusError as exc:
                if "No such feed" not in str(exc):
                    raise
                await asyncio.sleep(0.2)
    if jsep is None:
        raise JanusError(f"no offer for the subscriber of {feed}: {data}")
    await janus.message(handle, {"request": "start", "room": room},
                        {"type": "answer", "sdp": await sub.answer(jsep["sdp"])})


async def _janus_client(conn: Connection, url: str, clip: Path, calls: int) -> None:
    async with aiohttp.ClientSession() as http:
        janus = JanusSession(http, url)
        await janus.start()
        admin = await janus.attach()
        publishers: list[tuple[ClientPeer, ClientPeer]] = []
        # subscribers[i] = (the agent watching the customer, the customer watching the agent)
        subscribers: list[tuple[Subscriber, Subscriber]] = []
        try:
            for i in range(calls):
                room = 1000 + i
                await janus.request(admin, {
                    "request": "create", "room": room, "publishers": 2, "bitrate": 0,
                    "audiocodec": "opus", "videocodec": "vp8", "notify_joining": False})
                pair = []
                for _ in ("customer", "agent"):
                    player = EncodedFilePlayer(clip)
                    pair.append(ClientPeer(audio=player.audio, video=player.video,
                                           host_addresses=LOOPBACK, decode=False))
                customer, agent = pair
                publishers.append((customer, agent))
                ids = [await _publish(janus, room, "customer", customer),
                       await _publish(janus, room, "agent", agent)]
                watch_customer, watch_agent = Subscriber(), Subscriber()
                subscribers.append((watch_customer, watch_agent))
                await _subscribe(janus, room, ids[0], watch_customer)
                await _subscribe(janus, room, ids[1], watch_agent)
            conn.send("ready")
            proc = psutil.Process()
            while True:
                command = await asyncio.to_thread(conn.recv)
                if command == "snapshot":
                    conn.send({
                        "at": time.monotonic(),
                        "cpu": sum(proc.cpu_times()[:2]),
                        "agent_video": [a.frames["video"] for a, _ in subscribers],
                        "customer_video": [c.frames["video"] for _, c in subscribers],
                        "agent_audio": [a.frames["audio"] for a, _ in subscribers],
                    })
                elif command == "stop":
                    break
        except Exception as exc:
            conn.send(f"error: {type(exc).__name__}: {exc}")
            raise
        finally:
            for customer, agent in publishers:
                await customer.close()
                await agent.close()
            for a, c in subscribers:
                await a.close()
                await c.close()
            await janus.close()
    conn.send("stopped")


def janus_client_main(conn: Connection, url: str, clip: str, calls: int, rcvbuf: int) -> None:
    seam.set_udp_receive_buffer(rcvbuf)
    asyncio.run(_janus_client(conn, url, Path(clip), calls))


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
    forwarding: str = "frame",
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
            if mode != "relay":
                call = CallMedia(call_id=f"bench{i}", ice_servers=[], host_addresses=LOOPBACK,
                                 forwarding=forwarding)
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
            return sum(h.stats().from_customer.video_frames for h in hubs if mode != "relay")

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


async def run_janus(calls: int, clip: Path, seconds: float, warmup: float,
                    rcvbuf: int = 2 << 20) -> Result:
    """The same calls through Janus' VideoRoom: Janus' CPU over the same window."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    with JanusServer() as janus:
        proc = ctx.Process(target=janus_client_main,
                           args=(child, janus.url, str(clip), calls, rcvbuf), daemon=True)
        proc.start()
        try:
            ready = await asyncio.wait_for(asyncio.to_thread(parent.recv), 120)
            if ready != "ready":
                raise RuntimeError(f"the Janus client failed: {ready}\n{janus.log()}")
            await asyncio.sleep(warmup)

            async def snapshot() -> tuple[tuple[float, float], dict[str, Any]]:
                cpu = janus.cpu()
                parent.send("snapshot")
                return cpu, await asyncio.to_thread(parent.recv)

            cpu0, snap0 = await snapshot()
            await asyncio.sleep(seconds)
            cpu1, snap1 = await snapshot()
            parent.send("stop")
            await asyncio.wait_for(asyncio.to_thread(parent.recv), 60)
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    elapsed = snap1["at"] - snap0["at"]

    def rates(key: str) -> list[float]:
        return [(b - a) / elapsed for a, b in zip(snap0[key], snap1[key], strict=True)]

    agent_fps = rates("agent_video")
    user = (cpu1[0] - cpu0[0]) / elapsed
    system = (cpu1[1] - cpu0[1]) / elapsed
    return Result(
        mode="janus", calls=calls, hub_cpu_per_call=(user + system) / calls,
        hub_cpu_total=user + system, hub_user_per_call=user / calls,
        hub_sys_per_call=system / calls, loop_lag_median_ms=float("nan"),
        loop_lag_p99_ms=float("nan"), client_cpu_total=(snap1["cpu"] - snap0["cpu"]) / elapsed,
        agent_fps_mean=sum(agent_fps) / calls, agent_fps_min=min(agent_fps),
        customer_fps_mean=sum(rates("customer_video")) / calls,
        audio_pps_mean=sum(rates("agent_audio")) / calls, hub_in_fps_mean=float("nan"),
    )


def per_stream(result: Result) -> float:
    """Cores per forwarded video stream: a call forwards two (and two audio streams),
    scaled to 30 fps delivered when a run falls behind."""
    return result.hub_cpu_per_call_30fps / 2


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
    parser.add_argument(
        "--janus-calls", type=int, default=None,
        help="concurrent calls through Janus (default: --calls; 0 skips Janus; skipped "
        "when Janus is not installed: make janus)",
    )
    parser.add_argument(
        "--forwarding", default="frame,packet",
        help="the hub's forwarding modes to measure, in order (CLOUDCOUNTER_MEDIA_FORWARDING)",
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
        results = []
        for forwarding in args.forwarding.split(","):
            result = await run_mode(
                forwarding, args.calls, clip, args.seconds, args.warmup, record_dir,
                args.rcvbuf, forwarding=forwarding,
            )
            show(result)
            results.append(result)
        forward = results[0]
        janus_calls = args.calls if args.janus_calls is None else args.janus_calls
        if janus_calls and not janus_available():
            print("janus: not installed (make janus), no Janus baseline", flush=True)
        elif janus_calls:
            janus = await run_janus(janus_calls, clip, args.seconds, args.warmup, args.rcvbuf)
            show(janus)
            for result in results:
                ratio = per_stream(result) / per_stream(janus)
                print(
                    f"cores per forwarded video stream (at 30 fps): hub ({result.mode} "
                    f"forwarding) {per_stream(result):.4f}, Janus {per_stream(janus):.4f}: "
                    f"the hub costs {ratio:.2f}x Janus (target <= 2)",
                    flush=True,
                )
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
    entry = main
    if any(a == "--workers" or a.startswith("--workers=") for a in sys.argv):
        # the media workers' hop (issue 16): loadtests/bench_workers.py, same arguments
        from bench_workers import main as entry  # type: ignore[no-redef]  # this folder
    if "--uvloop" in sys.argv:  # the hub's production loop (cloudcounter serve uses it)
        sys.argv.remove("--uvloop")
        import uvloop
        uvloop.run(entry())
    else:
        asyncio.run(entry())
