"""The hub side of a worker: :class:`WorkerLink` (one worker's channel, its calls and its
last load report) and :class:`RemoteCallMedia`, a proxy offering the part of
:class:`~cloudcounter.media.call.CallMedia`'s interface that the hub's media gateway, the
analysis and the metrics use, so that :class:`~cloudcounter.hub.media_gateway.HubMedia`
runs unchanged over it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

from cloudcounter.media.call import ROLES, CallMediaStats, EndReason, Role
from cloudcounter.media.errors import RecordingFailed
from cloudcounter.media.health import LegFlow
from cloudcounter.media.tap import Tap
from cloudcounter.recordings.writer import RecordingInfo

from .protocol import Channel, WorkerGone

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 30.0  # closing finishes both files


class WorkerLink:
    """One worker as the hub sees it. ``on_lost(link)`` runs once when its channel closes."""

    def __init__(self, worker_id: str, channel: Channel, *, pid: int | None = None,
                 on_lost: Callable[["WorkerLink"], None] | None = None,
                 on_load: Callable[["WorkerLink"], None] | None = None) -> None:
        self.worker_id, self.channel, self.pid = worker_id, channel, pid
        self.medias: dict[str, RemoteCallMedia] = {}
        self.load: dict[str, Any] = {}
        self.load_at: float | None = None
        self.draining = False
        self.on_lost, self.on_load = on_lost, on_load
        self.frames_in = 0
        self.remote = False  # registered on Redis: its lease is there (lease_ok)
        self.lease_ok = False
        channel.on_event = self._on_event
        channel.on_closed = self._closed

    @property
    def alive(self) -> bool:
        return not self.channel.closed

    def _closed(self) -> None:
        for media in list(self.medias.values()):
            media.lost = True
        if self.on_lost is not None:
            self.on_lost(self)

    def _on_event(self, name: str, args: dict[str, Any], payload: bytes) -> None:
        if name == "load":
            self.load, self.load_at = args, time.monotonic()
            self.draining = self.draining or bool(args.get("draining"))
            if self.on_load is not None:
                self.on_load(self)
            return
        if name == "flows":
            calls = args.get("calls")
            if isinstance(calls, dict):
                now = time.monotonic()
                for media_id, report in calls.items():
                    media = self.medias.get(media_id)
                    if media is not None and isinstance(report, dict):
                        media.update_flows(report, now)
            return
        media = self.medias.get(str(args.get("media")))
        if media is None:
            return
        if name == "leg_ended":
            media.leg_ended(str(args.get("role")), str(args.get("reason")))
        elif name == "recording_failed":
            media.recording_failed(str(args.get("role")), str(args.get("message", "")))
        elif name == "frame":
            self.frames_in += 1
            media.frame(args, payload)

    async def request(self, method: str, args: dict[str, Any],
                      timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        return await self.channel.request(method, args, timeout_s)


def _flow(report: Any, now: float) -> LegFlow | None:
    if not isinstance(report, dict):
        return None

    def at(key: str) -> float | None:
        v = report.get(key)
        return now - float(v) if isinstance(v, (int, float)) else None
    answered = at("answered_ago")
    return LegFlow(answered_at=answered if answered is not None else now,
                   expects_video=bool(report.get("expects_video")),
                   last_packet_at=at("packet_ago"), last_video_at=at("video_ago"))


class RemoteCallMedia:
    """A call's media on a worker (see the module). Open it with :meth:`open`."""

    def __init__(self, link: WorkerLink, media_id: str, call_id: str,
                 on_ended: Callable[[Role, EndReason], None] | None, tap_fps: float | None
                 ) -> None:
        self.link, self.media_id, self.call_id = link, media_id, call_id
        self.origin = time.monotonic()
        self._on_ended = on_ended
        self._on_recording_failed: Callable[[Role, RecordingFailed], None] | None = None
        self._closed = False
        self.lost = False  # the worker died under it
        self._flows: dict[str, LegFlow | None] = {}
        self._ended: set[str] = set()
        self._monitors: list[str] = []
        self._taps: list[Tap] = []
        self._tap_fps = tap_fps
        self._tasks: set[asyncio.Task[Any]] = set()
        self.recording_paths: dict[str, Path] = {}
        self._stats = CallMediaStats()

    @property
    def worker_id(self) -> str:
        return self.link.worker_id

    async def open(self, ice_servers: Any, host_addresses: Any) -> None:
        self.link.medias[self.media_id] = self
        try:
            reply = await self.link.request("open", {
                "media": self.media_id, "call_id": self.call_id,
                "ice_servers": [dict(s) for s in ice_servers],
                "host_addresses": list(host_addresses) if host_addresses is not None else None})
        except BaseException:
            self.link.medias.pop(self.media_id, None)
            raise
        self.origin = time.monotonic() - float(reply.get("origin_ago", 0.0))

    # -- CallMedia's interface ------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed or self.lost

    @property
    def monitors(self) -> list[str]:
        return list(self._monitors)

    async def answer(self, role: Role, offer_sdp: str) -> str:
        reply = await self.link.request("answer", {"media": self.media_id, "role": role,
                                                   "offer": offer_sdp})
        self._ended.discard(role)
        return str(reply["sdp"])

    async def reset_leg(self, role: Role) -> bool:
        reply = await self.link.request("reset_leg", {"media": self.media_id, "role": role})
        self._flows.pop(role, None)
        return bool(reply.get("closed"))

    async def add_monitor(self, monitor_id: str, role: Role, offer_sdp: str) -> str:
        reply = await self.link.request("add_monitor", {
            "media": self.media_id, "monitor": monitor_id, "role": role, "offer": offer_sdp})
        if monitor_id not in self._monitors:
            self._monitors.append(monitor_id)
        return str(reply["sdp"])

    async def remove_monitor(self, monitor_id: str) -> bool:
        if monitor_id in self._monitors:
            self._monitors.remove(monitor_id)
        reply = await self.link.request("remove_monitor", {"media": self.media_id,
                                                           "monitor": monitor_id})
        return bool(reply.get("removed"))

    def start_recording(self, directory: Path, *,
                        on_failed: Callable[[Role, RecordingFailed], None] | None = None,
                        key: bytes | None = None) -> dict[Role, Path]:
        """The same paths CallMedia would choose; the worker opens them (its request goes
        out before any later one, so the files exist before the legs are answered)."""
        self._on_recording_failed = on_failed
        paths: dict[Role, Path] = {
            role: Path(directory) / f"{self.call_id}-{role}.webm{'.enc' if key else ''}"
            for role in ROLES}
        self.recording_paths = {str(r): p for r, p in paths.items()}
        self._spawn(self._start_recording(Path(directory), key), "start-recording")
        return paths

    async def _start_recording(self, directory: Path, key: bytes | None) -> None:
        try:
            await self.link.request("start_recording", {
                "media": self.media_id, "directory": str(directory),
                "key": key.hex() if key else None})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - told like a failed file
            for role in ROLES:
                self.recording_failed(role, f"the worker did not start recording: {exc}")

    def flow(self, role: Role) -> LegFlow | None:
        if self.closed or role in self._ended:
            return None
        return self._flows.get(role)

    def request_keyframe(self, role: Role) -> None:
        self.link.channel.notify("keyframe", {"media": self.media_id, "role": role})

    def add_tap(self, maxsize: int = 2, max_fps: float | None = None) -> Tap:
        if self.closed:
            raise WorkerGone("the call's media is closed")
        tap = Tap(maxsize, max_fps, self._tap_closed)
        self._taps.append(tap)
        if len(self._taps) == 1:
            self.link.channel.notify("tap", {"media": self.media_id, "on": True,
                                             "max_fps": self._tap_fps})
        return tap

    def _tap_closed(self, tap: Tap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)
        if not self._taps and not self.closed:
            self.link.channel.notify("tap", {"media": self.media_id, "on": False})

    def stats(self) -> CallMediaStats:
        return self._stats

    async def leg_stats(self) -> list[Any]:
        from cloudcounter.hub.media_stats import KindStats, LegStats  # the figures' types

        if self.closed:
            return []
        reply = await self.link.request("leg_stats", {"media": self.media_id}, 5.0)
        out = []
        for leg in reply.get("legs", []):
            inbound = {k: KindStats(**v) for k, v in (leg.pop("inbound") or {}).items()}
            out.append(LegStats(**leg, inbound=inbound))
        return out

    async def close(self) -> dict[Role, RecordingInfo]:
        if self._closed:
            return {}
        self._closed = True
        for tap in list(self._taps):
            tap.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if self.lost:
                return {}
            reply = await self.link.request("close", {"media": self.media_id}, CLOSE_TIMEOUT_S)
        except WorkerGone:
            self.lost = True
            return {}
        finally:
            self.link.medias.pop(self.media_id, None)
        infos: dict[Role, RecordingInfo] = {}
        for role, i in (reply.get("infos") or {}).items():
            if role in ROLES:
                infos[role] = RecordingInfo(
                    path=Path(i["path"]), sha256=i["sha256"], size_bytes=int(i["size_bytes"]),
                    duration_s=float(i["duration_s"]), start_s=float(i["start_s"]),
                    codecs=tuple(i["codecs"]), packets=int(i["packets"]),
                    dropped=int(i["dropped"]))
        return infos

    # -- from the worker ------------------------------------------------------------------
    def update_flows(self, report: dict[str, Any], now: float) -> None:
        legs = report.get("legs")
        if isinstance(legs, dict):
            for role in ROLES:
                self._flows[role] = _flow(legs.get(role), now)
        stats = report.get("stats")
        if isinstance(stats, dict):
            for name in ("from_customer", "from_agent"):
                d, counts = getattr(self._stats, name), stats.get(name)
                if isinstance(counts, dict):
                    for k, v in counts.items():
                        if isinstance(v, int) and hasattr(d, k):
                            setattr(d, k, v)
            if isinstance(stats.get("keyframe_requests"), dict):
                self._stats.keyframe_requests = dict(stats["keyframe_requests"])
            if isinstance(stats.get("tap_frames_decoded"), int):
                self._stats.tap_frames_decoded = stats["tap_frames_decoded"]
        monitors = report.get("monitors")
        if isinstance(monitors, list):
            self._monitors = [str(m) for m in monitors]

    def leg_ended(self, role: str, reason: str) -> None:
        if role not in ROLES or self.closed:
            return
        self._ended.add(role)
        self._flows[role] = None
        if self._on_ended is not None:
            try:
                end = EndReason(reason)
            except ValueError:
                end = EndReason.CONNECTION_LOST
            self._on_ended(role, end)  # type: ignore[arg-type]

    def recording_failed(self, role: str, message: str) -> None:
        if role in ROLES and self._on_recording_failed is not None:
            self._on_recording_failed(role, RecordingFailed(message, role=role))  # type: ignore[arg-type]

    def frame(self, args: dict[str, Any], payload: bytes) -> None:
        if not self._taps:
            return
        w, h = args.get("width"), args.get("height")
        if not (isinstance(w, int) and isinstance(h, int)) or len(payload) != w * h * 3 // 2:
            return  # not a yuv420p frame of the size it says
        arr = np.frombuffer(payload, np.uint8).reshape(h * 3 // 2, w)
        frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
        pts = args.get("pts")
        if isinstance(pts, int):
            frame.pts = pts
        now = time.monotonic()
        for tap in list(self._taps):
            tap.offer(frame, now)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"remote-{self.media_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
