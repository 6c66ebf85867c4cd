"""Detect liveness actions (blink, head turns, mouth opening) from per-frame measures.

Pure and clock-free: :meth:`ActionDetector.update` takes the frame's time in
seconds and its :class:`~cloudcounter.vision.measures.FaceMeasures` (or
``None`` when no single face was seen) and returns the actions completed by
that frame.

Every decision is relative to the person's own baseline, the running median
of their recent *resting* measures (samples taken while no action is in
progress), because absolute values differ between people: open-eye EAR
ranges from about 0.22 to 0.45 on the development clips.

* blink: EAR falls below ``blink_close_ratio`` x baseline, reaches
  ``blink_depth_ratio`` x baseline (a squint or a glance down does not), then
  recovers ``blink_recover`` of the way back to the baseline within
  ``blink_max_s``;
  reported on reopening.
* open_mouth: MAR at least ``baseline + mouth_open_delta`` and at least
  ``mouth_open_min`` for ``hold_samples`` consecutive samples spanning ``hold_s``.
* turn_left / turn_right: yaw departs from the baseline yaw by ``turn_deg``
  for as long; "left" is the customer's own left (see
  :mod:`cloudcounter.vision.measures` for the sign convention).

Sampling: blinks last 100-400 ms, so analyse at least 10-15 frames per second
while a blink challenge runs; turns and mouth openings survive 5 fps.
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
    """Thresholds of the action detector; defaults tuned on the development clips."""

    baseline_window_s: float = 3.0
    min_baseline_samples: int = 5
    blink_close_ratio: float = 0.72
    #: Eyes count as reopened once the EAR has recovered this fraction of the
    #: way from its minimum back to the baseline (a slow reopening that ends
    #: in a glance down never gets back to the full baseline).
    blink_recover: float = 0.6
    #: A closure counts as a blink only if the EAR went at least this deep.
    blink_depth_ratio: float = 0.60
    blink_max_s: float = 1.5
    mouth_open_delta: float = 0.30
    mouth_open_min: float = 0.50
    turn_deg: float = 20.0
    hold_samples: int = 2
    #: A held action must also last this long (rejects one-frame landmark glitches).
    hold_s: float = 0.12
    #: After this long "in action" the baseline is rebuilt (a new resting pose).
    max_action_s: float = 4.0


@dataclass(frozen=True)
class ActionEvent:
    """An action completed between ``start_s`` and ``end_s`` (frame times)."""

    action: Action
    start_s: float
    end_s: float


@dataclass
class _Sample:
    t: float
    ear: float
    mar: float
    yaw: float


@dataclass
class _Hold:
    """Consecutive-sample counter with re-arming for held actions."""

    count: int = 0
    first_t: float = 0.0
    fired: bool = False

    def reset(self) -> None:
        self.count, self.fired = 0, False


@dataclass
class ActionDetector:
    """Streaming detector; one per customer video stream."""

    config: DetectorConfig = field(default_factory=DetectorConfig)
    _rest: deque[_Sample] = field(default_factory=deque, init=False)
    _last_t: float | None = field(default=None, init=False)
    _eyes_closed_at: float | None = field(default=None, init=False)
    _eyes_min_ratio: float = field(default=1.0, init=False)
    _mouth: _Hold = field(default_factory=_Hold, init=False)
    _left: _Hold = field(default_factory=_Hold, init=False)
    _right: _Hold = field(default_factory=_Hold, init=False)
    _active_since: float | None = field(default=None, init=False)

    def baseline(self) -> tuple[float, float, float] | None:
        """Median resting (EAR, MAR, yaw) or None while too few samples are known."""
        if len(self._rest) < self.config.min_baseline_samples:
            return None
        return (
            statistics.median(s.ear for s in self._rest),
            statistics.median(s.mar for s in self._rest),
            statistics.median(s.yaw for s in self._rest),
        )

    def reset(self) -> None:
        """Forget baseline and transient state (e.g. after the face was lost for long)."""
        self._rest.clear()
        self._clear_transients()
        self._active_since = None

    def _clear_transients(self) -> None:
        self._eyes_closed_at = None
        self._mouth.reset()
        self._left.reset()
        self._right.reset()

    def update(self, t: float, measures: FaceMeasures | None) -> list[ActionEvent]:
        """Feed one analysed frame; return the actions it completes."""
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} < {self._last_t}")
        self._last_t = t
        if measures is None:
            self._clear_transients()
            return []
        cfg = self.config
        sample = _Sample(t, measures.ear, measures.mar, measures.yaw_deg)
        base = self.baseline()
        if base is None:
            self._remember(sample)
            return []
        base_ear, base_mar, base_yaw = base
        events: list[ActionEvent] = []

        # Blink: close, then reopen within blink_max_s.
        eyes_closed = sample.ear < cfg.blink_close_ratio * base_ear
        ratio = sample.ear / base_ear if base_ear > 0 else 1.0
        min_ratio = min(self._eyes_min_ratio, ratio)
        eyes_open = ratio >= min_ratio + cfg.blink_recover * (1.0 - min_ratio)
        if self._eyes_closed_at is None:
            if eyes_closed:
                self._eyes_closed_at = t
                self._eyes_min_ratio = ratio
        elif eyes_open:
            if (
                t - self._eyes_closed_at <= cfg.blink_max_s
                and self._eyes_min_ratio <= cfg.blink_depth_ratio
            ):
                events.append(ActionEvent(Action.BLINK, self._eyes_closed_at, t))
            self._eyes_closed_at = None
        else:
            self._eyes_min_ratio = min(self._eyes_min_ratio, ratio)

        # Mouth and turns: held for hold_samples, re-armed when back near rest.
        mouth_on = sample.mar >= max(base_mar + cfg.mouth_open_delta, cfg.mouth_open_min)
        mouth_rest = sample.mar < base_mar + cfg.mouth_open_delta / 2
        events += self._held(self._mouth, Action.OPEN_MOUTH, t, mouth_on, mouth_rest)
        dyaw = sample.yaw - base_yaw
        turn_rest = abs(dyaw) < cfg.turn_deg / 2
        events += self._held(self._left, Action.TURN_LEFT, t, dyaw >= cfg.turn_deg, turn_rest)
        events += self._held(self._right, Action.TURN_RIGHT, t, dyaw <= -cfg.turn_deg, turn_rest)

        at_rest = (
            self._eyes_closed_at is None
            and not eyes_closed
            and mouth_rest
            and turn_rest
            and self._mouth.count == 0
        )
        if at_rest:
            self._active_since = None
            self._remember(sample)
        else:
            if self._active_since is None:
                self._active_since = t
            elif t - self._active_since > cfg.max_action_s:
                # Not an action any more but a new resting pose: rebuild the baseline.
                self.reset()
                self._remember(sample)
        return events

    def _held(
        self, hold: _Hold, action: Action, t: float, on: bool, rest: bool
    ) -> list[ActionEvent]:
        if on:
            if hold.count == 0:
                hold.first_t = t
            hold.count += 1
            if (
                hold.count >= self.config.hold_samples
                and t - hold.first_t >= self.config.hold_s
                and not hold.fired
            ):
                hold.fired = True
                return [ActionEvent(action, hold.first_t, t)]
            return []
        if not hold.fired or rest:
            hold.reset()
        else:
            hold.count = 0  # between on and rest: stay fired until back at rest
        return []

    def _remember(self, sample: _Sample) -> None:
        self._rest.append(sample)
        horizon = sample.t - self.config.baseline_window_s
        while len(self._rest) > self.config.min_baseline_samples and self._rest[0].t < horizon:
            self._rest.popleft()
