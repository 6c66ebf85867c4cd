"""Compare face detectors and landmark models on the same frames (docs/vision.md, "Models").

    .venv/bin/python loadtests/compare_landmarks.py mesh hog hogup [cnn]

Every clip of both data sets (CLOUDCOUNTER_FACES_DIR, CLOUDCOUNTER_FACES_MORE_DIR) at
10 frames per second, scaled as the hub scales them, on one pinned core. For each method:
frames with a face found, and milliseconds per frame (p50, p95). ``cnn`` (dlib's MMOD
detector from face-recognition-models) takes about a second a frame. It asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudcounter.vision.analysis import detect_faces, to_grey  # noqa: E402
from cloudcounter.vision.data import faces_dir, faces_more_dir, read_clip  # noqa: E402
from cloudcounter.vision.mesh import FaceMesher  # noqa: E402
from cloudcounter.vision.models import get_models, model_dir  # noqa: E402


def clips() -> list[Path]:
    found: list[Path] = []
    for directory in (faces_dir(), faces_more_dir()):
        found += sorted((directory / "video").glob("*.mp4"))
    return found


def run(method: str, clip: Path) -> tuple[int, int, list[float]]:
    import dlib

    models = get_models()
    mesher = FaceMesher(video=True) if method == "mesh" else None
    cnn = (dlib.cnn_face_detection_model_v1(str(model_dir() / "mmod_human_face_detector.dat"))
           if method == "cnn" else None)
    found, total, ms = 0, 0, []
    for frame in read_clip(clip, fps=10):
        rgb = frame.rgb
        t0 = time.perf_counter()
        if mesher is not None:
            hit = bool(mesher.process(rgb))
        else:
            grey = to_grey(rgb)
            if cnn is not None:
                scale = rgb.shape[1] / 320
                small = cv2.resize(rgb, (320, round(rgb.shape[0] / scale)))
                rects = [d.rect for d in cnn(small, 0)]
                boxes = [dlib.rectangle(round(r.left() * scale), round(r.top() * scale),
                                        round(r.right() * scale), round(r.bottom() * scale))
                         for r in rects]
            else:
                faces = detect_faces(grey, detect_width=320)
                if not faces and method == "hogup":
                    faces = detect_faces(grey, detect_width=None, upsample=1)
                boxes = [dlib.rectangle(b.left, b.top, b.right, b.bottom) for b in faces]
            for box in boxes[:1]:
                models.shape_predictor(grey, box)  # the 68 points, as the old pipeline did
            hit = bool(boxes)
        ms.append((time.perf_counter() - t0) * 1000)
        found += hit
        total += 1
    if mesher is not None:
        mesher.close()
    return found, total, ms


def main(argv: list[str]) -> int:
    methods = argv or ["mesh", "hog", "hogup"]
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    for method in methods:
        all_found, all_total, all_ms = 0, 0, []
        for clip in clips():
            found, total, ms = run(method, clip)
            all_found, all_total, all_ms = all_found + found, all_total + total, all_ms + ms
            print(f"{method:<6} {clip.name:<28} found {found}/{total}  "
                  f"p50 {np.percentile(ms, 50):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms")
        if all_total:
            p50, p95 = np.percentile(all_ms, [50, 95])
            print(f"{method:<6} {'all clips':<28} found {all_found}/{all_total}  "
                  f"p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
