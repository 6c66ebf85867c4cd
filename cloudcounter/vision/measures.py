"""Measures on the face mesh's 468 landmarks: eye and mouth aspect ratios, head pose.

Indices follow MediaPipe's canonical face mesh. "Right"/"left" in names are the
person's own; in a non-mirrored frame their right eye is on the image's left.

Head pose sign convention (non-mirrored frames, i.e. as the camera sees the
customer, which is what a phone sends over WebRTC):

* ``yaw_deg > 0``: the customer turned their head to **their own left**; the
  nose moves towards the right edge of the image.
* ``yaw_deg < 0``: turned to their own right.

Pose comes from the mesh's own depth: the line between the outer eye corners
gives yaw (its depth slope) and roll (its image slope), the line from forehead to
chin gives pitch. Unlike a perspective fit of 2-D points against a generic 3-D
face, this neither flips by 180 degrees nor turns a head tilt (roll) into yaw:
on the tilt clip of the shared data (30-40 degrees of roll) yaw stays within
8 degrees. If a client sends mirrored frames, pass ``mirrored=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Points = npt.NDArray[np.float32]  # (468, 2) or (468, 3), pixels

RIGHT_EYE = (33, 160, 158, 133, 153, 144)  # p1..p6 of Soukupová & Čech, outer corner first
LEFT_EYE = (263, 387, 385, 362, 380, 373)
MOUTH_CORNERS = (78, 308)  # inner lip corners
MOUTH_PAIRS = ((82, 87), (13, 14), (312, 317))  # upper / lower inner lip
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
#: Points of the face that do not move with expressions: eye corners, nose, brow
#: ends, cheek and jaw contour. The planarity test of :mod:`.pad` fits them.
RIGID = (33, 133, 263, 362, 1, 4, 6, 168, 197, 195, 5, 98, 327, 70, 300, 105, 334,
         234, 454, 93, 323, 132, 361, 58, 288, 172, 397, 152, 10, 109, 338)


@dataclass(frozen=True)
class HeadPose:
    """Head rotation in degrees; see the module docstring for the signs."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass(frozen=True)
class FaceMeasures:
    """Per-frame measures the liveness detector consumes (absolute values).

    ``ear`` is the mean eye aspect ratio of both eyes (about 0.2-0.35 open on the
    mesh, dropping in a blink); ``mar`` the inner-mouth aspect ratio (about 0-0.1
    closed); angles in degrees.
    """

    ear: float
    mar: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float


def _dist(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def eye_aspect_ratio(points: Points, eye: tuple[int, ...]) -> float:
    """EAR of one eye given the indices of its six landmarks."""
    p = [points[i] for i in eye]
    width = _dist(p[0], p[3])
    if width <= 0:
        return 0.0
    return (_dist(p[1], p[5]) + _dist(p[2], p[4])) / (2.0 * width)


def mean_eye_aspect_ratio(points: Points) -> float:
    return 0.5 * (eye_aspect_ratio(points, RIGHT_EYE) + eye_aspect_ratio(points, LEFT_EYE))


def mouth_aspect_ratio(points: Points) -> float:
    """Inner-lip opening divided by the inner-lip width."""
    width = _dist(points[MOUTH_CORNERS[0]], points[MOUTH_CORNERS[1]])
    if width <= 0:
        return 0.0
    opening = sum(_dist(points[a], points[b]) for a, b in MOUTH_PAIRS) / len(MOUTH_PAIRS)
    return opening / width


def head_pose(points: Points, *, mirrored: bool = False) -> HeadPose:
    """Yaw, pitch and roll from the mesh's 3-D landmarks (``(468, 3)``, pixels)."""
    across = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]  # image left to right
    down = points[CHIN] - points[FOREHEAD]
    yaw = math.degrees(math.atan2(float(across[2]), math.hypot(float(across[0]),
                                                                 float(across[1]))))
    roll = math.degrees(math.atan2(float(across[1]), float(across[0])))
    pitch = math.degrees(math.atan2(float(down[2]), math.hypot(float(down[0]),
                                                                 float(down[1]))))
    if mirrored:
        yaw, roll = -yaw, -roll
    return HeadPose(yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)


def face_measures(points: Points, *, mirrored: bool = False) -> FaceMeasures:
    """All per-frame measures of one face (``points`` with depth, ``(468, 3)``)."""
    pose = head_pose(points, mirrored=mirrored)
    return FaceMeasures(
        ear=mean_eye_aspect_ratio(points),
        mar=mouth_aspect_ratio(points),
        yaw_deg=pose.yaw_deg,
        pitch_deg=pose.pitch_deg,
        roll_deg=pose.roll_deg,
    )
