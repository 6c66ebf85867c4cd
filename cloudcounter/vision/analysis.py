"""Per-frame analysis: face mesh tracking, a small-face second pass, measures, descriptor.

Frames are ``numpy.uint8`` arrays of shape ``(height, width, 3)`` in **RGB**
order (PyAV's ``frame.to_ndarray(format="rgb24")``). Images read with OpenCV
are BGR: convert them with :func:`bgr_to_rgb` first.

Pipeline (docs/vision.md, "Method"):

1. MediaPipe's face mesh (:mod:`.mesh`), tracking within ``stream`` (a call's video)
   or in still-image mode without one: 468 3-D landmarks per face, 4-5 ms a frame;
2. when it finds no face, a second pass for small faces: dlib's HOG detector on the
   frame upsampled once (faces from about 40 px wide), then the mesh on a crop around
   each face found;
3. measures (EAR, MAR, yaw/pitch/roll) and image quality of each face;
4. optionally the presentation-attack cues of the primary face (:func:`.pad.frame_cues`)
   and its 128-d dlib descriptor (5-10x the cost of the rest: on demand only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from cloudcounter.vision.errors import BadImageError
from cloudcounter.vision.frames import Image
from cloudcounter.vision.measures import FaceMeasures, Points, face_measures
from cloudcounter.vision.mesh import mesher_for
from cloudcounter.vision.models import get_models
from cloudcounter.vision.pad import FrameCues, frame_cues
from cloudcounter.vision.quality import FaceQuality, face_quality

Descriptor = npt.NDArray[np.float32]  # shape (128,)

DEFAULT_DETECT_WIDTH = 320
#: The small-face pass crops this many face widths around a HOG detection.
CROP_FACES = 2.4
CROP_SIZE = 256


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

    @property
    def width(self) -> int:
        return self.right - self.left


@dataclass(frozen=True)
class FaceAnalysis:
    """One face of a frame: box, landmarks (mesh ``(468, 3)``), measures, optional extras."""

    box: FaceBox
    landmarks: Points
    measures: FaceMeasures
    descriptor: Descriptor | None = None
    quality: FaceQuality | None = None
    cues: FrameCues | None = None


@dataclass(frozen=True)
class FrameAnalysis:
    """Everything the core found in one frame; plain data, picklable.

    ``faces`` is sorted by box area, largest first: ``primary`` is the face
    nearest the camera, the one identity and liveness look at. ``second_pass``
    says the faces came from the small-face pass.
    """

    width: int
    height: int
    faces: tuple[FaceAnalysis, ...] = field(default_factory=tuple)
    elapsed_ms: float = 0.0
    second_pass: bool = False

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


def to_grey(frame: Image) -> Image:
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


def detect_faces(grey: Image, *, detect_width: int | None, upsample: int = 0) -> list[FaceBox]:
    """dlib HOG detection on ``grey`` scaled to ``detect_width`` (None: full size)."""
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
    boxes = [
        FaceBox(
            left=max(0, round(r.left() * scale)),
            top=max(0, round(r.top() * scale)),
            right=min(width - 1, round(r.right() * scale)),
            bottom=min(height - 1, round(r.bottom() * scale)),
            score=float(s),
        )
        for r, s in zip(rects, scores, strict=True)
    ]
    boxes.sort(key=lambda b: b.area, reverse=True)
    return boxes


def _mesh_box(points: Points, width: int, height: int) -> FaceBox:
    x0, y0 = points[:, 0].min(), points[:, 1].min()
    x1, y1 = points[:, 0].max(), points[:, 1].max()
    return FaceBox(max(0, round(x0)), max(0, round(y0)), min(width - 1, round(x1)),
                   min(height - 1, round(y1)), 1.0)


def _small_faces(rgb: Image, grey: Image, max_faces: int) -> list[Points]:
    """Second pass: HOG upsampled once finds faces down to ~40 px; mesh on a crop of each."""
    found: list[Points] = []
    height, width = grey.shape[:2]
    for box in detect_faces(grey, detect_width=None, upsample=1)[:max_faces]:
        side = CROP_FACES * max(box.width, box.bottom - box.top)
        cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        scale = CROP_SIZE / side
        # An affine warp crops and scales in one step; outside the frame is black.
        matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
        crop = cv2.warpAffine(rgb, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR)
        for points in mesher_for(None).process(np.ascontiguousarray(crop))[:1]:
            mapped = points.copy()
            mapped[:, 0] = points[:, 0] / scale + x0
            mapped[:, 1] = points[:, 1] / scale + y0
            mapped[:, 2] = points[:, 2] / scale
            found.append(mapped)
    return [p for p in found if p[:, 0].max() > 0 and p[:, 0].min() < width]


def descriptor_of(rgb: Image, grey: Image, box: FaceBox) -> Descriptor:
    """dlib's 128-d descriptor of the face in ``box``: the HOG box near it when found
    (as at enrolment), else the landmark box; 68 points, then the ResNet."""
    import dlib

    models = get_models()
    height, width = grey.shape[:2]
    pad = box.width // 2
    x0, y0 = max(0, box.left - pad), max(0, box.top - pad)
    x1, y1 = min(width, box.right + pad), min(height, box.bottom + pad)
    crop = np.ascontiguousarray(grey[y0:y1, x0:x1])
    rects = models.detector(crop, 1 if box.width < 120 else 0)
    if len(rects):
        r = max(rects, key=lambda r: r.area())
        rect = dlib.rectangle(r.left() + x0, r.top() + y0, r.right() + x0, r.bottom() + y0)
    else:  # HOG misses turned faces: a box like dlib's from the landmark extent
        top = box.top + (box.bottom - box.top) // 5
        rect = dlib.rectangle(box.left, top, box.right, box.bottom)
    shape = models.shape_predictor(grey, rect)
    return np.asarray(models.face_encoder.compute_face_descriptor(rgb, shape, 0),
                      dtype=np.float32)


def analyse_frame(
    frame: Image,
    want_descriptor: bool = False,
    *,
    stream: str | None = None,
    mirrored: bool = False,
    max_faces: int = 4,
    want_cues: bool = False,
) -> FrameAnalysis:
    """Find faces, place landmarks, measure; cues and descriptor of the primary on demand.

    ``stream`` names the video the frame belongs to (a call): its face is tracked from
    frame to frame. Without it the frame is analysed as a still picture.
    """
    started = time.perf_counter()
    rgb = check_frame(frame)
    grey = to_grey(rgb)
    height, width = grey.shape[:2]
    meshes = mesher_for(stream).process(rgb)[:max_faces]
    second = False
    if not meshes:
        meshes = _small_faces(rgb, grey, max_faces)
        second = bool(meshes)
    faces: list[FaceAnalysis] = []
    for index, points in enumerate(meshes):
        box = _mesh_box(points, width, height)
        primary = index == 0
        faces.append(FaceAnalysis(
            box=box,
            landmarks=points,
            measures=face_measures(points, mirrored=mirrored),
            descriptor=descriptor_of(rgb, grey, box) if want_descriptor and primary else None,
            quality=face_quality(grey, box.left, box.top, box.right, box.bottom),
            cues=frame_cues(rgb, grey, box, points) if want_cues and primary else None,
        ))
    return FrameAnalysis(width=width, height=height, faces=tuple(faces),
                         elapsed_ms=(time.perf_counter() - started) * 1000.0,
                         second_pass=second)
