"""Media sources for simulators, tests and benchmarks.

* :class:`EncodedFilePlayer`: audio and video tracks that send a VP8/Opus
  WebM (or a VP8 IVF) file's packets as they are, paced by their timestamps,
  looping; aiortc's sender packs them without encoding, so load generation
  is cheap. The file's key frame interval is what the receiver gets (a PLI
  cannot be honoured): encode it with a short GOP (:func:`prepare_vp8_webm`).
* :class:`PatternVideoTrack` / :class:`ToneAudioTrack`: generated raw frames
  (a moving test pattern, a tone), encoded live by aiortc (honours PLIs).
* :func:`prepare_vp8_webm`: transcode a clip once into such a WebM file.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

AUDIO_RATE = 48000
VIDEO_CLOCK = 90000


class _Clock:
    """The start time shared by a player's tracks, so audio and video stay in step."""

    def __init__(self) -> None:
        self.start: float | None = None

    def now(self) -> float:
        if self.start is None:
            self.start = time.monotonic()
        return time.monotonic() - self.start


class EncodedFileTrack(MediaStreamTrack):
    """One stream (``kind``) of a file, as ``av.Packet``s paced by their timestamps."""

    def __init__(self, path: Path, kind: str, clock: _Clock, loop: bool = True) -> None:
        super().__init__()
        self.kind = kind
        self._path = str(path)
        self._clock = clock
        self._repeat = loop
        self._packets = self._iterate()
        self.sent = 0

    def _iterate(self) -> Iterator[tuple[float, av.Packet]]:
        offset = 0.0
        while True:
            last = 0.0
            with av.open(self._path) as container:
                streams = [s for s in container.streams if s.type == self.kind]
                if not streams:
                    return
                stream = streams[0]
                time_base = stream.time_base or fractions.Fraction(1, 1000)
                first: float | None = None
                for packet in container.demux(stream):
                    if packet.size == 0 or packet.pts is None:
                        continue
                    t = float(packet.pts * time_base)
                    if first is None:
                        first = t
                    t -= first
                    last = max(last, t)
                    yield offset + t, packet
            if not self._repeat:
                return
            offset += last + (1 / 30 if self.kind == "video" else 0.02)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            t, packet = next(self._packets)
        except StopIteration:
            self.stop()
            raise MediaStreamError from None
        wait = t - self._clock.now()
        if wait > 0:
            await asyncio.sleep(wait)
        out = av.Packet(bytes(packet))
        if self.kind == "video":
            out.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            out.pts = round(t * VIDEO_CLOCK)
        else:
            out.time_base = fractions.Fraction(1, AUDIO_RATE)
            out.pts = round(t * AUDIO_RATE)
        out.is_keyframe = bool(packet.is_keyframe)
        self.sent += 1
        return out


class EncodedFilePlayer:
    """Audio and video tracks of a VP8/Opus WebM file, sent pre-encoded."""

    def __init__(self, path: Path, loop: bool = True) -> None:
        clock = _Clock()
        with av.open(str(path)) as container:
            kinds = {s.type for s in container.streams}
            codecs = {s.type: s.codec_context.name for s in container.streams}
        if codecs.get("video", "vp8") != "vp8" or codecs.get("audio", "opus") != "opus":
            raise ValueError(f"{path}: needs VP8 video and Opus audio, has {codecs}")
        self.video = EncodedFileTrack(path, "video", clock, loop) if "video" in kinds else None
        self.audio = EncodedFileTrack(path, "audio", clock, loop) if "audio" in kinds else None


class PatternVideoTrack(MediaStreamTrack):
    """A moving colour pattern, ``fps`` raw frames per second (aiortc encodes them)."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30) -> None:
        super().__init__()
        self._width, self._height, self._fps = width, height, fps
        self._start: float | None = None
        self._count = 0
        y, x = np.mgrid[0:height, 0:width]
        self._base = ((x // 40 + y // 40) % 2 * 120).astype(np.uint8)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._count / self._fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        shift = (self._count * 4) % self._width
        luma = np.roll(self._base, shift, axis=1)
        img = np.stack([luma, np.full_like(luma, self._count % 256), 255 - luma], axis=2)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = self._count * (VIDEO_CLOCK // self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz tone in 20 ms stereo s16 frames (aiortc encodes them with Opus)."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self._frequency = frequency
        self._start: float | None = None
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = AUDIO_RATE // 50
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._samples / AUDIO_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(n) + self._samples) / AUDIO_RATE
        tone = (np.sin(2 * math.pi * self._frequency * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples += n
        return frame


def prepare_vp8_webm(
    source: Path,
    target: Path,
    *,
    size: tuple[int, int] = (640, 480),
    fps: int = 30,
    seconds: float | None = None,
    gop: int = 30,
    bitrate: int = 800_000,
) -> Path:
    """Transcode ``source`` (any clip PyAV reads) into a VP8/Opus WebM for sending pre-encoded.

    ``gop`` frames between key frames (30 = one a second): a downstream that
    joins late waits at most that long for its first picture.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(source)) as src, av.open(str(target), "w", format="webm") as out:
        vout: Any = out.add_stream("libvpx", rate=fps)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.bit_rate = bitrate
        vout.gop_size = gop
        vout.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        has_audio = bool(src.streams.audio)
        aout: Any = out.add_stream("libopus", rate=AUDIO_RATE) if has_audio else None
        if aout is not None:
            aout.layout = "stereo"
            aout.bit_rate = 48000
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
        limit = seconds if seconds is not None else math.inf
        vcount = 0
        for frame in src.decode(*src.streams.video[:1], *src.streams.audio[:1]):
            if not isinstance(frame, (av.VideoFrame, av.AudioFrame)):
                continue
            t = float(frame.time or 0.0)
            if t > limit:
                break
            if isinstance(frame, av.VideoFrame):
                scaled = frame.reformat(width=width, height=height, format="yuv420p")
                scaled.pts = vcount
                scaled.time_base = fractions.Fraction(1, fps)
                vcount += 1
                out.mux(vout.encode(scaled))
            elif aout is not None:
                frame.pts = None
                for resampled in resampler.resample(frame):
                    out.mux(aout.encode(resampled))
        out.mux(vout.encode(None))
        if aout is not None:
            out.mux(aout.encode(None))
    return target
