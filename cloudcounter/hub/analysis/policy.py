"""Pure decisions of in-call analysis: plain data in, plain data out, time passed in.

* :class:`Sampler`: which decoded frames to analyse (a few per second normally,
  many during a liveness check) and which to drop because the pool is busy;
* :class:`AlertDebouncer`: continuity signals reported only on change, once a
  condition has held for ``hold_s``;
* the payloads of liveness results and the customer's prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cloudcounter.vision import Action, LivenessStatus, Verdict

PROMPTS: dict[Action, str] = {
    Action.BLINK: "Blink your eyes",
    Action.TURN_LEFT: "Turn your head to your left",
    Action.TURN_RIGHT: "Turn your head to your right",
    Action.OPEN_MOUTH: "Open your mouth",
}

FACE_OK = "face_ok"
NO_FACE = "no_face"
MULTIPLE_FACES = "multiple_faces"
FACE_CHANGED = "face_changed"


@dataclass(frozen=True)
class SamplingConfig:
    idle_fps: float = 3.0
    """Analysed frames per second outside liveness checks (continuity signals)."""
    challenge_fps: float = 20.0
    """During a liveness check: blinks last 100-400 ms (docs/vision.md, "Sampling")."""
    descriptor_interval_s: float = 5.0
    """A descriptor for the drift check this often (never during a liveness check)."""
    recheck_s: float = 1.0
    """Sooner when the last drift measure said "changed" or the face was lost."""
    tolerance_s: float = 0.005


@dataclass
class SamplerStats:
    offered: int = 0
    analysed: int = 0
    skipped_rate: int = 0
    dropped_busy: int = 0


@dataclass
class Sampler:
    """Frame admission for one call.

    ``admit(now, fast, busy, capacity)``: the frame is analysed if it is due at
    the current rate and the pool has a free worker (``busy < capacity``);
    during a liveness check (``fast``) or for a waiting identity check (``urgent``) one
    frame per worker may wait, so that checks keep their rate when calls compete. Otherwise it is
    dropped, never queued.
    """

    config: SamplingConfig = field(default_factory=SamplingConfig)
    stats: SamplerStats = field(default_factory=SamplerStats)
    _next: float | None = None

    def admit(self, now: float, *, fast: bool, busy: int, capacity: int,
              urgent: bool = False) -> bool:
        """``urgent``: a check waits for this frame (no rate limit; may wait like ``fast``)."""
        self.stats.offered += 1
        interval = 1.0 / (self.config.challenge_fps if fast else self.config.idle_fps)
        if not urgent and self._next is not None and now < self._next - self.config.tolerance_s:
            self.stats.skipped_rate += 1
            return False
        if busy >= capacity * (2 if fast or urgent else 1):
            self.stats.dropped_busy += 1
            return False
        # The schedule keeps the average rate (2 of 3 frames at 20 of 30 fps) and never
        # bursts to catch up after a pause.
        self._next = now + interval if self._next is None else max(self._next + interval,
                                                                   now)
        self.stats.analysed += 1
        return True


@dataclass
class DescriptorSchedule:
    """When the continuity check wants a descriptor (drift from the anchor face)."""

    config: SamplingConfig = field(default_factory=SamplingConfig)
    _due: float = 0.0

    def wanted(self, now: float) -> bool:
        return now >= self._due

    def measured(self, now: float, changed: bool) -> None:
        self._due = now + (self.config.recheck_s if changed else
                           self.config.descriptor_interval_s)

    def soon(self, now: float) -> None:
        self._due = min(self._due, now + self.config.recheck_s)


def frame_signal(face_count: int, drifted: bool) -> str:
    if face_count == 0:
        return NO_FACE
    if face_count > 1:
        return MULTIPLE_FACES
    return FACE_CHANGED if drifted else FACE_OK


@dataclass
class AlertDebouncer:
    """Reports a signal once it has held ``hold_s``; starts from ``face_ok`` (not reported)."""

    hold_s: float = 1.5
    reported: str = FACE_OK
    _candidate: str | None = None
    _since: float = 0.0

    def update(self, t: float, signal: str) -> str | None:
        """Feed one frame's signal; returns the signal to report, if it changed."""
        if signal == self.reported:
            self._candidate = None
            return None
        if signal != self._candidate:
            self._candidate, self._since = signal, t
        if t - self._since >= self.hold_s:
            self.reported, self._candidate = signal, None
            return signal
        return None


def liveness_verdict(status: LivenessStatus) -> str:
    return liveness_verdict_of(status.verdict)


def liveness_details(challenges: tuple[Action, ...], status: LivenessStatus, started_at: float,
                     reason: str | None = None) -> dict[str, Any]:
    """``{challenges: [{action, passed, seen_at_s, reaction_s}], reason, challenge_verdict}``;
    times from the check's start, ``reaction_s`` from the prompt to the action's onset."""
    out: list[dict[str, Any]] = []
    for i, action in enumerate(challenges):
        result = status.results[i] if i < len(status.results) else None
        seen = result.seen_at if result is not None else None
        onset = result.onset_at if result is not None else None
        out.append({"action": action.value, "passed": seen is not None,
                    "seen_at_s": round(seen - started_at, 2) if seen is not None else None,
                    "reaction_s": round(onset - result.opened_at, 2)
                    if onset is not None and result is not None else None})
    if reason is None and status.reason is not None:
        reason = status.reason.value
    return {"challenges": out, "reason": reason,
            "challenge_verdict": liveness_verdict_of(status.challenge_verdict)}


def liveness_verdict_of(verdict: Verdict) -> str:
    return {Verdict.PASSED: "pass", Verdict.FAILED: "fail"}.get(verdict, "pending")
