"""Detect liveness actions (blink, head turns, mouth opening) from per-frame measures.

Pure and clock-free: :meth:`ActionDetector.update` takes the frame's time in seconds
and its :class:`~cloudcounter.vision.measures.FaceMeasures` (or ``None`` when no single
face was seen) and returns the actions completed by that frame. Each event carries its
*onset* (``start_s``: when the face began to move) and its completion (``end_s``), so
that the liveness session can require an action to begin after its prompt.

Every decision is relative to the person (docs/vision.md, "Actions"):

* blink: the eye aspect ratio against the person's own running median of open eyes;
  a closure to ``blink_depth`` of it that recovers half-way within ``blink_max_s``.
  One low sample is enough, so 3-4-frame blinks are caught at 15 fps;
* open_mouth: the mouth ratio at least ``mouth_delta`` above the person's own
  closed-mouth measure, held ``mouth_hold_s`` (speech opens as wide, but briefly);
* turn_left / turn_right: a change of yaw of at least ``turn_deg`` from the reference
  taken when the prompt opened (:meth:`ActionDetector.mark`; without a prompt, the
  running resting yaw), which is not a tilt (roll must not dominate), completed by a
  return of ``turn_return`` of the way toward the reference, or by a quick turn held
  ``turn_hold_s``. A slow drift of the resting yaw never completes one.
"""

from __future__ import annotations

import enum
import statistics
from collections import deque
from dataclasses import dataclass, field

from cloudcounter.vision.measures import FaceMeasures


