"""The liveness state machine driven by scripted per-frame measures (no data, no clock)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from cloudcounter.vision.actions import Action, ActionDetector
from cloudcounter.vision.errors import LivenessStateError
from cloudcounter.vision.liveness import FailReason, LivenessSession, Verdict, pick_challenges
from cloudcounter.vision.measures import FaceMeasures

FPS = 15.0
REST = FaceMeasures(ear=0.30, mar=0.05, yaw_deg=2.0, pitch_deg=0.0, roll_deg=0.0)


def pose(ear: float = 0.30, mar: float = 0.05, yaw: float = 2.0) -> FaceMeasures:
    return FaceMeasures(ear=ear, mar=mar, yaw_deg=yaw, pitch_deg=0.0, roll_deg=0.0)


def frames(
    start: float, seconds: float, measures: FaceMeasures
) -> Iterator[tuple[float, FaceMeasures]]:
    n = round(seconds * FPS)
    for i in range(n):
        yield start + i / FPS, measures


def perform(action: Action, start: float) -> list[tuple[float, FaceMeasures]]:
    """Rest 0.6 s, do the action, rest again: what a cooperative customer does."""
    act = {
        Action.BLINK: (0.2, pose(ear=0.08)),
        Action.TURN_LEFT: (0.6, pose(yaw=32.0)),
        Action.TURN_RIGHT: (0.6, pose(yaw=-30.0)),
        Action.OPEN_MOUTH: (0.6, pose(mar=0.7)),
    }[action]
    script = list(frames(start, 0.6, REST))
    script += list(frames(start + 0.6, act[0], act[1]))
    script += list(frames(start + 0.6 + act[0], 0.6, REST))
    return script


def run(session: LivenessSession, script: list[tuple[float, FaceMeasures]], faces: int = 1) -> None:
    for t, m in script:
        session.update(t, faces, m)


@pytest.mark.parametrize("seed", range(6))
def test_cooperative_customer_passes(seed: int) -> None:
    challenges = pick_challenges(3, random.Random(seed))
    session = LivenessSession(challenges=challenges, started_at=100.0)
    t = 100.0
    run(session, list(frames(t, 1.0, REST)))
    t += 1.0
    for action in challenges:
        t = max(t, session.prompt_open)
        assert session.status(t).prompt is action
        script = perform(action, t)
        run(session, script)
        t = script[-1][0] + 1 / FPS
    status = session.status(t)
    assert status.verdict is Verdict.PASSED, status
    assert [r.action for r in status.results] == list(challenges)
    assert all(r.seen_at is not None and r.seen_at <= r.deadline for r in status.results)


def test_wrong_action_fails() -> None:
    """A deliberate action other than the prompt (a replay does what it recorded) fails."""
    session = LivenessSession(challenges=(Action.TURN_LEFT,), started_at=0.0)
    run(session, list(frames(0.0, 1.0, REST)))
    run(session, perform(Action.TURN_RIGHT, 1.0))  # the other way: not the challenge
    status = session.status(3.0)
    assert status.verdict is Verdict.FAILED
    assert status.reason is FailReason.WRONG_ACTION
    assert status.results[0].seen_at is None


def test_a_blink_meanwhile_is_no_wrong_action_and_silence_times_out() -> None:
    session = LivenessSession(challenges=(Action.TURN_LEFT,), started_at=0.0)
    run(session, list(frames(0.0, 1.0, REST)))
    run(session, perform(Action.BLINK, 1.0))  # involuntary: tolerated
    assert session.verdict is Verdict.PENDING
    run(session, list(frames(2.5, 4.0, REST)))
    assert session.status(7.0).reason is FailReason.TIMEOUT


def test_action_begun_before_the_prompt_does_not_count() -> None:
    """A turn already under way when the prompt opens was not a response to it."""
    session = LivenessSession(challenges=(Action.TURN_LEFT,), started_at=0.0, warmup_s=1.0)
    run(session, list(frames(0.0, 0.6, REST)))
    run(session, list(frames(0.6, 1.2, pose(yaw=32.0))))  # turning before the prompt
    run(session, list(frames(1.8, 0.6, REST)))
    run(session, list(frames(2.4, 5.0, REST)))
    assert session.verdict is Verdict.FAILED


def test_action_must_begin_within_the_onset_window() -> None:
    session = LivenessSession(challenges=(Action.OPEN_MOUTH,), started_at=0.0,
                              onset_window_s=1.5, window_s=5.0)
    run(session, list(frames(0.0, 3.0, REST)))  # prompt at 1.0; nothing until 3.0
    run(session, perform(Action.OPEN_MOUTH, 3.0))  # begins at 3.6: too late
    assert session.verdict is not Verdict.PASSED


def test_prompts_open_after_random_pauses() -> None:
    rng = random.Random(3)
    session = LivenessSession.start(10.0, rng=rng)
    first = session.prompt_open
    assert 11.0 + 0.4 <= first <= 11.0 + 2.0
    assert session.status(first - 0.01).prompt is None
    assert session.status(first).prompt is session.challenges[0]


def test_action_after_the_window_is_too_late() -> None:
    session = LivenessSession(challenges=(Action.BLINK,), started_at=0.0, window_s=2.0)
    run(session, list(frames(0.0, 3.2, REST)))
    run(session, perform(Action.BLINK, 3.2))
    assert session.verdict is Verdict.FAILED


def test_still_picture_fails() -> None:
    """A printed photo: identical measures every frame, whatever the challenge."""
    for action in Action:
        session = LivenessSession(challenges=(action, action), started_at=0.0)
        run(session, list(frames(0.0, 12.0, pose(ear=0.41, mar=0.05, yaw=-47.0))))
        assert session.status().pad is not None  # the PAD verdict comes with the end
        assert session.verdict is Verdict.FAILED
        assert session.status().reason is FailReason.TIMEOUT


def test_no_frames_expires() -> None:
    session = LivenessSession(challenges=(Action.BLINK,), started_at=0.0)
    assert session.expire(3.0).verdict is Verdict.PENDING
    assert session.expire(6.5).verdict is Verdict.FAILED


def test_second_face_in_view_fails() -> None:
    session = LivenessSession(challenges=(Action.BLINK,), started_at=0.0)
    run(session, list(frames(0.0, 2.0, REST)), faces=2)
    assert session.status().reason is FailReason.MULTIPLE_FACES


def test_prompt_waits_for_warm_up() -> None:
    session = LivenessSession(challenges=(Action.OPEN_MOUTH,), started_at=0.0)
    assert session.update(0.5, 1, REST).prompt is None
    assert session.update(1.0, 1, REST).prompt is Action.OPEN_MOUTH
    with pytest.raises(LivenessStateError):
        LivenessSession(challenges=(Action.BLINK,), started_at=5.0).update(4.0, 1, REST)


def test_baseline_is_the_persons_own() -> None:
    """Narrow eyes (EAR 0.2 at rest) still blink; wide eyes (0.45) do not blink at 0.3."""
    narrow = ActionDetector()
    for t, _ in frames(0.0, 1.0, REST):
        narrow.update(t, pose(ear=0.20))
    assert [
        e.action for e in narrow.update(1.0, pose(ear=0.09)) + narrow.update(1.1, pose(ear=0.2))
    ] == [Action.BLINK]
    wide = ActionDetector()
    for t, _ in frames(0.0, 1.0, REST):
        wide.update(t, pose(ear=0.45))
    assert wide.update(1.0, pose(ear=0.30)) + wide.update(1.1, pose(ear=0.45)) == []


def test_one_frame_glitch_is_not_a_turn() -> None:
    detector = ActionDetector()
    events = []
    for t, m in frames(0.0, 2.0, REST):
        events += detector.update(t, m)
    events += detector.update(2.0, pose(yaw=35.0))
    events += detector.update(2.07, pose(yaw=2.0))
    assert events == []


def test_pick_challenges() -> None:
    picked = pick_challenges(3, random.Random(1))
    assert len(picked) == 3 and len(set(picked)) == 3
    long = pick_challenges(9, random.Random(2))
    assert all(a != b for a, b in zip(long, long[1:], strict=False))
    assert len(pick_challenges()) == 3  # SystemRandom by default
    with pytest.raises(ValueError):
        pick_challenges(0)
