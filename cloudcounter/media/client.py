"""A client-side WebRTC peer (what a customer's phone or an agent's browser does).

Used by the simulators, the tests and the media benchmark: it sends an audio
and a video track, makes a complete (non-trickle) offer, accepts the hub's
answer and counts what it receives. With ``decode=False`` it counts the encoded
frames without decoding them (cheap, for load generation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from . import seam
from .call import IceServers, ice_configuration


@dataclass
class ReceivedStats:
    frames: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    keyframes: int = 0
    first_at: dict[str, float] = field(default_factory=dict)
    last_at: dict[str, float] = field(default_factory=dict)
    video_size: tuple[int, int] | None = None

    def fps(self, since: float | None = None, until: float | None = None) -> float:
        """Average received video frame rate between ``since`` and ``until`` (or first/last)."""
        start = since if since is not None else self.first_at.get("video")
        end = until if until is not None else self.last_at.get("video")
        if start is None or end is None or end <= start:
            return 0.0
        return self.frames["video"] / (end - start)


class ClientPeer:
    """One endpoint of a call, talking to the hub's leg over WebRTC."""

    def __init__(
        self,
        *,
        audio: MediaStreamTrack | None,
        video: MediaStreamTrack | None,
        ice_servers: IceServers = (),
        host_addresses: Sequence[str] | None = ("127.0.0.1",),
        decode: bool = True,
        relay_only: bool = False,
    ) -> None:
        self.pc = RTCPeerConnection(ice_configuration(ice_servers, relay_only))
        self._host_addresses = host_addresses
        self._decode = decode
        self._tasks: set[asyncio.Task[Any]] = set()
        self.received = ReceivedStats()
        self.answered_at: float | None = None
        for kind, track in (("audio", audio), ("video", video)):
            if track is not None:
                self.pc.addTrack(track)
            else:
                self.pc.addTransceiver(kind, direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if not self._decode:
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    seam.passthrough(transceiver.receiver)
        task = asyncio.get_running_loop().create_task(self._consume(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, track: MediaStreamTrack) -> None:
        stats = self.received
        kind = track.kind
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            stats.frames[kind] += 1
            stats.first_at.setdefault(kind, now)
            stats.last_at[kind] = now
            if kind == "video":
                if isinstance(frame, av.VideoFrame):
                    stats.video_size = (frame.width, frame.height)
                elif isinstance(frame, av.Packet) and frame.is_keyframe:
                    stats.keyframes += 1

    async def offer(self) -> str:
        """A complete offer, all candidates included."""
        offer = await self.pc.createOffer()
        with seam.host_addresses(self._host_addresses):
            await self.pc.setLocalDescription(offer)
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        self.answered_at = time.monotonic()

    def first_video_delay(self) -> float | None:
        """Seconds from the answer to the first received video frame."""
        first = self.received.first_at.get("video")
        if first is None or self.answered_at is None:
            return None
        return first - self.answered_at

    async def close(self) -> None:
        await self.pc.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class MonitorPeer:
    """A team lead's receive-only peer watching one participant (silent monitoring): two
    ``recvonly`` sections, audio then video; counts what arrives (``received`` by kind) and
    the picture size. For tests and the simulators; browsers do the same in JavaScript."""

    def __init__(self, ice_servers: IceServers, host_addresses: Sequence[str] | None) -> None:
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self._host_addresses = host_addresses
        self.received: dict[str, int] = {"audio": 0, "video": 0}
        self.video_size: tuple[int, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        for kind in ("audio", "video"):
            self.pc.addTransceiver(kind, direction="recvonly")
        self.pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self._read(track), name="monitor-read"))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.received[track.kind] += 1
                if isinstance(frame, av.VideoFrame):
                    self.video_size = (frame.width, frame.height)
        except MediaStreamError:
            return

    async def offer(self) -> str:
        with seam.host_addresses(self._host_addresses):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