class Action(enum.StrEnum):
    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    OPEN_MOUTH = "open_mouth"


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the action detector; values and their margins in docs/vision.md."""

    baseline_window_s: float = 2.0
    min_baseline_samples: int = 4
    blink_close: float = 0.80
    blink_depth: float = 0.62
    blink_recover: float = 0.5
    blink_max_s: float = 0.55
    mouth_delta: float = 0.30
    mouth_hold_s: float = 0.35
    turn_deg: float = 10.0
    #: A turn stays beyond ``turn_deg`` at least this long (a head shake does not).
    turn_min_s: float = 0.35
    turn_return: float = 0.35
    turn_hold_s: float = 1.2
    #: A turn must reach ``turn_deg`` this soon after its onset (a drift is slower).
    turn_rise_s: float = 1.2
    #: Yaw within this of the reference counts as "not turning" (onset, resting).
    turn_rest_deg: float = 4.0
    #: A change of roll larger than this and than 1.2 x the change of yaw is a tilt.
    tilt_roll_deg: float = 10.0
    #: Without a resting sample this long the resting pose is rebuilt (a new posture).
    rebase_s: float = 3.0


@dataclass(frozen=True)
class ActionEvent:
    """An action that began at ``start_s`` (onset) and completed at ``end_s``."""

    action: Action
    start_s: float
    end_s: float


@dataclass
class _Rest:
    t: float
    ear: float
    mar: float
    yaw: float
    roll: float


@dataclass
class _Turn:
    direction: int  # +1 left, -1 right
    onset: float
    peak: float = 0.0
    since: float = 0.0
    last_out: float = 0.0  # last sample beyond turn_deg
    samples: int = 1
    fired: bool = False


@dataclass
class ActionDetector:
    """Streaming detector; one per customer video stream."""

    config: DetectorConfig = field(default_factory=DetectorConfig)
    _rest: deque[_Rest] = field(default_factory=deque, init=False)  # eyes and mouth at rest
    _pose: deque[_Rest] = field(default_factory=deque, init=False)  # head at rest
    _last_t: float | None = field(default=None, init=False)
    _last_rest_t: float | None = field(default=None, init=False)
    _ref: tuple[float, float] | None = field(default=None, init=False)  # marked yaw, roll
    _still_since: float | None = field(default=None, init=False)  # last |dyaw| < rest
    _eyes: tuple[float, float] | None = field(default=None, init=False)  # closed at, min
    _mouth_on: float | None = field(default=None, init=False)
    _mouth_onset: float | None = field(default=None, init=False)
    _mouth_fired: bool = field(default=False, init=False)
    _turn: _Turn | None = field(default=None, init=False)

    # -- baselines ---------------------------------------------------------------------
    def baseline(self) -> tuple[float, float, float] | None:
        """Resting (EAR, closed-mouth MAR, yaw), or None while too few samples are known."""
        if len(self._rest) < self.config.min_baseline_samples or not self._pose:
            return None
        return (statistics.median(s.ear for s in self._rest),
                statistics.median(s.mar for s in self._rest),
                statistics.median(s.yaw for s in self._pose))

    def _reference(self) -> tuple[float, float] | None:
        if self._ref is not None:
            return self._ref
        if len(self._pose) < self.config.min_baseline_samples:
            return None
        return (statistics.median(s.yaw for s in self._pose),
                statistics.median(s.roll for s in self._pose))

    def mark(self, t: float) -> None:
        """A prompt opens at ``t``: turns are measured from the resting pose just before."""
        recent = [s for s in self._pose if s.t >= t - 1.0] or list(self._pose)[-3:]
        if recent:
            self._ref = (statistics.median(s.yaw for s in recent),
                         statistics.median(s.roll for s in recent))
        self._turn = None

    def unmark(self) -> None:
        self._ref = None

    def reset(self) -> None:
        """Forget baselines and transient state (e.g. after the face was lost for long)."""
        self._rest.clear()
        self._pose.clear()
        self._ref = None
        self._last_rest_t = None
        self._clear_transients()

    def _clear_transients(self) -> None:
        self._eyes = None
        self._mouth_on = self._mouth_onset = None
        self._mouth_fired = False
        self._turn = None
        self._still_since = None

    # -- per frame ---------------------------------------------------------------------
    def update(self, t: float, measures: FaceMeasures | None) -> list[ActionEvent]:
        """Feed one analysed frame; return the actions it completes."""
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} < {self._last_t}")
        self._last_t = t
        if measures is None:
            self._clear_transients()
            return []
        cfg = self.config
        base = self.baseline()
        ref = self._reference()
        if base is None or ref is None:
            self._remember(t, measures, face=True, pose=True)
            return []
        base_ear, base_mar, _ = base
        events: list[ActionEvent] = []
        blink = self._blink(t, measures.ear / base_ear if base_ear > 0 else 1.0)
        events += blink
        events += self._mouth(t, measures.mar - base_mar)
        dyaw, droll = measures.yaw_deg - ref[0], measures.roll_deg - ref[1]
        events += self._turns(t, dyaw, droll)
        face_rest = (self._eyes is None and not blink and self._mouth_on is None
                     and measures.mar - base_mar < cfg.mouth_delta / 2)
        pose_rest = abs(dyaw) < cfg.turn_rest_deg and self._turn is None
        self._remember(t, measures, face=face_rest, pose=pose_rest)
        if not pose_rest and self._last_rest_t is not None and \
                t - self._last_rest_t > cfg.rebase_s:
            # a new posture, not an action: rebuild the resting pose
            self._pose.clear()
            self._ref = None
            self._turn = None
            self._remember(t, measures, face=False, pose=True)
        return events

    def _blink(self, t: float, ratio: float) -> list[ActionEvent]:
        cfg = self.config
        if self._eyes is None:
            if ratio < cfg.blink_close:
                self._eyes = (t, ratio)
            return []
        closed_at, low = self._eyes
        low = min(low, ratio)
        if ratio >= low + cfg.blink_recover * (1.0 - low):
            self._eyes = None
            if t - closed_at <= cfg.blink_max_s and low <= cfg.blink_depth:
                return [ActionEvent(Action.BLINK, closed_at, t)]
            return []
        self._eyes = (closed_at, low)
        return []

    def _mouth(self, t: float, rise: float) -> list[ActionEvent]:
        cfg = self.config
        if rise >= cfg.mouth_delta / 3 and self._mouth_onset is None:
            self._mouth_onset = t
        if rise >= cfg.mouth_delta:
            if self._mouth_on is None:
                self._mouth_on = t
            if not self._mouth_fired and t - self._mouth_on >= cfg.mouth_hold_s:
                self._mouth_fired = True
                return [ActionEvent(Action.OPEN_MOUTH, self._mouth_onset or self._mouth_on, t)]
            return []
        if rise < cfg.mouth_delta / 2:
            self._mouth_on = None
            self._mouth_fired = False
            if rise < cfg.mouth_delta / 3:
                self._mouth_onset = None
        return []

    def _turns(self, t: float, dyaw: float, droll: float) -> list[ActionEvent]:
        cfg = self.config
        if abs(dyaw) < cfg.turn_rest_deg:
            self._still_since = t
        turn = self._turn
        # A tilt: the roll changes more than the yaw (during a turn, than its peak yaw).
        scale = abs(dyaw) if turn is None else max(turn.peak, abs(dyaw))
        tilt = abs(droll) > cfg.tilt_roll_deg and abs(droll) > 1.2 * scale
        if turn is None:
            if abs(dyaw) >= cfg.turn_deg and not tilt:
                onset = self._still_since if self._still_since is not None else t
                if t - onset <= cfg.turn_rise_s:
                    self._turn = _Turn(1 if dyaw > 0 else -1, onset, abs(dyaw), t, t)
            return []
        along = dyaw * turn.direction
        if tilt or along < -cfg.turn_rest_deg:
            self._turn = None  # a tilt, or swung through to the other side
            return []
        turn.peak = max(turn.peak, along)
        if along >= cfg.turn_deg:
            turn.samples += 1
            turn.last_out = t
        action = Action.TURN_LEFT if turn.direction > 0 else Action.TURN_RIGHT
        if turn.fired:
            if along < cfg.turn_deg / 2:
                self._turn = None  # re-armed
            return []
        returned = (turn.samples >= 2 and turn.last_out - turn.since >= cfg.turn_min_s
                    and along <= turn.peak * (1.0 - cfg.turn_return))
        held = along >= cfg.turn_deg + cfg.turn_rest_deg and t - turn.since >= cfg.turn_hold_s
        if along <= turn.peak * (1.0 - cfg.turn_return) and not returned:
            self._turn = None  # back too soon: a shake or a glitch, not a turn
            return []
        if returned or held:
            turn.fired = True
            if returned and along < cfg.turn_deg / 2:
                self._turn = None
            return [ActionEvent(action, turn.onset, t)]
        return []

    def _remember(self, t: float, m: FaceMeasures, *, face: bool, pose: bool) -> None:
        sample = _Rest(t, m.ear, m.mar, m.yaw_deg, m.roll_deg)
        horizon = t - self.config.baseline_window_s
        for keep, queue in ((face, self._rest), (pose, self._pose)):
            if not keep:
                continue
            queue.append(sample)
            while len(queue) > self.config.min_baseline_samples and queue[0].t < horizon:
                queue.popleft()
        if pose:
            self._last_rest_t = t
