"""A track that hands aiortc's sender encoded packets (``av.Packet``), so it never encodes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .keyframes import KeyframeGate

logger = logging.getLogger(__name__)


class PacketTrack(MediaStreamTrack):
    """Forwarded packets for one downstream sender, from a bounded queue.

    Packets pushed before the sender starts reading are dropped (the sender
    starts once ICE and DTLS are up). Video then starts on a key frame: the
    first ``recv()`` calls ``on_start`` (ask upstream for a key frame) and
    delta frames are dropped until one arrives, calling ``on_need_keyframe``.
    When the sender falls behind, the queue is emptied: audio loses the oldest
    packets, video waits for the next key frame.
    """

    def __init__(
        self,
        kind: str,
        *,
        maxsize: int = 120,
        on_start: Callable[[], None] | None = None,
        on_need_keyframe: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue(maxsize=maxsize)
        self._on_start = on_start
        self._on_need_keyframe = on_need_keyframe
        self._gate = KeyframeGate() if kind == "video" else None
        self.started = False
        self.pushed = 0
        self.sent = 0
        self.dropped = 0

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._gate is not None and self._gate.waiting

    def push(self, packet: av.Packet) -> None:
        """Offer a packet (never blocks)."""
        if not self.started or self.readyState != "live":
            return
        self.pushed += 1
        if self._gate is not None and not self._gate.admit(bool(packet.is_keyframe)):
            self.dropped += 1
            self._need_keyframe()
            return
        if self._queue.full():
            self._overflow()
            if self._gate is not None and not packet.is_keyframe:
                self.dropped += 1
                return
        self._queue.put_nowait(packet)

    def _overflow(self) -> None:
        if self._gate is None:
            self._queue.get_nowait()  # audio: drop the oldest
            self.dropped += 1
            return
        while not self._queue.empty():  # video: a gap, restart on a key frame
            self._queue.get_nowait()
            self.dropped += 1
        self._gate.reset()
        self._need_keyframe()

    def _need_keyframe(self) -> None:
        if self._on_need_keyframe is not None:
            self._on_need_keyframe()

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self.started:
            self.started = True
            if self._on_start is not None:
                self._on_start()
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        self.sent += 1
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        super().stop()
