"""Image quality of a face: size, sharpness, lighting, pose; the gate before identity.

A descriptor of a small, blurred, turned or badly lit face is unreliable: the
identity check compares only frames that pass :func:`usable_for_identity`, and
enrolment refuses a reference photo whose face is too small or blurred.

Sharpness is the variance of the Laplacian of the face scaled to
``SHARPNESS_WIDTH`` pixels (so that it does not depend on the face's size); on the
shared data a sharp face scores above 100, a face blurred with a 9-pixel Gaussian
under 20 (docs/vision.md, "Identity").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

SHARPNESS_WIDTH = 96
#: The gate of the identity check (live frames).
MIN_FACE_PX = 80
MIN_SHARPNESS = 25.0
MAX_YAW_DEG = 25.0
MAX_PITCH_DEG = 25.0
MIN_BRIGHTNESS, MAX_BRIGHTNESS = 40.0, 220.0
#: Enrolment (reference photos) refuses below these.
ENROL_MIN_FACE_PX = 80
ENROL_MIN_SHARPNESS = 15.0


@dataclass(frozen=True)
class FaceQuality:
    """``width_px`` of the face box; ``sharpness`` (Laplacian variance at 96 px);
    ``brightness`` (mean grey level of the face, 0-255)."""

    width_px: int
    sharpness: float
    brightness: float


def face_quality(grey: npt.NDArray[np.uint8], left: int, top: int, right: int,
                 bottom: int) -> FaceQuality:
    """Quality of the face in ``grey`` inside the box (full-frame pixel coordinates)."""
    height, width = grey.shape[:2]
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(width, right), min(height, bottom)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return FaceQuality(max(0, right - left), 0.0, 0.0)
    crop = grey[y0:y1, x0:x1]
    scale = SHARPNESS_WIDTH / crop.shape[1]
    small = cv2.resize(crop, (SHARPNESS_WIDTH, max(4, round(crop.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(small, cv2.CV_64F).var())
    return FaceQuality(width_px=right - left, sharpness=round(sharpness, 1),
                       brightness=round(float(crop.mean()), 1))


def quality_problems(q: FaceQuality, yaw_deg: float, pitch_deg: float) -> list[str]:
    """Why a live frame is not good enough for identity (empty: usable)."""
    problems = []
    if q.width_px < MIN_FACE_PX:
        problems.append("face_too_small")
    if q.sharpness < MIN_SHARPNESS:
        problems.append("blurred")
    if abs(yaw_deg) > MAX_YAW_DEG or abs(pitch_deg) > MAX_PITCH_DEG:
        problems.append("turned")
    if not MIN_BRIGHTNESS <= q.brightness <= MAX_BRIGHTNESS:
        problems.append("lighting")
    return problems
