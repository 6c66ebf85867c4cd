"""Liveness and measures on real frames of the shared data set (sampled, cached)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloudcounter.vision.actions import Action, ActionDetector, DetectorConfig
from cloudcounter.vision.analysis import FrameAnalysis, Image, analyse_frame
from cloudcounter.vision.attacks import print_frame, screen_frame
from cloudcounter.vision.data import read_clip
from cloudcounter.vision.eval_liveness import detect
from cloudcounter.vision.liveness import LivenessSession, Verdict
from cloudcounter.vision.pad import PadSession, PadVerdict

pytestmark = pytest.mark.vision


@pytest.fixture(scope="module")
def blink_stretch(faces: Path) -> list[tuple[float, FrameAnalysis]]:
    """0-2 s of the blink clip at 30 fps: two labelled blinks (0.33-0.60, 1.20-1.53)."""
    clip = faces / "video/blinks_glasses.mp4"
    return [(f.t, analyse_frame(f.rgb)) for f in read_clip(clip, end_s=2.0)]


@pytest.fixture(scope="module")
def mouth_stretch(faces: Path) -> list[tuple[float, FrameAnalysis]]:
    """1-3 s of the mouth clip at 10 fps: a wide opening from 2.05 s."""
    clip = faces / "video/mouth_open.mp4"
    return [(f.t, analyse_frame(f.rgb)) for f in read_clip(clip, fps=10, start_s=0.8, end_s=3.0)]


def test_blink_clip_yields_blinks(blink_stretch: list[tuple[float, FrameAnalysis]]) -> None:
    assert all(a.face_count == 1 for _, a in blink_stretch)
    detector = ActionDetector()
    events = []
    for t, analysis in blink_stretch:
        assert analysis.primary is not None
        events += detector.update(t, analysis.primary.measures)
    blinks = [e for e in events if e.action is Action.BLINK]
    assert len(blinks) == 2, events
    assert 0.25 <= blinks[0].start_s <= 0.7 and 1.1 <= blinks[1].start_s <= 1.6


def test_blink_clip_passes_a_blink_challenge(
    blink_stretch: list[tuple[float, FrameAnalysis]],
) -> None:
    session = LivenessSession(challenges=(Action.BLINK,), started_at=0.0, warmup_s=0.2)
    for t, analysis in blink_stretch:
        primary = analysis.primary
        session.update(t, analysis.face_count, primary.measures if primary else None)
    assert session.verdict is Verdict.PASSED


def test_mouth_clip_passes_open_mouth(mouth_stretch: list[tuple[float, FrameAnalysis]]) -> None:
    session = LivenessSession(challenges=(Action.OPEN_MOUTH,), started_at=0.8, warmup_s=0.6)
    for t, analysis in mouth_stretch:
        primary = analysis.primary
        session.update(t, analysis.face_count, primary.measures if primary else None)
    assert session.verdict is Verdict.PASSED


@pytest.mark.parametrize("name", ["spoof/printed_photo.jpg", "spoof/screen_replay.jpg"])
@pytest.mark.parametrize("action", list(Action))
def test_static_picture_fails(
    load_photo: Callable[[str], Image],
    name: str,
    action: Action,
    still_cache: dict[str, FrameAnalysis],
) -> None:
    if name not in still_cache:
        still_cache[name] = analyse_frame(load_photo(name))
    analysis = still_cache[name]
    assert analysis.face_count == 1
    session = LivenessSession(challenges=(action,), started_at=0.0)
    for i in range(int(7.0 * 15)):
        primary = analysis.primary
        session.update(i / 15, analysis.face_count, primary.measures if primary else None)
    assert session.verdict is Verdict.FAILED


@pytest.fixture(scope="module")
def still_cache() -> dict[str, FrameAnalysis]:
    return {}


def test_yaw_sign_is_the_customers_own_side(load_photo: Callable[[str], Image]) -> None:
    """In printed_photo.jpg the woman turns to her own right (nose towards image left)."""
    frame = load_photo("spoof/printed_photo.jpg")
    turned = analyse_frame(frame).primary
    assert turned is not None and turned.measures.yaw_deg < -20
    mirrored = analyse_frame(frame[:, ::-1].copy()).primary
    assert mirrored is not None and mirrored.measures.yaw_deg > 20
    assert analyse_frame(frame, mirrored=True).primary.measures.yaw_deg > 20  # type: ignore[union-attr]


# ------------------------------------------------------------------ faces-more: real turns
@pytest.fixture(scope="module")
def lean_clip(faces_more: Path) -> list[tuple[float, FrameAnalysis]]:
    """turns_lean_webcam_1.mp4 at 15 fps, tracked as one stream (as in a call)."""
    clip = faces_more / "video/turns_lean_webcam_1.mp4"
    return [(f.t, analyse_frame(f.rgb, stream="test:lean")) for f in read_clip(clip, fps=15)]


@pytest.fixture(scope="module")
def tilt_clip(faces_more: Path) -> list[tuple[float, FrameAnalysis]]:
    """tilts_roll_webcam.mp4 (1080x720, scaled to 640 as the hub does) at 15 fps."""
    clip = faces_more / "video/tilts_roll_webcam.mp4"
    return [(f.t, analyse_frame(f.rgb, stream="test:tilt")) for f in read_clip(clip, fps=15)]


def _labelled(labels_more: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in labels_more["clips"][name]["events"] if not e.get("uncertain")]


def test_real_head_turns_are_detected(lean_clip: list[tuple[float, FrameAnalysis]],
                                      labels_more: dict[str, Any]) -> None:
    """The four labelled turns of 12-23 degrees, each once, on the person's own side."""
    assert all(a.face_count == 1 for _, a in lean_clip)
    events = [e for e in detect(lean_clip) if e.action in (Action.TURN_LEFT, Action.TURN_RIGHT)]
    for label in _labelled(labels_more, "video/turns_lean_webcam_1.mp4"):
        found = [e for e in events if e.action.value == label["kind"]
                 and e.end_s >= label["start"] - 0.25 and e.start_s <= label["end"] + 0.25]
        assert len(found) == 1, (label, events)
    yaws = [a.primary.measures.yaw_deg for _, a in lean_clip if a.primary]
    assert max(yaws) - statistics.median(yaws) >= DetectorConfig().turn_deg + 2  # margin
    assert statistics.median(yaws) - min(yaws) >= DetectorConfig().turn_deg + 2


