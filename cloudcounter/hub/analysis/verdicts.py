"""Pure decisions behind the checks' verdicts: plain data in, plain data out.

* :class:`IdentityGate`: an identity check compares only frames that pass the quality
  gate (face size, sharpness, pose, lighting; :func:`~cloudcounter.vision.quality.
  quality_problems`), up to ``frames`` of them, and decides on the median distance,
  reporting the margin to the threshold;
* :class:`PadEvidence`: the frame of a liveness check with the strongest
  presentation-attack cue, kept as the PAD evidence.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloudcounter.vision import FaceAnalysis, compare
from cloudcounter.vision.quality import quality_problems

#: Frames an identity check compares (each costs a descriptor, ~0.1 s in a worker).
IDENTITY_FRAMES = 3


@dataclass
class IdentityGate:
    threshold: float
    frames: int = IDENTITY_FRAMES
    distances: list[float] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    def offer(self, reference: np.ndarray, face: FaceAnalysis) -> bool:
        """Use one frame's face if it is good enough; True when the verdict can be given."""
        if face.descriptor is None:
            return False
        problems = quality_problems(face.quality, face.measures.yaw_deg,
                                    face.measures.pitch_deg) if face.quality else []
        if problems:
            self.rejected.update(problems)
            return False
        self.distances.append(compare(reference, face.descriptor, self.threshold).distance)
        return len(self.distances) >= self.frames

    @property
    def usable(self) -> bool:
        return bool(self.distances)

    def verdict(self) -> tuple[str, dict[str, Any]]:
        """``match``/``no_match`` on the median distance, with the margin and the frames;
        ``low_quality`` when faces were seen but none was good enough."""
        if not self.distances:
            return "low_quality", {"distance": None, "threshold": self.threshold,
                                   "frames": 0, "rejected": dict(self.rejected)}
        distance = statistics.median(self.distances)
        return ("match" if distance <= self.threshold else "no_match"), {
            "distance": round(distance, 4), "threshold": self.threshold,
            "margin": round(self.threshold - distance, 4), "frames": len(self.distances),
            "distances": [round(d, 4) for d in self.distances],
            "rejected": dict(self.rejected)}


@dataclass
class PadEvidence:
    """Keeps the frame with the strongest screen or print cue of one liveness check."""

    best: tuple[float, float] = (-1.0, -1.0)
    rgb: Any = None

    def offer(self, face: FaceAnalysis | None, rgb: Any) -> None:
        cues = face.cues if face is not None else None
        if cues is None:
            return
        key = (cues.border, cues.moire + 100.0 * cues.glare)
        if key > self.best:
            self.best, self.rgb = key, rgb
