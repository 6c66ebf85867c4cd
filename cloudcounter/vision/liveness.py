"""Challenge-response liveness with presentation-attack detection: a pure state machine.

The hub creates a :class:`LivenessSession` (random actions, random prompt times), shows
each prompt on the customer's page, and feeds every analysed frame to
:meth:`LivenessSession.update` with the frame's time (seconds, any monotonic origin).
No clock is read here.

Timeline: after ``warmup_s`` plus a random pause the first prompt opens; each later
prompt opens a random pause (``pause_s``) after the previous action completed, so a
recording cannot know when to act. When a prompt opens the detector takes the resting
pose as the reference for turns (:meth:`~.actions.ActionDetector.mark`). A challenge
is met when its action *begins* between ``min_reaction_s`` and ``onset_window_s`` after
its prompt and completes within ``window_s``; a different deliberate action (a turn or
a mouth opening; blinks are involuntary) beginning in that time fails the check
(``wrong_action``): a replayed clip does whatever it recorded. The verdict is
``passed`` only if every challenge is met **and** the presentation-attack detector
(:mod:`.pad`) does not find an attack (``presentation_attack``).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloudcounter.vision.actions import Action, ActionDetector, ActionEvent, DetectorConfig
from cloudcounter.vision.errors import LivenessStateError
from cloudcounter.vision.measures import FaceMeasures
from cloudcounter.vision.pad import PadResult, PadSession, PadVerdict

if TYPE_CHECKING:
    from cloudcounter.vision.analysis import FaceAnalysis

DEFAULT_CHALLENGE_COUNT = 3
DEFAULT_WINDOW_S = 5.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_ONSET_WINDOW_S = 1.8
DEFAULT_MIN_REACTION_S = 0.15
#: Random pause before each prompt, seconds (drawn uniformly).
DEFAULT_PAUSE_S = (0.4, 2.0)
ALL_ACTIONS: tuple[Action, ...] = tuple(Action)
DELIBERATE = frozenset({Action.TURN_LEFT, Action.TURN_RIGHT, Action.OPEN_MOUTH})


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


def pick_pauses(count: int, rng: random.Random | None = None,
                span: tuple[float, float] = DEFAULT_PAUSE_S) -> tuple[float, ...]:
    """Random pauses before each prompt (unpredictable: ``SystemRandom`` by default)."""
    chooser = rng if rng is not None else random.SystemRandom()
    return tuple(round(chooser.uniform(*span), 3) for _ in range(count))


class Verdict(enum.StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


class FailReason(enum.StrEnum):
    TIMEOUT = "timeout"
    MULTIPLE_FACES = "multiple_faces"
    WRONG_ACTION = "wrong_action"
    PRESENTATION_ATTACK = "presentation_attack"


@dataclass(frozen=True)
class ChallengeResult:
    action: Action
    opened_at: float
    deadline: float
    seen_at: float | None = None
    onset_at: float | None = None


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
    #: The challenges' own verdict and the PAD result, once the session has ended.
    challenge_verdict: Verdict = Verdict.PENDING
    pad: PadResult | None = None


@dataclass
class LivenessSession:
    """One liveness check of one call; create, then call :meth:`update` per frame.

    ``pauses`` are the pauses before each prompt (the product draws them with
    :func:`pick_pauses`); ``prompt_times``, for the evaluation, asks for prompts at given
    times instead (never earlier than ``min_gap_s`` after the previous completion).
    """

    challenges: tuple[Action, ...]
    started_at: float
    window_s: float = DEFAULT_WINDOW_S
    warmup_s: float = DEFAULT_WARMUP_S
    onset_window_s: float = DEFAULT_ONSET_WINDOW_S
    min_reaction_s: float = DEFAULT_MIN_REACTION_S
    pauses: tuple[float, ...] = ()
    prompt_times: tuple[float, ...] = ()
    min_gap_s: float = 0.2
    multi_face_samples: int = 3
    detector: ActionDetector = field(default_factory=ActionDetector)
    pad: PadSession = field(default_factory=PadSession)
    _verdict: Verdict = field(default=Verdict.PENDING, init=False)
    _challenge_verdict: Verdict = field(default=Verdict.PENDING, init=False)
    _reason: FailReason | None = field(default=None, init=False)
    _pad_result: PadResult | None = field(default=None, init=False)
    _index: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _marked: bool = field(default=False, init=False)
    _results: list[ChallengeResult] = field(default_factory=list, init=False)
    _events: list[ActionEvent] = field(default_factory=list, init=False)
    _multi: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not self.challenges:
            raise ValueError("a liveness session needs at least one challenge")
        if self.window_s <= 0:
            raise ValueError("window_s must be positive")
        self.challenges = tuple(Action(c) for c in self.challenges)
        self._opened_at = self._next_open(0, self.started_at + self.warmup_s)

    def _next_open(self, index: int, after: float) -> float:
        if index < len(self.prompt_times):
            return max(self.prompt_times[index], after + (self.min_gap_s if index else 0.0))
        return after + (self.pauses[index] if index < len(self.pauses) else 0.0)

    @classmethod
    def start(
        cls,
        started_at: float,
        *,
        count: int = DEFAULT_CHALLENGE_COUNT,
        window_s: float = DEFAULT_WINDOW_S,
        rng: random.Random | None = None,
        config: DetectorConfig | None = None,
        detector: ActionDetector | None = None,
    ) -> LivenessSession:
        """A session with a random challenge sequence and random prompt times."""
        return cls(
            challenges=pick_challenges(count, rng),
            started_at=started_at,
            window_s=window_s,
            pauses=pick_pauses(count, rng),
            detector=detector or ActionDetector(config or DetectorConfig()),
        )

    @property
    def verdict(self) -> Verdict:
        return self._verdict

    @property
    def prompt_open(self) -> float:
        """When the current prompt opens (or opened)."""
        return self._opened_at

    def status(self, t: float | None = None) -> LivenessStatus:
        pending = self._verdict is Verdict.PENDING
        waiting = t is not None and t < self._opened_at
        prompt = self.challenges[self._index] if pending and not waiting else None
        return LivenessStatus(
            verdict=self._verdict,
            prompt=prompt,
            deadline=self._opened_at + self.window_s if pending else None,
            index=self._index,
            total=len(self.challenges),
            reason=self._reason,
            results=tuple(self._results),
            events=tuple(self._events),
            challenge_verdict=self._challenge_verdict,
            pad=self._pad_result,
        )

    def update(self, t: float, face_count: int, measures: FaceMeasures | None,
               face: "FaceAnalysis | None" = None) -> LivenessStatus:
        """Feed one analysed frame (time, number of faces, measures of the primary face;
        ``face``, the primary face's analysis, feeds the presentation-attack detector)."""
        if t < self.started_at:
            raise LivenessStateError(f"frame at {t} precedes the session start {self.started_at}")
        if self._verdict is not Verdict.PENDING:
            return self.status(t)
        self._multi = self._multi + 1 if face_count > 1 else 0
        if self._multi >= self.multi_face_samples:
            self._fail(t, FailReason.MULTIPLE_FACES)
            return self.status(t)
        single = measures if face_count == 1 else None
        if face_count == 1:
            self.pad.add(t, face)
        if t >= self._opened_at and not self._marked:
            self.detector.mark(self._opened_at)
            self._marked = True
        events = self.detector.update(t, single)
        self._events.extend(events)
        if t < self._opened_at:
            return self.status(t)
        wanted = self.challenges[self._index]
        deadline = self._opened_at + self.window_s
        earliest = self._opened_at + self.min_reaction_s
        latest = self._opened_at + self.onset_window_s
        for event in events:
            if event.start_s < earliest or event.end_s > deadline:
                continue  # began before the prompt could be seen, or too late
            if event.action is wanted and event.start_s <= latest:
                self._results.append(ChallengeResult(
                    wanted, self._opened_at, deadline, seen_at=event.end_s,
                    onset_at=event.start_s))
                self._index += 1
                if self._index == len(self.challenges):
                    self._finish(t)
                else:
                    self._opened_at = self._next_open(self._index, t)
                    self._marked = False
                    self.detector.unmark()
                return self.status(t)
            if event.action in DELIBERATE and event.action is not wanted:
                self._fail(t, FailReason.WRONG_ACTION)
                return self.status(t)
        if t > deadline:
            self._fail(t, FailReason.TIMEOUT)
        return self.status(t)

    def expire(self, t: float) -> LivenessStatus:
        """Advance time without a frame (no frames arrive when the video froze)."""
        if self._verdict is Verdict.PENDING and t > self._opened_at + self.window_s:
            self._fail(t, FailReason.TIMEOUT)
        return self.status(t)

    def _finish(self, t: float) -> None:
        self._challenge_verdict = Verdict.PASSED
        self._pad_result = self.pad.result()
        if self._pad_result.verdict is PadVerdict.ATTACK:
            self._verdict = Verdict.FAILED
            self._reason = FailReason.PRESENTATION_ATTACK
        else:
            self._verdict = Verdict.PASSED

    def _fail(self, t: float, reason: FailReason) -> None:
        if self._index < len(self.challenges):
            wanted = self.challenges[self._index]
            self._results.append(
                ChallengeResult(wanted, self._opened_at, self._opened_at + self.window_s)
            )
        self._verdict = self._challenge_verdict = Verdict.FAILED
        self._reason = reason
        self._pad_result = self.pad.result()
