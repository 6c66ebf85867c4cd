"""Whole VP8 frames and leftovers: what the forwarder lets through under loss."""

from __future__ import annotations

import fractions
import random

import av
import numpy as np

from cloudcounter.media import vp8


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
