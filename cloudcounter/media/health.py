"""Is a participant's media reaching the hub? Pure decisions, time passed in.

A leg whose media does not start, or stops, must never leave a call silently without
video. For each leg the hub keeps a :class:`FlowWatch` and calls :func:`assess` about once
a second; the answer says what to do:

* video silent for ``keyframe_after_s``: ask the sender for a key frame (a lost key frame
  stalls the jitter buffer while packets still arrive);
* silent for ``stall_after_s`` (``start_timeout_s`` before the first packet of the leg):
  the leg is *stalled*: tell both sides and the timeline, and ask the participant to
  renegotiate (``media:restart``), at most ``max_restarts`` times, ``restart_every_s`` apart;
* media again after a stall: *flowing* again, told the same way.

"Silent" counts video when the participant's offer carries video, any packet otherwise
(an audio-only leg). A replaced leg (a renegotiation) starts a new watch period.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FlowState(str, enum.Enum):
    STARTING = "starting"  # answered, nothing received yet
    FLOWING = "flowing"
    STALLED = "stalled"


@dataclass(frozen=True)
class HealthConfig:
    keyframe_after_s: float = 1.5
    stall_after_s: float = 5.0
    start_timeout_s: float = 10.0
    restart_every_s: float = 10.0
    max_restarts: int = 2


@dataclass(frozen=True)
class LegFlow:
    """What the media layer knows about one leg (monotonic seconds)."""

    answered_at: float
    expects_video: bool
    last_packet_at: float | None  # any packet of this leg
    last_video_at: float | None  # a video frame of this leg


@dataclass
class FlowWatch:
    """The watch over one participant's incoming media, across replaced legs."""

    state: FlowState = FlowState.STARTING
    answered_at: float | None = None
    since: float | None = None  # when the current state began
    restarts: int = 0
    last_restart_at: float | None = None
    last_keyframe_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    state: FlowState
    changed: bool = False  # to be told to both sides and the timeline
    request_keyframe: bool = False
    restart: bool = False
    silent_s: float = 0.0


def assess(watch: FlowWatch, flow: LegFlow, now: float, config: HealthConfig) -> Verdict:
    """Update ``watch`` for ``flow`` at ``now``; returns what to do."""
    if watch.answered_at != flow.answered_at:  # a new leg: a new start
        watch.answered_at = flow.answered_at
        watch.last_keyframe_at = None
        if watch.state is not FlowState.STALLED:
            watch.state, watch.since = FlowState.STARTING, now
    last = flow.last_video_at if flow.expects_video else flow.last_packet_at
    if last is not None and last < flow.answered_at:
        last = None  # media of the replaced leg
    reference = last if last is not None else flow.answered_at
    silent = max(0.0, now - reference)

    limit = config.start_timeout_s if last is None else config.stall_after_s
    if silent < limit:
        changed = False
        if last is not None and watch.state is not FlowState.FLOWING:
            changed = watch.state is FlowState.STALLED  # a first start is not news
            watch.state, watch.since = FlowState.FLOWING, now
            watch.restarts = 0
            watch.last_restart_at = None
        keyframe = False
        if flow.expects_video and silent >= config.keyframe_after_s:
            if watch.last_keyframe_at is None or \
                    now - watch.last_keyframe_at >= config.keyframe_after_s:
                watch.last_keyframe_at = now
                keyframe = True
        return Verdict(watch.state, changed=changed, request_keyframe=keyframe, silent_s=silent)

    changed = watch.state is not FlowState.STALLED
    if changed:
        watch.state, watch.since = FlowState.STALLED, now
    restart = watch.restarts < config.max_restarts and (
        watch.last_restart_at is None or now - watch.last_restart_at >= config.restart_every_s)
    if restart:
        watch.restarts += 1
        watch.last_restart_at = now
    keyframe = flow.expects_video and (
        watch.last_keyframe_at is None or now - watch.last_keyframe_at >= config.keyframe_after_s)
    if keyframe:
        watch.last_keyframe_at = now
    return Verdict(watch.state, changed=changed, request_keyframe=keyframe, restart=restart,
                   silent_s=silent)
