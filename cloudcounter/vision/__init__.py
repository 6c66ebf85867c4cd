"""cloudcounter.vision: face tracking, identity match, challenge liveness and PAD.

Pure functions and state machines over RGB frames (``numpy.uint8``, shape
``(H, W, 3)``); no network, no asyncio except :class:`VisionPool`, which runs the
analysis in a process pool for the hub. See docs/vision.md.
"""

from cloudcounter.vision.actions import Action, ActionDetector, ActionEvent, DetectorConfig
from cloudcounter.vision.analysis import (
    FaceAnalysis,
    FaceBox,
    FrameAnalysis,
    analyse_frame,
    bgr_to_rgb,
    decode_image,
)
from cloudcounter.vision.errors import (
    BadImageError,
    BlurredImageError,
    EnrolmentError,
    FaceTooSmallError,
    ModelsUnavailableError,
    MultipleFacesError,
    NoFaceError,
    VisionError,
)
from cloudcounter.vision.identity import (
    DEFAULT_DRIFT_THRESHOLD,
    DEFAULT_MATCH_THRESHOLD,
    ContinuityCheck,
    ContinuitySignal,
    Match,
    MatchVerdict,
    check_continuity,
    compare,
    enrol,
)
from cloudcounter.vision.liveness import (
    FailReason,
    LivenessSession,
    LivenessStatus,
    Verdict,
    pick_challenges,
    pick_pauses,
)
from cloudcounter.vision.measures import FaceMeasures
from cloudcounter.vision.pad import PadResult, PadSession, PadVerdict
from cloudcounter.vision.quality import FaceQuality
from cloudcounter.vision.pool import VisionPool

__all__ = [
    "DEFAULT_DRIFT_THRESHOLD",
    "DEFAULT_MATCH_THRESHOLD",
    "Action",
    "ActionDetector",
    "ActionEvent",
    "BadImageError",
    "BlurredImageError",
    "ContinuityCheck",
    "ContinuitySignal",
    "DetectorConfig",
    "EnrolmentError",
    "FaceAnalysis",
    "FaceBox",
    "FaceMeasures",
    "FaceQuality",
    "FaceTooSmallError",
    "FailReason",
    "FrameAnalysis",
    "LivenessSession",
    "LivenessStatus",
    "Match",
    "MatchVerdict",
    "ModelsUnavailableError",
    "MultipleFacesError",
    "NoFaceError",
    "PadResult",
    "PadSession",
    "PadVerdict",
    "Verdict",
    "VisionError",
    "VisionPool",
    "analyse_frame",
    "bgr_to_rgb",
    "check_continuity",
    "compare",
    "decode_image",
    "enrol",
    "pick_challenges",
    "pick_pauses",
]
