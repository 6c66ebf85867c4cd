"""Per-frame analysis: HOG detection on a downscaled copy, landmarks at full size.

Frames are ``numpy.uint8`` arrays of shape ``(height, width, 3)`` in **RGB**
order (PyAV's ``frame.to_ndarray(format="rgb24")``). Images read with OpenCV
are BGR: convert them with :func:`bgr_to_rgb` first.

Cost model (one core): the HOG detector dominates and scales with the pixels
it scans, hence detection on a copy scaled to ``detect_width`` (320 px by
default: a face filling a phone selfie is well above the detector's ~80 px
minimum). The 68-point shape predictor then runs on the full-resolution grey
frame (about a millisecond), and the 128-d ResNet descriptor (tens of
milliseconds) only when ``want_descriptor`` is set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from cloudcounter.vision.errors import BadImageError
from cloudcounter.vision.measures import FaceMeasures, Points, face_measures
from cloudcounter.vision.models import get_models

Image = npt.NDArray[np.uint8]
Descriptor = npt.NDArray[np.float32]  # shape (128,)

DEFAULT_DETECT_WIDTH = 320


@dataclass(frozen=True)
class FaceBox:
    """A detected face in full-resolution pixel coordinates."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)


@dataclass(frozen=True)
class FaceAnalysis:
    """One face of a frame: box, 68 landmarks (x, y), measures, optional descriptor."""

    box: FaceBox
    landmarks: Points
    measures: FaceMeasures
    descriptor: Descriptor | None = None


@dataclass(frozen=True)
class FrameAnalysis:
    """Everything the core found in one frame; plain data, picklable.

    ``faces`` is sorted by box area, largest first: ``primary`` is the face
    nearest the camera, the one identity and liveness look at.
    """

    width: int
    height: int
    faces: tuple[FaceAnalysis, ...] = field(default_factory=tuple)
    elapsed_ms: float = 0.0

    @property
    def face_count(self) -> int:
        return len(self.faces)

    @property
    def primary(self) -> FaceAnalysis | None:
        return self.faces[0] if self.faces else None


def bgr_to_rgb(image: Image) -> Image:
    """Convert an OpenCV BGR image to the RGB order the core expects."""
    return np.ascontiguousarray(image[:, :, ::-1])


def decode_image(data: bytes) -> Image:
    """Decode JPEG/PNG/... bytes into an RGB array; :class:`BadImageError` if unreadable."""
    if not data:
        raise BadImageError("empty image data")
    buffer = np.frombuffer(data, dtype=np.uint8)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if decoded is None:
        raise BadImageError("image data cannot be decoded")
    return bgr_to_rgb(np.asarray(decoded, dtype=np.uint8))


def check_frame(frame: object) -> Image:
    """Validate a frame's type and shape; return it C-contiguous."""
    if not isinstance(frame, np.ndarray):
        raise BadImageError(f"expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise BadImageError(f"expected uint8 pixels, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise BadImageError(f"expected an RGB array (H, W, 3), got shape {frame.shape}")
    if frame.shape[0] < 16 or frame.shape[1] < 16:
        raise BadImageError(f"image too small: {frame.shape[1]}x{frame.shape[0]}")
    return np.ascontiguousarray(frame)


def _to_grey(frame: Image) -> Image:
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


def detect_faces(grey: Image, *, detect_width: int | None, upsample: int = 0) -> list[FaceBox]:
    """HOG detection on ``grey`` scaled to ``detect_width`` (None: full size)."""
    import dlib

    height, width = grey.shape[:2]
    scale = 1.0
    small: Image = grey
    if detect_width is not None and width > detect_width:
        scale = width / detect_width
        small = np.asarray(
            cv2.resize(grey, (detect_width, round(height / scale)), interpolation=cv2.INTER_AREA),
            dtype=np.uint8,
        )
    rects, scores, _ = get_models().detector.run(small, upsample, 0.0)
    boxes = []
    for rect, score in zip(rects, scores, strict=True):
        r: dlib.rectangle = rect
        boxes.append(
            FaceBox(
                left=max(0, round(r.left() * scale)),
                top=max(0, round(r.top() * scale)),
                right=min(width - 1, round(r.right() * scale)),
                bottom=min(height - 1, round(r.bottom() * scale)),
                score=float(score),
            )
        )
    boxes.sort(key=lambda b: b.area, reverse=True)
    return boxes


def analyse_frame(
    frame: Image,
    want_descriptor: bool = False,
    *,
    detect_width: int | None = DEFAULT_DETECT_WIDTH,
    upsample: int = 0,
    mirrored: bool = False,
    max_faces: int = 4,
) -> FrameAnalysis:
    """Detect faces, place 68 landmarks, measure; descriptor of the primary face on demand.

    ``frame`` is RGB uint8 ``(H, W, 3)``. ``max_faces`` bounds the work on a
    crowded frame (the count beyond one is a fraud signal, not something to
    analyse in detail); ``face_count`` still reports up to that bound.
    """
    import dlib

    started = time.perf_counter()
    rgb = check_frame(frame)
    grey = _to_grey(rgb)
    height, width = grey.shape[:2]
    models = get_models()
    faces: list[FaceAnalysis] = []
    for index, box in enumerate(
        detect_faces(grey, detect_width=detect_width, upsample=upsample)[:max_faces]
    ):
        rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
        shape = models.shape_predictor(grey, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        descriptor = None
        if want_descriptor and index == 0:
            vector = models.face_encoder.compute_face_descriptor(rgb, shape, 0)
            descriptor = np.asarray(vector, dtype=np.float32)
        faces.append(
            FaceAnalysis(
                box=box,
                landmarks=points,
                measures=face_measures(points, (width, height), mirrored=mirrored),
                descriptor=descriptor,
            )
        )
    return FrameAnalysis(
        width=width,
        height=height,
        faces=tuple(faces),
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
    )
