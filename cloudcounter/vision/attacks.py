"""Presentation attacks generated from genuine frames (never stored as media).

* :func:`screen_frame`: the frame shown on a phone or monitor and filmed again: a dark
  bezel on a background, a hand-held perspective that wobbles, moiré from the two pixel
  grids, a reduced colour gamut, refresh bands and a moving specular glare;
* :func:`print_frame`: one still frame printed (paper white edge, flat contrast) and
  moved in 3-D in front of the camera, rotated about the vertical axis to fake head
  turns and bent like a curved sheet.

Every generator is a pure function of the frame, the time and a seed, so an evaluation
run is reproducible; attack parameters are drawn per instance from the seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cloudcounter.vision.frames import Image


@dataclass(frozen=True)
class ScreenParams:
    fill: float  # share of the camera frame the screen's picture covers
    moire: float  # amplitude of the beat pattern
    moire_period: float  # pixels
    moire_angle: float
    glare: float
    bands: float
    tilt_deg: float  # wobble amplitude of the hand-held screen
    bezel: bool

    @classmethod
    def draw(cls, seed: int) -> "ScreenParams":
        r = random.Random(seed)
        return cls(fill=r.uniform(0.55, 0.9), moire=r.uniform(0.04, 0.14),
                   moire_period=r.uniform(3.0, 7.0), moire_angle=r.uniform(0, math.pi),
                   glare=r.uniform(0.0, 0.8), bands=r.uniform(0.0, 0.08),
                   tilt_deg=r.uniform(2.0, 8.0), bezel=r.random() < 0.8)


def _warp(rgb: Image, corners: np.ndarray, size: tuple[int, int], border: int) -> Image:
    h, w = rgb.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, np.asarray(corners, dtype=np.float32))
    return np.asarray(cv2.warpPerspective(rgb, matrix, size, borderMode=cv2.BORDER_CONSTANT,
                                          borderValue=(border, border, border)), np.uint8)


def _plane_corners(w: int, h: int, out_w: int, out_h: int, fill: float, yaw_deg: float,
                   pitch_deg: float, dx: float, dy: float) -> np.ndarray:
    """Corners of a w x h picture rotated in 3-D and projected into the camera."""
    scale = fill * min(out_w / w, out_h / h)
    hw, hh = w * scale / 2, h * scale / 2
    focal = out_w * 1.2
    depth = focal
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    pts = []
    for x, y in ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)):
        x1, z1 = x * math.cos(yaw), -x * math.sin(yaw)
        y2 = y * math.cos(pitch) - z1 * math.sin(pitch)
        z2 = y * math.sin(pitch) + z1 * math.cos(pitch)
        z = depth + z2
        pts.append((out_w / 2 + dx + focal * x1 / z, out_h / 2 + dy + focal * y2 / z))
    return np.array(pts, dtype=np.float32)


def screen_frame(rgb: Image, t: float, seed: int) -> Image:
    """``rgb`` displayed on a screen and re-filmed at time ``t`` (seconds)."""
    p = ScreenParams.draw(seed)
    h, w = rgb.shape[:2]
    shown: Any = rgb.astype(np.float32)
    # A screen's gamut and black level, then the beat of its pixel grid with the camera's.
    grey = shown.mean(axis=2, keepdims=True)
    shown = 18 + 0.86 * (grey + 0.75 * (shown - grey))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (xx * math.cos(p.moire_angle) + yy * math.sin(p.moire_angle)) / p.moire_period
    shown *= 1.0 + p.moire * np.cos(2 * math.pi * (phase + 0.3 * t))[..., None]
    shown *= 1.0 + p.bands * np.cos(2 * math.pi * (yy / 23.0 - 2.1 * t))[..., None]
    if p.bezel:
        pad = max(6, w // 18)
        shown = cv2.copyMakeBorder(shown, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                   value=(12, 12, 14))
    shown_u8 = np.clip(shown, 0, 255).astype(np.uint8)
    wobble = p.tilt_deg * math.sin(2 * math.pi * 0.31 * t + seed)
    corners = _plane_corners(shown_u8.shape[1], shown_u8.shape[0], w, h, p.fill, wobble,
                             0.5 * wobble, 6 * math.sin(0.7 * t + seed), 4 * math.cos(0.5 * t))
    background = int(90 + 60 * random.Random(seed).random())
    out: Any = _warp(shown_u8, corners, (w, h), background).astype(np.float32)
    if p.glare > 0:
        gx = w * (0.5 + 0.25 * math.sin(0.4 * t + seed))
        gy = h * (0.35 + 0.1 * math.cos(0.3 * t))
        blob = np.exp(-(((xx - gx) / (0.12 * w)) ** 2 + ((yy - gy) / (0.08 * h)) ** 2))
        out += (255 * p.glare * blob)[..., None]
    out = cv2.GaussianBlur(out, (3, 3), 0.8)
    noise = np.random.default_rng(seed * 100003 + int(t * 1000)).normal(0, 2.0, out.shape)
    return np.clip(out + noise, 0, 255).astype(np.uint8)


def print_frame(still: Image, t: float, seed: int) -> Image:
    """A print of ``still`` held in front of the camera at time ``t``: turned about the
    vertical axis (to fake head turns, up to about 30 degrees), tilted and bent."""
    r = random.Random(seed)
    h, w = still.shape[:2]
    paper: Any = still.astype(np.float32) * 0.82 + 30  # flat contrast, paper white
    pad = max(8, w // 14)
    paper = cv2.copyMakeBorder(paper, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                               value=(235, 235, 228))
    ph, pw = paper.shape[:2]
    # Bend: a cylindrical sheet, its curvature changing as the hand flexes it.
    bend = 0.06 + 0.05 * math.sin(1.3 * t + seed)
    xs = np.linspace(-1, 1, pw, dtype=np.float32)
    map_x = np.tile(((np.sin(xs * (1 + bend)) / math.sin(1 + bend)) + 1) * (pw - 1) / 2,
                    (ph, 1)).astype(np.float32)
    map_y = np.tile(np.arange(ph, dtype=np.float32)[:, None], (1, pw))
    bent = cv2.remap(paper, map_x, map_y, cv2.INTER_LINEAR)
    turn = r.uniform(22, 32) * math.sin(2 * math.pi * t / r.uniform(3.0, 4.5) + seed)
    corners = _plane_corners(pw, ph, w, h, r.uniform(0.7, 0.95), turn, r.uniform(-6, 6),
                             8 * math.sin(0.6 * t), 5 * math.cos(0.8 * t))
    out: Any = _warp(np.clip(bent, 0, 255).astype(np.uint8), corners, (w, h),
                int(70 + 80 * r.random())).astype(np.float32)
    noise = np.random.default_rng(seed * 7919 + int(t * 1000)).normal(0, 2.0, out.shape)
    return np.clip(out + noise, 0, 255).astype(np.uint8)


def render_clip(source: Path, target: Path, kind: str, seed: int, *,
                seconds: float | None = None) -> Path:
    """Write an attack clip (VP8 WebM, video only) made from ``source``: ``screen`` (the
    clip re-filmed from a screen) or ``print`` (its first frame printed and moved)."""
    import fractions

    import av

    from cloudcounter.vision.data import read_clip

    if kind not in ("screen", "print"):
        raise ValueError(f"unknown attack kind {kind!r}")
    frames = list(read_clip(source, end_s=seconds))
    if not frames:
        raise ValueError(f"{source} has no video frames")
    height, width = (d // 2 * 2 for d in frames[0].rgb.shape[:2])
    fps = 30
    with av.open(str(target), "w", format="webm") as out:
        stream: Any = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt, stream.gop_size = width, height, "yuv420p", fps
        stream.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        for i, f in enumerate(frames):
            rgb = (screen_frame(f.rgb, f.t, seed) if kind == "screen"
                   else print_frame(frames[0].rgb, f.t, seed))
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]),
                                                 format="rgb24").reformat(format="yuv420p")
            picture.pts, picture.time_base = i, fractions.Fraction(1, fps)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return target
