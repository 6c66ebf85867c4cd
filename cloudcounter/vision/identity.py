"""Identity: enrol a reference photo, compare live faces, watch for a change of person.

Descriptors are dlib's 128-d ResNet embeddings; two faces are compared by
Euclidean distance. dlib's model was trained so that 0.6 separates people
(99.38 % on LFW at that threshold); on the shared photos the same person
scores about 0.3-0.45 and different people above 0.75, so the default keeps
dlib's 0.6 (see docs/vision.md for the measured margins).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from cloudcounter.vision.analysis import (
    Descriptor,
    FrameAnalysis,
    Image,
    check_frame,
    decode_image,
    detect_faces,
    to_grey,
)
from cloudcounter.vision.errors import (
    BadImageError,
    BlurredImageError,
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
)
from cloudcounter.vision.models import get_models
from cloudcounter.vision.quality import ENROL_MIN_FACE_PX, ENROL_MIN_SHARPNESS, face_quality

#: Largest descriptor distance still accepted as the same person.
DEFAULT_MATCH_THRESHOLD = 0.6
#: Distance from the call-start descriptor above which the face "changed".
DEFAULT_DRIFT_THRESHOLD = 0.6
#: Enrolment scans photos at this width, upsampled once: ID photos vary in
#: size and it is the one place where a second of CPU is affordable.
ENROL_DETECT_WIDTH = 640
ENROL_UPSAMPLE = 1


class MatchVerdict(enum.StrEnum):
    MATCH = "match"
    NO_MATCH = "no_match"


@dataclass(frozen=True)
class Match:
    """Result of comparing a live descriptor with the reference."""

    distance: float
    threshold: float
    verdict: MatchVerdict

    @property
    def matched(self) -> bool:
        return self.verdict is MatchVerdict.MATCH


def enrol(
    image: Image | bytes,
    *,
    detect_width: int | None = ENROL_DETECT_WIDTH,
    upsample: int = ENROL_UPSAMPLE,
) -> Descriptor:
    """Descriptor of the single face in a reference photo (RGB array or encoded bytes).

    Raises :class:`BadImageError` (``bad_image``) for undecodable data,
    :class:`NoFaceError` (``no_face``), :class:`MultipleFacesError`
    (``multiple_faces``), :class:`FaceTooSmallError` (``face_too_small``: the face is
    narrower than 80 px) and :class:`BlurredImageError` (``image_blurred``); all are
    :class:`~cloudcounter.vision.errors.EnrolmentError`, with a message for the person
    who uploads the photo.
    """
    import dlib

    if isinstance(image, (bytes, bytearray, memoryview)):
        rgb = check_frame(decode_image(bytes(image)))
    else:
        rgb = check_frame(image)
    grey = to_grey(rgb)
    boxes = detect_faces(grey, detect_width=detect_width, upsample=upsample)
    if not boxes:
        raise NoFaceError("no face found in the reference photo")
    if len(boxes) > 1:
        raise MultipleFacesError(
            f"{len(boxes)} faces found in the reference photo; it must show one person",
            count=len(boxes),
        )
    box = boxes[0]
    quality = face_quality(grey, box.left, box.top, box.right, box.bottom)
    if quality.width_px < ENROL_MIN_FACE_PX:
        raise FaceTooSmallError(
            f"the face in the reference photo is {quality.width_px} px wide; at least "
            f"{ENROL_MIN_FACE_PX} px are needed: use a larger or closer photo")
    if quality.sharpness < ENROL_MIN_SHARPNESS:
        raise BlurredImageError(
            f"the reference photo is blurred (sharpness {quality.sharpness:.0f}, at least "
            f"{ENROL_MIN_SHARPNESS:.0f} needed): use a sharp photo")
    models = get_models()
    shape = models.shape_predictor(grey, dlib.rectangle(box.left, box.top, box.right,
                                                        box.bottom))
    return np.asarray(models.face_encoder.compute_face_descriptor(rgb, shape, 0),
                      dtype=np.float32)


def descriptor_distance(a: Descriptor, b: Descriptor) -> float:
    """Euclidean distance between two 128-d descriptors."""
    va = np.asarray(a, dtype=np.float64).reshape(-1)
    vb = np.asarray(b, dtype=np.float64).reshape(-1)
    if va.shape != (128,) or vb.shape != (128,):
        raise BadImageError(f"descriptors must have 128 values, got {va.shape} and {vb.shape}")
    return float(np.linalg.norm(va - vb))


def compare(
    reference_descriptor: Descriptor,
    live_descriptor: Descriptor,
    threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> Match:
    """Verdict ``match`` when the distance is at most ``threshold``."""
    distance = descriptor_distance(reference_descriptor, live_descriptor)
    verdict = MatchVerdict.MATCH if distance <= threshold else MatchVerdict.NO_MATCH
    return Match(distance=distance, threshold=threshold, verdict=verdict)


class ContinuitySignal(enum.StrEnum):
    """Fraud signals of one analysed frame during a call."""

    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_CHANGED = "face_changed"


@dataclass(frozen=True)
class ContinuityCheck:
    """Per-frame continuity report: face count, drift (if measured), signals raised."""

    face_count: int
    drift: float | None
    signals: tuple[ContinuitySignal, ...]

    @property
    def ok(self) -> bool:
        return not self.signals


def check_continuity(
    analysis: FrameAnalysis,
    anchor: Descriptor | None,
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD,
) -> ContinuityCheck:
    """Check one analysed frame against the descriptor matched at call start (``anchor``).

    Drift is measured only when the frame was analysed with a descriptor;
    the hub asks for one every few seconds and at call start.
    """
    signals: list[ContinuitySignal] = []
    if analysis.face_count == 0:
        signals.append(ContinuitySignal.NO_FACE)
    elif analysis.face_count > 1:
        signals.append(ContinuitySignal.MULTIPLE_FACES)
    drift = None
    primary = analysis.primary
    if anchor is not None and primary is not None and primary.descriptor is not None:
        drift = descriptor_distance(anchor, primary.descriptor)
        if drift > drift_threshold:
            signals.append(ContinuitySignal.FACE_CHANGED)
    return ContinuityCheck(face_count=analysis.face_count, drift=drift, signals=tuple(signals))
