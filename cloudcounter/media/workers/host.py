"""The worker side: a host for the same :class:`~cloudcounter.media.call.CallMedia` code the
hub runs in process, driven over a :class:`~.protocol.Channel`.

The worker writes no database row and no timeline event: it reports what happened (a leg
ended, a recording failed, each leg's flow, decoded tap frames, its load) and the hub, the
one writer of the journal, records it. Recording files are written by the worker, into the
directory the hub names (the same filesystem, or shared storage for a remote worker).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from cloudcounter.errors import InvalidMessage, InvalidState
from cloudcounter.media.call import ROLES, CallMedia, EndReason
from cloudcounter.media.errors import RecordingFailed
from cloudcounter.media.tap import Tap, TapClosed

from .protocol import Channel

log = logging.getLogger(__name__)
FLOW_INTERVAL_S = 0.25
LOAD_INTERVAL_S = 1.0
MAX_CALLS_DEFAULT = 15  # measured: 15 recorded calls at 29 fps on one core (docs/deploy.md)


def _role(args: dict[str, Any]) -> Any:
    role = args.get("role")
    if role not in ROLES:
        raise InvalidMessage(f"unknown role {role!r}", code="invalid_role")
    return role


def _text(args: dict[str, Any], name: str, limit: int = 256 * 1024) -> str:
    value = args.get(name)
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidMessage(f"{name} must be a string", code="invalid_message")
    return value


COUNTERS = ("audio_packets", "video_frames", "video_keyframes", "forwarded_audio",
            "forwarded_video", "dropped_video", "broken_video")


def _direction(d: Any) -> dict[str, int]:
    return {k: int(getattr(d, k, 0)) for k in COUNTERS}


def _yuv_bytes(frame: Any) -> bytes:
    return bytes(frame.to_ndarray().tobytes())


@dataclasses.dataclass
class Hosted:
    media_id: str
    call_id: str
    media: CallMedia
    tap: Tap | None = None
    tap_task: asyncio.Task[None] | None = None


class WorkerHost:
    """Every call this worker carries; :meth:`handle` answers the hub's requests and
    :meth:`on_event` takes its events. Tasks are owned and cancelled in :meth:`stop`."""

    def __init__(self, worker_id: str, capacity: int = MAX_CALLS_DEFAULT,
                 on_idle: Callable[[], None] | None = None) -> None:
        self.worker_id, self.capacity = worker_id, capacity
        self.calls: dict[str, Hosted] = {}
        self.channel: Channel | None = None
        self.draining = False
        self.on_idle = on_idle  # a draining worker with no call left exits
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cpu = (time.process_time(), time.monotonic())
        self.cpu = 0.0  # share of one core over the last interval
        self.closed_calls = 0

    # -- load ------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        cpu_now, wall_now = time.process_time(), time.monotonic()
        cpu0, wall0 = self._cpu
        if wall_now - wall0 >= 0.5:
            self.cpu = (cpu_now - cpu0) / (wall_now - wall0)
            self._cpu = (cpu_now, wall_now)
        pin = pout = lost = 0
        for h in list(self.calls.values()):
            s = h.media.stats()
            for d in (s.from_customer, s.from_agent):
                pin += d.audio_packets + d.video_frames
                pout += d.forwarded_audio + d.forwarded_video
                lost += d.dropped_video + d.broken_video
        return {"worker": self.worker_id, "pid": os.getpid(), "capacity": self.capacity,
                "calls": len(self.calls), "cpu": round(self.cpu, 4),
                "process_cpu_s": round(time.process_time(), 3),
                "packets_in": pin, "packets_out": pout, "lost": lost,
                "draining": self.draining}

    def _flows(self) -> dict[str, Any]:
        now = time.monotonic()

        def age(t: float | None) -> float | None:
            return None if t is None else max(0.0, now - t)
        out: dict[str, Any] = {}
        for media_id, h in list(self.calls.items()):
            legs: dict[str, Any] = {}
            for role in ROLES:
                f = h.media.flow(role)
                legs[role] = None if f is None else {
                    "answered_ago": age(f.answered_at), "expects_video": f.expects_video,
                    "packet_ago": age(f.last_packet_at), "video_ago": age(f.last_video_at)}
            s = h.media.stats()
            out[media_id] = {"legs": legs, "monitors": h.media.monitors, "stats": {
                "from_customer": _direction(s.from_customer),
                "from_agent": _direction(s.from_agent),
                "keyframe_requests": dict(s.keyframe_requests),
                "tap_frames_decoded": s.tap_frames_decoded}}
        return out

    async def report(self) -> None:
        """Flows four times a second, the load once a second (the hub's lease on us)."""
        last_load = 0.0
        while True:
            ch = self.channel
            if ch is not None and not ch.closed:
                if self.calls:
                    ch.notify("flows", {"calls": self._flows()})
                if time.monotonic() - last_load >= LOAD_INTERVAL_S:
                    ch.notify("load", self.load())
                    last_load = time.monotonic()
            await asyncio.sleep(FLOW_INTERVAL_S)

    # -- requests from the hub -------------------------------------------------------
    def _hosted(self, args: dict[str, Any]) -> Hosted:
        h = self.calls.get(str(args.get("media")))
        if h is None:
            raise InvalidState("no such call on this worker", code="no_media")
        return h

    async def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "open":
            return self._open(args)
        if method == "ping":
            return self.load()
        if method == "drain":
            self.drain()
            return {"calls": len(self.calls)}
        h = self._hosted(args)
        if method == "answer":
            return {"sdp": await h.media.answer(_role(args), _text(args, "offer"))}
        if method == "reset_leg":
            return {"closed": await h.media.reset_leg(_role(args))}
        if method == "add_monitor":
            return {"sdp": await h.media.add_monitor(_text(args, "monitor", 200), _role(args),
                                                     _text(args, "offer"))}
        if method == "remove_monitor":
            return {"removed": await h.media.remove_monitor(_text(args, "monitor", 200))}
        if method == "start_recording":
            key = args.get("key")
            paths = h.media.start_recording(
                Path(_text(args, "directory", 4096)),
                on_failed=lambda role, err: self._recording_failed(h, role, err),
                key=bytes.fromhex(key) if isinstance(key, str) else None)
            return {"paths": {r: str(p) for r, p in paths.items()}}
        if method == "close":
            return {"infos": await self._close(h)}
        if method == "leg_stats":
            from cloudcounter.hub.media_stats import _from_aiortc  # the one figure reader
            legs = await _from_aiortc(h.call_id, h.media)
            return {"legs": [dataclasses.asdict(x) for x in legs]}
        raise InvalidMessage(f"unknown method {method!r}", code="unknown_method")

    def _open(self, args: dict[str, Any]) -> dict[str, Any]:
        media_id, call_id = _text(args, "media", 200), _text(args, "call_id", 200)
        if self.draining:
            raise InvalidState("this worker is draining", code="worker_draining")
        if media_id in self.calls:
            raise InvalidState("this call is already open here", code="media_exists")
        ice = args.get("ice_servers") or []
        hosts = args.get("host_addresses")
        if not isinstance(ice, list) or (hosts is not None and not isinstance(hosts, list)):
            raise InvalidMessage("bad ICE configuration", code="invalid_message")
        media = CallMedia(call_id=call_id, ice_servers=ice, host_addresses=hosts,
                          on_ended=lambda role, reason: self._leg_ended(media_id, role, reason))
        self.calls[media_id] = Hosted(media_id, call_id, media)
        return {"origin_ago": time.monotonic() - media.origin}

    async def _close(self, h: Hosted) -> dict[str, Any]:
        self.calls.pop(h.media_id, None)
        self._stop_tap(h)
        infos = await h.media.close()
        self.closed_calls += 1
        if self.draining and not self.calls and self.on_idle is not None:
            self.on_idle()
        return {role: {"path": str(i.path), "sha256": i.sha256, "size_bytes": i.size_bytes,
                       "duration_s": i.duration_s, "start_s": i.start_s,
                       "codecs": list(i.codecs), "packets": i.packets, "dropped": i.dropped}
                for role, i in infos.items()}

    def drain(self) -> None:
        """Take no new call; exit once the last one closed."""
        self.draining = True
        if self.channel is not None:
            self.channel.notify("load", self.load())
        if not self.calls and self.on_idle is not None:
            self.on_idle()

    # -- events from the hub ---------------------------------------------------------
    def on_event(self, name: str, args: dict[str, Any], payload: bytes) -> None:
        h = self.calls.get(str(args.get("media")))
        if h is None:
            return  # a call that closed meanwhile
        if name == "keyframe":
            h.media.request_keyframe(_role(args))
        elif name == "tap":
            if args.get("on"):
                self._start_tap(h, args.get("max_fps"))
            else:
                self._stop_tap(h)

    # -- taps: decoded customer frames to the hub's analysis ---------------------------
    def _start_tap(self, h: Hosted, max_fps: Any) -> None:
        if h.tap is not None or h.media.closed:
            return
        fps = float(max_fps) if isinstance(max_fps, (int, float)) and max_fps > 0 else None
        h.tap = h.media.add_tap(maxsize=1, max_fps=fps)
        h.tap_task = self._spawn(self._pump(h, h.tap), f"tap-{h.media_id}")

    def _stop_tap(self, h: Hosted) -> None:
        if h.tap is not None:
            h.tap.close()
            h.tap = None
        if h.tap_task is not None:
            h.tap_task.cancel()
            h.tap_task = None

    async def _pump(self, h: Hosted, tap: Tap) -> None:
        try:
            while True:
                frame = await tap.recv()
                ch = self.channel
                if ch is None or ch.closed:
                    continue
                if frame.format.name != "yuv420p":
                    frame = frame.reformat(format="yuv420p")
                data = await asyncio.to_thread(_yuv_bytes, frame)
                ch.notify("frame", {"media": h.media_id, "width": frame.width,
                                    "height": frame.height, "pts": frame.pts}, data, lossy=True)
        except TapClosed:
            return

    # -- callbacks from CallMedia ------------------------------------------------------
    def _leg_ended(self, media_id: str, role: str, reason: EndReason) -> None:
        if self.channel is not None:
            self.channel.notify("leg_ended", {"media": media_id, "role": role,
                                              "reason": reason.value})

    def _recording_failed(self, h: Hosted, role: str, err: RecordingFailed) -> None:
        if self.channel is not None:
            self.channel.notify("recording_failed", {"media": h.media_id, "role": role,
                                                     "message": err.message})

    # -- lifecycle ---------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def start(self) -> None:
        self._spawn(self.report(), "worker-report")

    async def stop(self) -> None:
        for h in list(self.calls.values()):
            await self._close(h)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