def test_a_head_tilt_is_not_a_turn(tilt_clip: list[tuple[float, FrameAnalysis]]) -> None:
    """30-40 degrees of roll: the mesh's yaw stays under the turn threshold, no turn."""
    assert sum(a.face_count == 1 for _, a in tilt_clip) >= len(tilt_clip) - 1
    rolls = [a.primary.measures.roll_deg for _, a in tilt_clip if a.primary]
    assert max(rolls) > 30 and min(rolls) < -30  # it does tilt both ways
    yaws = [a.primary.measures.yaw_deg for _, a in tilt_clip if a.primary]
    rest = statistics.median(yaws[:10])
    assert max(abs(y - rest) for y in yaws) <= DetectorConfig().turn_deg - 1  # margin
    assert not [e for e in detect(tilt_clip) if e.action in (Action.TURN_LEFT,
                                                              Action.TURN_RIGHT)]
    for action, prompt in ((Action.TURN_RIGHT, 1.0), (Action.TURN_LEFT, 3.5)):
        session = LivenessSession(challenges=(action,), started_at=0.0,
                                  prompt_times=(prompt,))
        for t, analysis in tilt_clip:
            p = analysis.primary
            session.update(t, analysis.face_count, p.measures if p else None, p)
        session.expire(tilt_clip[-1][0] + 10)
        assert session.verdict is Verdict.FAILED


def test_a_small_face_is_found_by_the_second_pass(faces: Path) -> None:
    """A face about 60 px wide in a 640x480 frame (a customer far from the camera)."""
    import cv2

    frame = next(read_clip(faces / "video/talking.mp4")).rgb
    big = analyse_frame(frame).primary
    assert big is not None
    scale = 60 / big.box.width
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[200:200 + small.shape[0], 300:300 + small.shape[1]] = small
    analysis = analyse_frame(canvas)
    assert analysis.face_count == 1 and analysis.primary is not None
    assert 45 <= analysis.primary.box.width <= 80
    assert abs(analysis.primary.measures.yaw_deg - big.measures.yaw_deg) < 8


# ------------------------------------------------------------------ presentation attacks
def test_a_screen_replay_shows_screen_cues_and_a_real_face_none(faces: Path) -> None:
    frames = list(read_clip(faces / "video/talking.mp4", fps=10, end_s=3.0))
    genuine, screen = PadSession(), PadSession()
    for f in frames:
        genuine.add(f.t, analyse_frame(f.rgb, stream="t:g", want_cues=True).primary)
        shown = analyse_frame(screen_frame(f.rgb, f.t, 6), stream="t:s", want_cues=True)
        screen.add(f.t, shown.primary)
    real = genuine.result()
    assert real.verdict is not PadVerdict.ATTACK and real.fired == (), real
    assert real.scores["bezel_or_edge"] == 0.0
    attack = screen.result()
    assert attack.verdict is PadVerdict.ATTACK and "bezel_or_edge" in attack.fired, attack
    assert attack.attack_type == "screen_or_print"


def test_a_turned_print_cannot_fake_a_head_turn(faces: Path) -> None:
    """A print rotated by 22-32 degrees reads as a few degrees of yaw: the mesh judges turns
    by the nose against the cheeks, which a flat picture does not change; and its paper
    edge is a print cue."""
    still = next(read_clip(faces / "video/talking.mp4")).rgb
    pad = PadSession()
    yaws = []
    for i in range(60):
        t = i / 12
        analysis = analyse_frame(print_frame(still, t, 2), stream="t:p", want_cues=True)
        if analysis.primary is not None:
            yaws.append(analysis.primary.measures.yaw_deg)
            pad.add(t, analysis.primary)
    assert len(yaws) >= 55
    assert max(yaws) - min(yaws) <= DetectorConfig().turn_deg  # no 10-degree excursion
    assert "bezel_or_edge" in pad.result().fired
