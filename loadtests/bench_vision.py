"""Benchmark of the vision core on one core: tracking + landmarks, cues, the descriptor.

    .venv/bin/python loadtests/bench_vision.py [--frames 300]

Frames are 640x480 RGB: the shared data set's clips letterboxed to that size
(CLOUDCOUNTER_FACES_DIR), or a synthetic frame when it is absent, analysed as one
tracked stream per clip (as in a call). Prints p50/p95/max in milliseconds; the
target is p95 <= 20 ms for tracking plus landmarks. It asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudcounter.vision.analysis import Image, analyse_frame, descriptor_of, to_grey  # noqa: E402
from cloudcounter.vision.mesh import load as load_mesh  # noqa: E402
from cloudcounter.vision.pad import frame_cues  # noqa: E402
from cloudcounter.vision.data import faces_dir, read_clip  # noqa: E402
from cloudcounter.vision.models import get_models  # noqa: E402

WIDTH, HEIGHT = 640, 480


def fit(frame: Image) -> Image:
    """Scale and pad a frame into 640x480, as a phone stream would arrive."""
    h, w = frame.shape[:2]
    scale = min(WIDTH / w, HEIGHT / h)
    resized = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    y, x = (HEIGHT - resized.shape[0]) // 2, (WIDTH - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def load_frames(count: int) -> list[tuple[str, Image]]:
    directory = faces_dir()
    frames: list[tuple[str, Image]] = []
    if (directory / "video").is_dir():
        clips = sorted((directory / "video").glob("*.mp4"))
        per_clip = max(1, count // max(1, len(clips)))
        for clip in clips:
            for i, frame in enumerate(read_clip(clip, fps=10)):
                if i >= per_clip:
                    break
                frames.append((clip.name, fit(frame.rgb)))
    if not frames:
        print(f"face data not found at {directory}: using a synthetic frame")
        rng = np.random.default_rng(0)
        frames = [("noise", rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8))]
    while len(frames) < count:
        frames.extend(frames[: count - len(frames)])
    return frames[:count]


def report(name: str, samples: list[float]) -> None:
    p50, p95 = np.percentile(samples, [50, 95])
    print(
        f"{name:<38} n={len(samples):<4} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
        f"max {max(samples):6.1f} ms  mean {statistics.fmean(samples):6.1f} ms"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    started = time.perf_counter()
    get_models()
    load_mesh()
    print(f"model load: {(time.perf_counter() - started) * 1000:.0f} ms")
    frames = load_frames(args.frames)
    analyse_frame(frames[0][1], True)  # warm caches
    track_ms: list[float] = []
    cues_ms: list[float] = []
    descriptor_ms: list[float] = []
    faces = 0
    found = []
    # One pass per stage: in a call tracking runs on every analysed frame, the cues only
    # during liveness checks and the descriptor every few seconds, so the stages are not
    # interleaved frame by frame (the descriptor's network would evict the mesh's caches).
    for clip, frame in frames:
        t0 = time.perf_counter()
        analysis = analyse_frame(frame, False, stream=clip)
        track_ms.append((time.perf_counter() - t0) * 1000)
        faces += analysis.face_count
        if analysis.primary is not None:
            found.append((frame, analysis.primary))
    for frame, primary in found:
        grey = to_grey(frame)
        t0 = time.perf_counter()
        frame_cues(frame, grey, primary.box, primary.landmarks)
        cues_ms.append((time.perf_counter() - t0) * 1000)
    for frame, primary in found[::5]:
        grey = to_grey(frame)
        t0 = time.perf_counter()
        descriptor_of(frame, grey, primary.box)
        descriptor_ms.append((time.perf_counter() - t0) * 1000)
    print(f"frames {len(frames)} at {WIDTH}x{HEIGHT}, faces {faces}")
    report("tracking + 468 landmarks + measures", track_ms)
    if cues_ms:
        report("presentation-attack cues (extra)", cues_ms)
        report("128-d descriptor (extra)", descriptor_ms)
    print("target: tracking + landmarks p95 <= 20 ms on one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
