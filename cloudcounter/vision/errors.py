"""Typed errors of the vision core.

Every error carries a stable ``code`` (a short snake_case string) that the hub
turns into an HTTP or Socket.IO error at the edge, and a ``retryable`` flag: a
customer can retry with another photo after ``no_face``, but a missing model
file is an operator problem.
"""

from __future__ import annotations


class VisionError(Exception):
    """Base of every error raised by :mod:`cloudcounter.vision`."""

    code: str = "vision_error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code

    def __reduce__(self) -> tuple[object, ...]:
        # Keep errors picklable across the process pool boundary.
        return (type(self), (self.message,), {"code": self.code})


class ModelsUnavailableError(VisionError):
    """The dlib model files of ``face-recognition-models`` cannot be found."""

    code = "models_unavailable"


class EnrolmentError(VisionError):
    """A reference photo was refused; ``code`` says why."""

    retryable = True


class NoFaceError(EnrolmentError):
    """No face was found in the photo."""

    code = "no_face"


class MultipleFacesError(EnrolmentError):
    """Several faces were found in the photo; the reference must show one person."""

    code = "multiple_faces"

    def __init__(self, message: str, *, count: int = 2, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.count = count


class FaceTooSmallError(EnrolmentError):
    """The face in the reference photo is too small for a reliable descriptor."""

    code = "face_too_small"


class BlurredImageError(EnrolmentError):
    """The reference photo is too blurred for a reliable descriptor."""

    code = "image_blurred"


class BadImageError(EnrolmentError):
    """The image cannot be decoded or has an unusable shape or type."""

    code = "bad_image"


class LivenessStateError(VisionError):
    """An operation was called in a state of the liveness session that forbids it."""

    code = "liveness_state"
