"""Whole VP8 frames and leftovers: what the forwarder lets through under loss."""

from __future__ import annotations

import fractions
from typing import TYPE_CHECKING, Any
import random

import av
import numpy as np

from cloudcounter.media import vp8

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket


def _frames(count: int) -> list[bytes]:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = 640, 480, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.gop_size = 10
    enc.bit_rate = 1_000_000
    rng = np.random.default_rng(1)
    out: list[bytes] = []
    for i in range(count):
        img = rng.integers(0, 255, (480, 640, 3), np.uint8)  # noise: large frames
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in enc.encode(frame)]
    out += [bytes(p) for p in enc.encode(None)]
    return out


def test_whole_frames_pass_and_their_tails_do_not() -> None:
    frames = _frames(20)
    assert all(vp8.is_plausible(f) for f in frames)
    assert all(vp8.is_plausible(f[:10], len(f)) for f in frames)  # the head is enough
    keys = [f for f in frames if vp8.is_keyframe(f)]
    assert len(keys) == 2
    # what a receive buffer hands over after losing a frame's first packet(s): the rest
    rng = random.Random(3)
    tails = [f[cut:] for f in frames if len(f) > 400
             for cut in rng.sample(range(50, len(f) - 20), 100)]
    assert len(tails) > 1000
    passed = [t for t in tails if vp8.is_plausible(t)]
    assert len(passed) <= len(tails) // 50, len(passed)  # a tag by chance: rare
    assert not any(vp8.is_keyframe(t) for t in tails)
    for bad in (b"", b"\x00\x00", b"\x10\x00\x00", b"\x00" * 10):
        assert not vp8.is_plausible(bad) and not vp8.is_keyframe(bad)


def _rtp(seq: int, ts: int, payload: bytes) -> "RtpPacket":
    from aiortc.rtp import RtpPacket

    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, payload=payload)
    packet._data = payload[1:]  # type: ignore[attr-defined]  # what aiortc's depayload leaves
    return packet


def _stream(frames: int, key_at: set[int], per_frame: int = 3) -> list[tuple[int, Any]]:
    """(frame number, RTP packet) for ``frames`` VP8 frames of ``per_frame`` packets."""
    out = []
    seq = 65530  # crosses the wrap-around
    for n in range(frames):
        head = (b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00" if n in key_at
                else b"\x31\x02\x00" + bytes(7))
        for i in range(per_frame):
            descriptor = b"\x10" if i == 0 else b"\x00"
            out.append((n, _rtp(seq & 0xFFFF, 3000 * n, descriptor + (head if i == 0
                                                                         else bytes(40)))))
            seq += 1
    return out


def test_the_receive_buffer_tells_whole_frames_from_broken_ones() -> None:
    from cloudcounter.media.seam import _WholeFrames

    def run(lose: set[tuple[int, int]]) -> list[tuple[int, bool]]:
        buffer = _WholeFrames(16)
        emitted = []
        for i, (n, packet) in enumerate(_stream(30, key_at={0, 20})):
            if (n, i % 3) in lose:
                continue
            _, frame = buffer.add(packet)
            if frame is not None:
                emitted.append((frame.timestamp // 3000, frame.cc_whole))
        return emitted

    assert all(whole for _, whole in run(set())) and len(run(set())) == 29
    # frame 5 loses its first packet for good, frame 9 its middle one: the first frame
    # handed over from there is not whole (the forwarder then waits for a key frame);
    # frames that follow a whole one without a gap are whole again
    for lost in ({(5, 0)}, {(9, 1)}):
        emitted = run(lost)
        (n_lost,) = {n for n, _ in lost}
        assert all(whole for n, whole in emitted if n < n_lost), emitted
        after = [(n, whole) for n, whole in emitted if n >= n_lost]
        assert after[0][1] is False, emitted
        assert all(whole for n, whole in emitted if n >= 20) and 20 in dict(emitted), emitted
