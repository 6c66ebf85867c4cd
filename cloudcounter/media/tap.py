"""Decoded frames of the customer's video for analysis, without ever slowing forwarding.

Forwarding hands each encoded video packet to :class:`TapDecoder` (a
non-blocking put on a bounded queue). A thread of its own decodes them, only
while at least one :class:`Tap` is open, and offers every ``av.VideoFrame``
to each tap on the event loop. A tap keeps at most ``maxsize`` frames and drops
the OLDEST when its consumer is behind, so a consumer always sees a recent picture.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av

from .keyframes import KeyframeGate

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


class TapClosed(Exception):
    """The tap was closed (by its consumer or because the call ended)."""


class Tap:
    """A consumer's bounded view of the customer's decoded video."""

    def __init__(
        self, maxsize: int, max_fps: float | None, on_close: Callable[[Tap], None]
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._frames: deque[av.VideoFrame] = deque(maxlen=maxsize)
        self._min_interval = 1.0 / max_fps if max_fps else 0.0
        self._last_offer: float | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_close = on_close
        self.closed = False
        self.offered = 0
        self.dropped = 0

    def offer(self, frame: av.VideoFrame, now: float) -> None:
        """Called on the event loop for each decoded frame."""
        if self.closed:
            return
        if self._last_offer is not None and now - self._last_offer < self._min_interval:
            return
        self._last_offer = now
        self.offered += 1
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest
        self._frames.append(frame)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> av.VideoFrame | None:
        return self._frames.popleft() if self._frames else None

    async def recv(self) -> av.VideoFrame:
        """The oldest frame still kept; raises :class:`TapClosed` once closed."""
        while not self._frames:
            if self.closed:
                raise TapClosed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._frames.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._on_close(self)

    def __aiter__(self) -> Tap:
        return self

    async def __anext__(self) -> av.VideoFrame:
        try:
            return await self.recv()
        except TapClosed:
            raise StopAsyncIteration from None


class TapDecoder:
    """Decodes VP8 packets on a thread of its own and fans frames out to taps."""

    def __init__(
        self, on_need_keyframe: Callable[[], None], maxsize: int = 60, codec: str = "vp8"
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._taps: list[Tap] = []
        self._queue: queue.Queue[tuple[bytes, int | None] | None] = queue.Queue(maxsize=maxsize)
        self._gate = KeyframeGate()
        self._on_need_keyframe = on_need_keyframe
        self._codec = codec
        self._thread: threading.Thread | None = None
        self.decoded = 0
        self.errors = 0
        self.dropped = 0

    @property
    def active(self) -> bool:
        return bool(self._taps)

    def add_tap(self, maxsize: int, max_fps: float | None) -> Tap:
        tap = Tap(maxsize, max_fps, self._remove)
        self._taps.append(tap)
        if self._thread is None:
            self._gate.reset()
            self._thread = threading.Thread(target=self._run, name="tap-decoder", daemon=True)
            self._thread.start()
            self._on_need_keyframe()
        return tap

    def feed(self, data: bytes, keyframe: bool, pts: int | None = None) -> None:
        """Offer an encoded frame (never blocks); ``pts`` in 1/90000 s is kept on the frame."""
        if self._thread is None:
            return
        if not self._gate.admit(keyframe):
            self._on_need_keyframe()
            return
        try:
            self._queue.put_nowait((data, pts))
        except queue.Full:  # decoding is behind: skip to the next key frame
            self.dropped += 1
            self._gate.reset()
            self._on_need_keyframe()

    def _remove(self, tap: Tap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)
        if not self._taps:
            self._stop_thread()

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            while True:  # make room for the sentinel
                try:
                    self._queue.put_nowait(None)
                    break
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass
            thread.join()
            self._queue = queue.Queue(maxsize=self._queue.maxsize)

    def close(self) -> None:
        for tap in list(self._taps):
            tap.close()
        self._stop_thread()

    def _deliver(self, frame: av.VideoFrame) -> None:
        now = time.monotonic()
        for tap in list(self._taps):
            tap.offer(frame, now)

    def _run(self) -> None:
        work = self._queue
        codec: Any = av.CodecContext.create(self._codec, "r")
        while True:
            item = work.get()
            if item is None:
                break
            packet = av.Packet(item[0])
            packet.pts = item[1]
            packet.time_base = VIDEO_TIME_BASE
            try:
                frames = codec.decode(packet)
            except av.FFmpegError as exc:
                self.errors += 1
                logger.debug("tap decoder: %s", exc)
                continue
            for frame in frames:
                self.decoded += 1
                try:
                    self._loop.call_soon_threadsafe(self._deliver, frame)
                except RuntimeError:  # loop closed
                    return
