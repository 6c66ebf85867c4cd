"""The liveness half of ``cloudcounter vision eval``: detections, sessions, attacks.

Frames are read and scaled as the hub scales them (:func:`~.frames.to_rgb`) and analysed
as one tracked stream per clip, with the presentation-attack cues. Sessions run the
product's :class:`~.liveness.LivenessSession`:

* **genuine** (BPCER): the prompts a customer would have been shown for what the clip's
  person does: each labelled event (distinct kinds, as the product draws them) prompted
  ``REACTION_S`` before its onset, the detector warmed on the 3 s before the check;
* **replay sweep** (APCER, ``replay_injection``): every clip played (looped) against
  random prompts at random times, as a recording injected into the camera would be;
* **screen replay** (APCER, ``screen_replay``): each genuine session's frames shown on
  a screen and re-filmed (:func:`~.attacks.screen_frame`): the prompted actions are
  performed in time, so only PAD can stop it;
* **print moved** (APCER, ``print_moved``): a still of the clip printed, turned and bent
  (:func:`~.attacks.print_frame`) against random prompts;
* **static pictures** (APCER, ``static_picture``): the data set's spoof stills.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudcounter.vision.actions import Action, ActionDetector, ActionEvent
from cloudcounter.vision.analysis import FrameAnalysis, analyse_frame
from cloudcounter.vision.data import read_clip
from cloudcounter.vision.frames import Image
from cloudcounter.vision.labels import ClipLabels, check_file
from cloudcounter.vision.liveness import (
    DEFAULT_WINDOW_S, LivenessSession, LivenessStatus, Verdict, pick_challenges, pick_pauses,
)
from cloudcounter.vision.pad import PadSession, PadVerdict

REACTION_S = 0.5
WARM_S = 3.0
Frames = list[tuple[float, FrameAnalysis]]


@dataclass
class ClipData:
    labels: ClipLabels
    frames: Frames
    rgb: list[Image]
    duration: float


def analyse_clip(labels: ClipLabels, fps: float | None, *, keep_rgb: bool = False) -> ClipData:
    check_file(labels.path, labels.sha256)
    frames: Frames = []
    rgb: list[Image] = []
    stream = f"eval:{labels.path}:{fps}"
    for f in read_clip(labels.path, fps=fps):
        frames.append((f.t, analyse_frame(f.rgb, stream=stream, want_cues=True)))
        if keep_rgb:
            rgb.append(f.rgb)
    return ClipData(labels, frames, rgb, frames[-1][0] - frames[0][0] if frames else 0.0)


def detect(frames: Sequence[tuple[float, FrameAnalysis]]) -> list[ActionEvent]:
    detector = ActionDetector()
    events: list[ActionEvent] = []
    for t, analysis in frames:
        primary = analysis.primary if analysis.face_count == 1 else None
        events += detector.update(t, primary.measures if primary else None)
    return events


@dataclass
class DetectionScore:
    hits: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Action})
    totals: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Action})
    false: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Action})
    scored_s: dict[str, float] = field(default_factory=lambda: {a.value: 0.0 for a in Action})
    notes: list[str] = field(default_factory=list)

    def add(self, clip: ClipData, events: list[ActionEvent]) -> None:
        lab = clip.labels
        span = clip.duration - sum(b - a for a, b in lab.dont_care)
        for kind in lab.labelled:
            self.scored_s[kind.value] += max(0.0, span)
        for label in lab.events:
            if label.uncertain:
                continue
            found = any(label.matches(e) for e in events)
            self.totals[label.kind.value] += 1
            self.hits[label.kind.value] += found
            if not found:
                self.notes.append(f"missed {label.kind} {label.start:.2f}-{label.end:.2f} "
                                  f"in {lab.name}")
        for e in events:
            if e.action in lab.labelled and not lab.ignored(e) and \
                    not any(label.matches(e) for label in lab.events):
                self.false[e.action.value] += 1
                self.notes.append(f"false {e.action} {e.start_s:.2f}-{e.end_s:.2f} in {lab.name}")

    def report(self) -> dict[str, Any]:
        out = {}
        for kind in Action:
            k = kind.value
            minutes = self.scored_s[k] / 60.0
            out[k] = {"detected": self.hits[k], "labelled": self.totals[k],
                      "recall": round(self.hits[k] / self.totals[k], 3) if self.totals[k] else None,
                      "false": self.false[k], "scored_s": round(self.scored_s[k], 1),
                      "false_per_min": round(self.false[k] / minutes, 2) if minutes else None}
        return out


def genuine_sequences(labels: Sequence[Any], duration: float
                      ) -> list[tuple[float, tuple[Action, ...], tuple[float, ...]]]:
    """(check start, challenges, prompt times) a genuine clip performs, like the product:
    distinct actions, each prompted ``REACTION_S`` before its labelled onset."""
    sequences = []
    usable = sorted((e for e in labels if not getattr(e, "uncertain", False)),
                    key=lambda e: e.start)
    taken_until = -1.0
    for i, first in enumerate(usable):
        start = first.start - REACTION_S - 1.0  # one second of warm-up before the prompt
        if start < 0.0 or first.start < taken_until:
            continue
        picked: list[Action] = []
        prompts: list[float] = []
        last_end = start
        for label in usable[i:]:
            if len(picked) == 3:
                break
            if label.kind in picked or label.start - REACTION_S < last_end:
                continue
            if label.end > label.start - REACTION_S + DEFAULT_WINDOW_S:
                continue
            picked.append(label.kind)
            prompts.append(label.start - REACTION_S)
            last_end = label.end
        if picked:
            sequences.append((start, tuple(picked), tuple(prompts)))
            taken_until = last_end
    return sequences


def run_session(frames: Frames, start: float, challenges: tuple[Action, ...], *,
                prompt_times: tuple[float, ...] = (), pauses: tuple[float, ...] = (),
                warm_s: float = WARM_S) -> LivenessStatus:
    """One liveness check from ``start``; the detector has seen the call's last ``warm_s``."""
    detector = ActionDetector()
    for t, analysis in frames:
        if start - warm_s <= t < start:
            primary = analysis.primary if analysis.face_count == 1 else None
            detector.update(t, primary.measures if primary else None)
    session = LivenessSession(challenges=challenges, started_at=start, detector=detector,
                              prompt_times=prompt_times, pauses=pauses)
    status = session.status(start)
    for t, analysis in frames:
        if t < start:
            continue
        primary = analysis.primary
        status = session.update(t, analysis.face_count, primary.measures if primary else None,
                                primary)
        if status.verdict is not Verdict.PENDING:
            return status
    return session.expire(frames[-1][0] + DEFAULT_WINDOW_S * (len(challenges) + 2))


