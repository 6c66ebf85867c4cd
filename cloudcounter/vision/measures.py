"""Geometric measures on dlib's 68 landmarks: eye and mouth aspect ratios, head pose.

Landmark indices follow the iBUG 300-W scheme used by dlib's 68-point model
(0-based): jaw 0-16, brows 17-26, nose 27-35, eyes 36-41 and 42-47, outer lip
48-59, inner lip 60-67. Indices "left"/"right" below are as seen in the image.

Head pose sign convention (non-mirrored frames, i.e. as the camera sees the
customer, which is what a phone sends over WebRTC):

* ``yaw_deg > 0``: the customer turned their head to **their own left**; the
  nose moves towards the right edge of the image.
* ``yaw_deg < 0``: turned to their own right.

If a client sends mirrored frames (a selfie preview), pass ``mirrored=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Points = npt.NDArray[np.float32]  # shape (68, 2), pixel coordinates (x, y)

_IMAGE_LEFT_EYE = slice(36, 42)
_IMAGE_RIGHT_EYE = slice(42, 48)

# A generic 3-D face (arbitrary units, about 0.4 mm each) in camera-like axes:
# x to the image right, y down, z away from the camera; the nose tip is the
# origin. Only points that stay put when the face moves are used (nose, eye
# corners, the jaw line at ear level): mouth corners and chin follow
# expressions and made the solution jump by 30 degrees on grimaces in the
# development clips.
_MODEL_INDICES = (27, 30, 31, 33, 35, 36, 39, 42, 45, 0, 16)
_MODEL_POINTS = np.array(
    [
        (0.0, -170.0, 100.0),  # 27 top of the nose bridge
        (0.0, 0.0, 0.0),  # 30 nose tip
        (-60.0, 40.0, 90.0),  # 31 image-left side of the nose base
        (0.0, 50.0, 75.0),  # 33 nose base
        (60.0, 40.0, 90.0),  # 35 image-right side of the nose base
        (-225.0, -170.0, 135.0),  # 36 outer corner of the image-left eye
        (-75.0, -165.0, 120.0),  # 39 inner corner of the image-left eye
        (75.0, -165.0, 120.0),  # 42 inner corner of the image-right eye
        (225.0, -170.0, 135.0),  # 45 outer corner of the image-right eye
        (-350.0, -150.0, 370.0),  # 0 jaw line at the image-left ear
        (350.0, -150.0, 370.0),  # 16 jaw line at the image-right ear
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class HeadPose:
    """Head rotation in degrees; see the module docstring for the signs."""

    yaw_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass(frozen=True)
class FaceMeasures:
    """Per-frame measures the liveness detector consumes (absolute values).

    ``ear`` is the mean eye aspect ratio of both eyes (about 0.2-0.45 open,
    dropping sharply in a blink); ``mar`` the inner-mouth aspect ratio (about
    0-0.1 closed, above 0.5 wide open); angles in degrees.
    """

    ear: float
    mar: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float


def _dist(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(np.hypot(*(a - b)))


def eye_aspect_ratio(eye: Points) -> float:
    """Soukupová & Čech's EAR of one eye given its 6 landmarks."""
    width = _dist(eye[0], eye[3])
    if width <= 0:
        return 0.0
    return (_dist(eye[1], eye[5]) + _dist(eye[2], eye[4])) / (2.0 * width)


def mean_eye_aspect_ratio(landmarks: Points) -> float:
    """Mean EAR of both eyes."""
    return 0.5 * (
        eye_aspect_ratio(landmarks[_IMAGE_LEFT_EYE]) + eye_aspect_ratio(landmarks[_IMAGE_RIGHT_EYE])
    )


def mouth_aspect_ratio(landmarks: Points) -> float:
    """Inner-lip opening divided by the inner-lip width."""
    width = _dist(landmarks[60], landmarks[64])
    if width <= 0:
        return 0.0
    opening = (
        _dist(landmarks[61], landmarks[67])
        + _dist(landmarks[62], landmarks[66])
        + _dist(landmarks[63], landmarks[65])
    ) / 3.0
    return opening / width


def head_pose(
    landmarks: Points, frame_size: tuple[int, int], *, mirrored: bool = False
) -> HeadPose:
    """Head pose from ``cv2.solvePnP`` against the generic 3-D face.

    ``frame_size`` is ``(width, height)``; the camera is modelled as a pinhole
    with focal length equal to the frame width and no distortion, which is
    close enough for phone cameras to tell a 25-degree turn from a frontal face.
    """
    width, height = frame_size
    image_points = landmarks[list(_MODEL_INDICES)].astype(np.float64)
    camera = np.array(
        [[width, 0.0, width / 2.0], [0.0, width, height / 2.0], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )
    ok, rvec, _tvec = cv2.solvePnP(
        _MODEL_POINTS, image_points, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        return HeadPose(0.0, 0.0, 0.0)
    rotation, _ = cv2.Rodrigues(rvec)
    # R = Rz(roll) @ Ry(yaw) @ Rx(pitch) in camera axes (x right, y down, z forward).
    sy = math.hypot(rotation[0, 0], rotation[1, 0])
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    camera_yaw = math.degrees(math.atan2(-rotation[2, 0], sy))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    # A positive rotation about +y (down) swings the nose towards the image
    # left, i.e. the customer's own right in a non-mirrored frame.
    yaw = -camera_yaw
    if mirrored:
        yaw, roll = -yaw, -roll
    return HeadPose(yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)


def face_measures(
    landmarks: Points, frame_size: tuple[int, int], *, mirrored: bool = False
) -> FaceMeasures:
    """All per-frame measures of one face."""
    pose = head_pose(landmarks, frame_size, mirrored=mirrored)
    return FaceMeasures(
        ear=mean_eye_aspect_ratio(landmarks),
        mar=mouth_aspect_ratio(landmarks),
        yaw_deg=pose.yaw_deg,
        pitch_deg=pose.pitch_deg,
        roll_deg=pose.roll_deg,
    )
