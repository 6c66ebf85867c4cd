"""Real audio and video for the simulators: a WebRTC peer that talks to the hub's leg.

``--video FILE``: a VP8/Opus WebM is sent pre-encoded (cheap: no encoding at all); any
other clip is transcoded once into a cached WebM next to it under ``var/sim-cache/`` and
then sent pre-encoded. Without a file, a generated test pattern and tone are sent (aiortc
encodes them). What arrives is counted, not decoded, unless ``decode=True``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import av
from aiortc import MediaStreamTrack

from cloudcounter.media.client import ClientPeer
from cloudcounter.media.sources import (
    EncodedFilePlayer, PatternVideoTrack, ToneAudioTrack, prepare_vp8_webm,
)
from cloudcounter.sim.client import Connection, SimError

CACHE = Path("var/sim-cache")


def encoded_source(path: str | Path, cache: Path = CACHE) -> Path:
    """A VP8/Opus WebM version of ``path`` (the file itself if it already is one)."""
    p = Path(path)
    if not p.is_file():
        raise SimError(f"video file {str(path)!r} does not exist")
    try:
        with av.open(str(p)) as c:
            codecs = {s.type: s.codec_context.name for s in c.streams}
    except av.FFmpegError as exc:
        raise SimError(f"cannot read {p}: {exc}") from None
    if codecs.get("video") == "vp8" and codecs.get("audio", "opus") == "opus":
        return p
    digest = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:12]
    target = cache / f"{p.stem}-{digest}.webm"
    if not target.exists():
        # Several simulators may prepare the same clip at once: each writes a file of its
        # own and renames it into place (atomic; the last one wins, all are identical).
        cache.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".webm", dir=cache)
        os.close(fd)
        tmp = Path(name)
        try:
            prepare_vp8_webm(p, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


class SimMedia:
    """Start after the call is answered; ``stop()`` returns what was received."""

    def __init__(self, role: str, video: str | Path | None = None, decode: bool = False,
                 ice_servers: list[dict[str, Any]] | None = None) -> None:
        self.role = role
        self.video = video
        self.decode = decode
        self.ice_servers = ice_servers or []
        self.peer: ClientPeer | None = None
        self.started_at: float | None = None
        self.error: str | None = None

    async def prepare(self) -> None:
        """Make the pre-encoded source ready before the call (transcoding takes a while)."""
        if self.video:
            self.video = await asyncio.to_thread(encoded_source, self.video)

    async def start(self, conn: Connection, call_id: str) -> None:
        audio: MediaStreamTrack | None
        video: MediaStreamTrack | None
        if self.video:
            await self.prepare()
            player = EncodedFilePlayer(Path(self.video))
            audio, video = player.audio, player.video
        else:
            audio, video = ToneAudioTrack(), PatternVideoTrack()
        self.peer = ClientPeer(audio=audio, video=video, ice_servers=self.ice_servers,
                               host_addresses=("127.0.0.1",) if loopback(conn.url) else None,
                               decode=self.decode)
        self.started_at = time.monotonic()
        offer = await self.peer.offer()
        reply = await conn.call("media:offer", {"call_id": call_id, "type": "offer",
                                                "sdp": offer})
        if not reply.get("ok"):
            self.error = str(reply.get("error"))
            raise SimError(f"media refused: {reply.get('error')}")
        await self.peer.accept(reply["sdp"])

    async def stop(self) -> dict[str, Any]:
        if self.peer is None:
            return {"error": self.error} if self.error else {}
        peer, self.peer = self.peer, None
        await peer.close()
        r = peer.received
        delay = peer.first_video_delay()
        return {"video_frames": r.frames["video"], "audio_frames": r.frames["audio"],
                "keyframes": r.keyframes, "video_size": r.video_size,
                "first_frame_ms": round(delay * 1000, 1) if delay is not None else None,
                "video_fps": round(r.fps(), 1)}
