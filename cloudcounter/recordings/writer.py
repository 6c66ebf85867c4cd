"""Record one participant's encoded audio (Opus) and video (VP8) into a WebM file.

No decoding, no re-encoding: the packets the hub forwards are muxed as they are.
Timestamps come from the arrival times (monotonic clock) relative to an origin
shared by both participants of a call, in milliseconds (Matroska's own time
base), so a participant's audio and video stay in step and the two files of a
call can be played side by side.

Crash safety: the Matroska muxer writes a segment of unknown size first and a
cluster at least every ``cluster_ms`` (``cluster_time_limit``), and
``flush_packets`` pushes each finished cluster to the file, so a process
killed with SIGKILL leaves a file that decodes up to the last cluster (at most
``cluster_ms`` before the kill). A clean close adds the cues and the duration.

All file work happens on a writer thread fed by a bounded deque that it
drains every ``poll_s`` (no wake-up per packet: cheap for the event loop and
the GIL); ``write()`` never blocks the event loop. A failure (unwritable directory, disk full) is
reported once through ``on_failed`` on the event loop and the writer drops
everything after it; forwarding is unaffected.

With ``key`` (``CLOUDCOUNTER_AT_REST_KEY``) the file is sealed as it is written
(:mod:`cloudcounter.recordings.crypto`); its SHA-256 and size are those of the WebM
inside, so they match the file an auditor plays or exports.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from cloudcounter.media.vp8 import dimensions as vp8_dimensions
from cloudcounter.recordings.crypto import EncryptedWriter, sha256_and_size

logger = logging.getLogger(__name__)

MS = fractions.Fraction(1, 1000)
DEFAULT_SIZE = (640, 480)


@dataclass(frozen=True)
class RecordingInfo:
    """What the hub stores with the call once a recording is closed."""

    path: Path
    sha256: str
    size_bytes: int
    duration_s: float  # from the first to the last packet
    start_s: float  # first packet, seconds after the call's origin
    codecs: tuple[str, ...]  # e.g. ("vp8", "opus")
    packets: int
    dropped: int  # packets lost to a full queue or before the first key frame


@dataclass(frozen=True)
class _Item:
    kind: str  # "audio" | "video"
    data: bytes
    ms: int
    keyframe: bool


class RecordingWriter:
    """Mux one participant's packets into ``path`` on a thread of its own."""

    def __init__(
        self,
        path: Path,
        *,
        origin: float,
        on_failed: Callable[[Exception], None] | None = None,
        maxsize: int = 1000,
        cluster_ms: int = 1000,
        start_timeout_s: float = 2.0,
        poll_s: float = 0.1,
        key: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        self._key = key
        self._origin = origin
        self._on_failed = on_failed
        self._loop = asyncio.get_running_loop()
        self._items: deque[_Item | None] = deque()
        self._maxsize = maxsize
        self._wake = threading.Event()
        self._poll_s = poll_s
        self._cluster_ms = cluster_ms
        self._start_timeout_ms = int(start_timeout_s * 1000)
        self._failed: Exception | None = None
        self._closing = False
        self._dropped = 0
        self._packets = 0
        self._first_ms: int | None = None
        self._last_ms: int | None = None
        self._codecs: list[str] = []
        self._thread = threading.Thread(
            target=self._run, name=f"recorder-{self.path.name}", daemon=True
        )
        self._thread.start()

    @property
    def failed(self) -> Exception | None:
        return self._failed

    def write(self, kind: str, data: bytes, arrival: float, keyframe: bool) -> None:
        """Queue a packet (never blocks). ``arrival`` is a ``time.monotonic()`` value."""
        if self._failed is not None or self._closing:
            return
        ms = max(0, round((arrival - self._origin) * 1000))
        if len(self._items) >= self._maxsize:  # the disk is behind
            self._dropped += 1
            return
        self._items.append(_Item(kind, data, ms, keyframe))

    async def close(self) -> RecordingInfo | None:
        """Finish the file; returns None if nothing was written or writing failed."""
        if not self._closing:
            self._closing = True
            await self._loop.run_in_executor(None, self._finish)
        if self._failed is not None or self._packets == 0 or not self.path.exists():
            return None
        return await self._loop.run_in_executor(None, self._info)

    # -- writer thread --------------------------------------------------------------

    def _finish(self) -> None:
        self._items.append(None)
        self._wake.set()
        self._thread.join()

    def _next(self) -> _Item | None:
        while not self._items:
            self._wake.wait(self._poll_s)
            self._wake.clear()
        return self._items.popleft()

    def _info(self) -> RecordingInfo:
        sha256, size = sha256_and_size(self.path, self._key)
        first = self._first_ms or 0
        last = self._last_ms or first
        return RecordingInfo(
            path=self.path,
            sha256=sha256,
            size_bytes=size,
            duration_s=(last - first) / 1000,
            start_s=first / 1000,
            codecs=tuple(self._codecs),
            packets=self._packets,
            dropped=self._dropped,
        )

    def _fail(self, exc: Exception) -> None:
        if self._failed is not None:
            return
        self._failed = exc
        logger.error("recording %s failed: %s", self.path, exc)
        if self._on_failed is not None:
            try:
                self._loop.call_soon_threadsafe(self._on_failed, exc)
            except RuntimeError:  # loop closed
                pass

    def _run(self) -> None:
        muxer: _Muxer | None = None
        pending: list[_Item] = []
        try:
            while True:
                item = self._next()
                if item is None:
                    break
                if self._failed is not None:
                    continue
                if muxer is None:
                    pending.append(item)
                    size = self._start_size(pending)
                    if size is None:
                        if len(pending) > 500:
                            self._dropped += len(pending) - 500
                            del pending[:-500]
                        continue
                    muxer = _Muxer(self.path, size, self._cluster_ms, self._key)
                    self._codecs = ["vp8", "opus"]
                    for queued in pending:
                        self._mux(muxer, queued)
                    pending.clear()
                else:
                    self._mux(muxer, item)
            if muxer is None and pending and self._failed is None:
                # Short call: start with what we have (audio only, or a late key frame).
                size = self._start_size(pending, final=True)
                muxer = _Muxer(self.path, size or DEFAULT_SIZE, self._cluster_ms, self._key)
                self._codecs = ["vp8", "opus"]
                for queued in pending:
                    self._mux(muxer, queued)
        except (OSError, av.FFmpegError) as exc:
            self._fail(exc)
        finally:
            if muxer is not None:
                try:
                    muxer.close()
                except (OSError, av.FFmpegError) as exc:
                    self._fail(exc)

    def _start_size(self, pending: list[_Item], final: bool = False) -> tuple[int, int] | None:
        """The video size to open the file with, once it is known (or waited for long enough)."""
        for item in pending:
            if item.kind == "video" and item.keyframe:
                return vp8_dimensions(item.data) or DEFAULT_SIZE
        waited = pending[-1].ms - pending[0].ms
        if final or waited >= self._start_timeout_ms:
            return DEFAULT_SIZE
        return None

    def _mux(self, muxer: _Muxer, item: _Item) -> None:
        if muxer.mux(item):
            self._packets += 1
            if self._first_ms is None:
                self._first_ms = item.ms
            self._last_ms = max(self._last_ms or 0, item.ms)
        else:
            self._dropped += 1


class _Muxer:
    """The PyAV side: a WebM container with one VP8 and one Opus stream (writer thread only)."""

    def __init__(self, path: Path, size: tuple[int, int], cluster_ms: int,
                 key: bytes | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sealed = EncryptedWriter(path, key) if key is not None else None
        self._container: Any = av.open(
            self._sealed if self._sealed is not None else str(path),
            "w",
            format="webm",
            container_options={
                "cluster_time_limit": str(cluster_ms),
                "flush_packets": "1",
                # Packets are queued in arrival order already: do not hold one
                # stream back waiting for the other (camera off, muted audio).
                "max_interleave_delta": "1",
            },
        )
        video = self._container.add_stream("libvpx", rate=30)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.time_base = MS
        audio = self._container.add_stream("libopus", rate=48000)
        audio.layout = "stereo"
        audio.time_base = MS
        self._streams = {"video": video, "audio": audio}
        self._last: dict[str, int] = {}
        self._video_ok = False  # a key frame was written: deltas are decodable

    def mux(self, item: _Item) -> bool:
        if item.kind == "video":
            if not self._video_ok and not item.keyframe:
                return False
            self._video_ok = True
        stream = self._streams[item.kind]
        ms = max(item.ms, self._last.get(item.kind, -1) + 1)  # strictly increasing
        self._last[item.kind] = ms
        packet = av.Packet(item.data)
        packet.stream = stream
        packet.time_base = MS
        packet.pts = packet.dts = ms
        packet.is_keyframe = item.keyframe
        self._container.mux(packet)
        return True

    def close(self) -> None:
        try:
            self._container.close()
        finally:
            if self._sealed is not None:
                self._sealed.close()