def looped(frames: Frames, start: float, seconds: float, fps_t: float) -> Frames:
    """The clip played from ``start`` for ``seconds``, looping (a replay loops too)."""
    if not frames:
        return []
    period = frames[-1][0] - frames[0][0] + fps_t
    out: Frames = []
    offset = 0.0
    while True:
        for t, a in frames:
            tt = t + offset
            if tt < start:
                continue
            if tt > start + seconds:
                return out
            out.append((tt, a))
        offset += period


def replay_sweep(clip: ClipData, trials: int, seed: int) -> tuple[int, int, list[str]]:
    """Random prompts against the clip itself: (passed, trials, notes)."""
    rng = random.Random(seed)
    passed, notes = 0, []
    step = clip.frames[1][0] - clip.frames[0][0] if len(clip.frames) > 1 else 1 / 15
    for _ in range(trials):
        start = rng.uniform(0.0, max(0.1, clip.duration))
        challenges = pick_challenges(3, rng)
        pauses = pick_pauses(3, rng)
        frames = looped(clip.frames, start - WARM_S, WARM_S + 25.0, step)
        status = run_session(frames, start, challenges, pauses=pauses)
        if status.verdict is Verdict.PASSED:
            passed += 1
            notes.append(f"replay passed: {clip.labels.name} from {start:.1f} s "
                         f"{[c.value for c in challenges]}")
    return passed, trials, notes


def attack_frames(rgbs: list[tuple[float, Image]], render: Callable[[Image, float], Image],
                  stream: str) -> Frames:
    return [(t, analyse_frame(render(rgb, t), stream=stream, want_cues=True)) for t, rgb in rgbs]


def pad_only(frames: Frames) -> PadVerdict:
    pad = PadSession()
    for t, a in frames:
        if a.face_count == 1:
            pad.add(t, a.primary)
    return pad.result().verdict


def small_faces(clips: Sequence[ClipData], width_px: int, every: int = 15) -> tuple[int, int]:
    """(found, tried): frames of the clips scaled so the face is ``width_px`` wide, pasted
    into a 640x480 frame (a customer far from the camera), analysed as one stream per clip."""
    import cv2
    import numpy as np

    found = tried = 0
    for n, clip in enumerate(clips):
        for i in range(0, min(len(clip.frames), len(clip.rgb)), every):
            face = clip.frames[i][1].primary
            if face is None or face.box.width <= width_px:
                continue
            scale = width_px / face.box.width
            small = cv2.resize(clip.rgb[i], None, fx=scale, fy=scale,
                               interpolation=cv2.INTER_AREA)[:480, :640]
            canvas = np.full((480, 640, 3), 110, np.uint8)
            y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
            canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
            tried += 1
            found += analyse_frame(canvas, stream=f"small:{width_px}:{n}").face_count >= 1
    return found, tried
