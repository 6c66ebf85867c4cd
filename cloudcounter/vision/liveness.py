"""Challenge-response liveness: a pure state machine over per-frame measures.

The hub picks a random challenge sequence with :func:`pick_challenges`, shows
each prompt on the customer's page, and feeds every analysed frame to
:meth:`LivenessSession.update` with the frame's time (seconds, any monotonic
origin). No clock is read here.

Timeline: ``warmup_s`` after ``started_at`` (the baseline fills from the
customer's resting face), the first challenge opens for ``window_s``; when
its action is seen the next challenge opens at once. The verdict is
``passed`` when every challenge was seen inside its window, ``failed`` when a
window expires (``timeout``) or several faces stay in view
(``multiple_faces``). A still picture (printed photo or screen held to the
camera) produces no action, so it times out and fails.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloudcounter.vision.actions import Action, ActionDetector, ActionEvent, DetectorConfig
from cloudcounter.vision.errors import LivenessStateError
from cloudcounter.vision.measures import FaceMeasures

DEFAULT_CHALLENGE_COUNT = 3
DEFAULT_WINDOW_S = 5.0
DEFAULT_WARMUP_S = 1.0
ALL_ACTIONS: tuple[Action, ...] = tuple(Action)


def pick_challenges(
    count: int = DEFAULT_CHALLENGE_COUNT,
    rng: random.Random | None = None,
    actions: Sequence[Action] = ALL_ACTIONS,
) -> tuple[Action, ...]:
    """A random challenge sequence; distinct actions while ``count`` allows it.

    ``rng`` defaults to :class:`random.SystemRandom` so that an attacker cannot
    predict the sequence; tests inject a seeded :class:`random.Random`.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    chooser = rng if rng is not None else random.SystemRandom()
    pool = list(actions)
    picked: list[Action] = []
    while len(picked) < count:
        batch = pool[:]
        chooser.shuffle(batch)
        if picked and batch[0] == picked[-1] and len(batch) > 1:
            batch[0], batch[1] = batch[1], batch[0]  # never the same prompt twice in a row
        picked.extend(batch[: count - len(picked)])
    return tuple(picked)


class Verdict(enum.StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


class FailReason(enum.StrEnum):
    TIMEOUT = "timeout"
    MULTIPLE_FACES = "multiple_faces"


@dataclass(frozen=True)
class ChallengeResult:
    action: Action
    opened_at: float
    deadline: float
    seen_at: float | None = None


@dataclass(frozen=True)
class LivenessStatus:
    """Snapshot for the hub: what to prompt, until when, and the verdict so far."""

    verdict: Verdict
    prompt: Action | None
    deadline: float | None
    index: int
    total: int
    reason: FailReason | None
    results: tuple[ChallengeResult, ...]
    events: tuple[ActionEvent, ...]


@dataclass
class LivenessSession:
    """One liveness check of one call; create, then call :meth:`update` per frame."""

    challenges: tuple[Action, ...]
    started_at: float
    window_s: float = DEFAULT_WINDOW_S
    warmup_s: float = DEFAULT_WARMUP_S
    multi_face_samples: int = 3
    detector: ActionDetector = field(default_factory=ActionDetector)
    _verdict: Verdict = field(default=Verdict.PENDING, init=False)
    _reason: FailReason | None = field(default=None, init=False)
    _index: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _results: list[ChallengeResult] = field(default_factory=list, init=False)
    _events: list[ActionEvent] = field(default_factory=list, init=False)
    _multi: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not self.challenges:
            raise ValueError("a liveness session needs at least one challenge")
        if self.window_s <= 0:
            raise ValueError("window_s must be positive")
        self.challenges = tuple(Action(c) for c in self.challenges)
        self._opened_at = self.started_at + self.warmup_s

    @classmethod
    def start(
        cls,
        started_at: float,
        *,
        count: int = DEFAULT_CHALLENGE_COUNT,
        window_s: float = DEFAULT_WINDOW_S,
        rng: random.Random | None = None,
        config: DetectorConfig | None = None,
    ) -> LivenessSession:
        """A session with a random challenge sequence."""
        return cls(
            challenges=pick_challenges(count, rng),
            started_at=started_at,
            window_s=window_s,
            detector=ActionDetector(config or DetectorConfig()),
        )

    @property
    def verdict(self) -> Verdict:
        return self._verdict

    def status(self, t: float | None = None) -> LivenessStatus:
        pending = self._verdict is Verdict.PENDING
        in_warmup = t is not None and t < self._opened_at and self._index == 0
        prompt = self.challenges[self._index] if pending and not in_warmup else None
        return LivenessStatus(
            verdict=self._verdict,
            prompt=prompt,
            deadline=self._opened_at + self.window_s if pending else None,
            index=self._index,
            total=len(self.challenges),
            reason=self._reason,
            results=tuple(self._results),
            events=tuple(self._events),
        )

    def update(self, t: float, face_count: int, measures: FaceMeasures | None) -> LivenessStatus:
        """Feed one analysed frame (time, number of faces, measures of the primary face)."""
        if t < self.started_at:
            raise LivenessStateError(f"frame at {t} precedes the session start {self.started_at}")
        if self._verdict is not Verdict.PENDING:
            return self.status(t)
        self._multi = self._multi + 1 if face_count > 1 else 0
        if self._multi >= self.multi_face_samples:
            self._fail(t, FailReason.MULTIPLE_FACES)
            return self.status(t)
        single = measures if face_count == 1 else None
        events = self.detector.update(t, single)
        self._events.extend(events)
        if t < self._opened_at:
            return self.status(t)
        wanted = self.challenges[self._index]
        deadline = self._opened_at + self.window_s
        for event in events:
            if event.action is wanted and event.end_s >= self._opened_at and t <= deadline:
                self._results.append(
                    ChallengeResult(wanted, self._opened_at, deadline, seen_at=event.end_s)
                )
                self._index += 1
                self._opened_at = t
                if self._index == len(self.challenges):
                    self._verdict = Verdict.PASSED
                return self.status(t)
        if t > deadline:
            self._fail(t, FailReason.TIMEOUT)
        return self.status(t)

    def expire(self, t: float) -> LivenessStatus:
        """Advance time without a frame (no frames arrive when the video froze)."""
        if self._verdict is Verdict.PENDING and t > self._opened_at + self.window_s:
            self._fail(t, FailReason.TIMEOUT)
        return self.status(t)

    def _fail(self, t: float, reason: FailReason) -> None:
        if self._index < len(self.challenges):
            wanted = self.challenges[self._index]
            self._results.append(
                ChallengeResult(wanted, self._opened_at, self._opened_at + self.window_s)
            )
        self._verdict = Verdict.FAILED
        self._reason = reason
