"""Liveness and measures on real frames of the shared data set (sampled, cached)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cloudcounter.vision.actions import Action, ActionDetector
from cloudcounter.vision.analysis import FrameAnalysis, Image, analyse_frame
from cloudcounter.vision.data import read_clip
from cloudcounter.vision.liveness import LivenessSession, Verdict

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
