"""``cloudcounter vision eval DIR``: measure the core on a labelled face data set.

DIR is laid out like the shared data set (``photos/``, ``spoof/``, ``video/``)
and the labels file (``tests/fixtures/vision/labels.json`` by default) names
each file with its SHA-256. Prints identity FAR/FRR, per-challenge detection
rates and false detections per minute, and liveness APCER/BPCER.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudcounter.vision.actions import Action, ActionDetector, ActionEvent
from cloudcounter.vision.analysis import FrameAnalysis, analyse_frame, decode_image
from cloudcounter.vision.data import REPO_ROOT, read_clip, sha256_file
from cloudcounter.vision.errors import EnrolmentError
from cloudcounter.vision.identity import DEFAULT_MATCH_THRESHOLD, Match, compare, enrol
from cloudcounter.vision.liveness import DEFAULT_WINDOW_S, LivenessSession, Verdict

DEFAULT_LABELS = REPO_ROOT / "tests" / "fixtures" / "vision" / "labels.json"
MATCH_TOLERANCE_S = 0.25
ATTACK_SEQUENCES: tuple[tuple[Action, ...], ...] = tuple(
    itertools.islice(itertools.permutations(tuple(Action), 3), 0, 24, 6)
)


@dataclass(frozen=True)
class LabelledEvent:
    kind: Action
    start: float
    end: float


def _overlaps(event: ActionEvent, label: LabelledEvent) -> bool:
    return (
        event.action is label.kind
        and event.end_s >= label.start - MATCH_TOLERANCE_S
        and event.start_s <= label.end + MATCH_TOLERANCE_S
    )


def _check_file(directory: Path, name: str, entry: dict[str, object]) -> Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    if sha256_file(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match the SHA-256 of its labels")
    return path


def evaluate_identity(
    directory: Path, photos: dict[str, dict[str, object]], threshold: float
) -> None:
    print(f"== identity (threshold {threshold:.2f})")
    people: dict[str, tuple[str, np.ndarray]] = {}
    for name, entry in photos.items():
        path = _check_file(directory, name, entry)
        refuse = entry.get("refuse")
        try:
            descriptor = enrol(decode_image(path.read_bytes()))
        except EnrolmentError as error:
            outcome = "ok" if error.code == refuse else "UNEXPECTED"
            print(f"  enrol {name}: refused ({error.code}) [{outcome}]")
            continue
        if refuse:
            print(f"  enrol {name}: accepted, expected refusal {refuse} [UNEXPECTED]")
            continue
        people[name] = (str(entry["person"]), descriptor)
    same: list[tuple[str, str, Match]] = []
    different: list[tuple[str, str, Match]] = []
    for (a, (pa, da)), (b, (pb, db)) in itertools.combinations(sorted(people.items()), 2):
        match = compare(da, db, threshold)
        (same if pa == pb else different).append((a, b, match))
    false_rejects = [m for m in same if not m[2].matched]
    false_accepts = [m for m in different if m[2].matched]
    same_d = [m[2].distance for m in same]
    diff_d = [m[2].distance for m in different]
    print(f"  same-person pairs {len(same)}: distance {min(same_d):.3f}-{max(same_d):.3f}")
    print(
        f"  different-person pairs {len(different)}: distance {min(diff_d):.3f}-{max(diff_d):.3f}"
    )
    print(f"  FRR {len(false_rejects)}/{len(same)} = {len(false_rejects) / len(same):.3f}")
    print(
        f"  FAR {len(false_accepts)}/{len(different)} = {len(false_accepts) / len(different):.3f}"
    )
    for a, b, m in false_rejects + false_accepts:
        print(f"    error: {a} vs {b}: {m.distance:.3f} {m.verdict}")


def analyse_clip(path: Path, fps: float | None) -> list[tuple[float, FrameAnalysis]]:
    return [(f.t, analyse_frame(f.rgb)) for f in read_clip(path, fps=fps)]


def detect(frames: Sequence[tuple[float, FrameAnalysis]]) -> list[ActionEvent]:
    detector = ActionDetector()
    events: list[ActionEvent] = []
    for t, analysis in frames:
        primary = analysis.primary if analysis.face_count == 1 else None
        events += detector.update(t, primary.measures if primary else None)
    return events


def genuine_sequences(
    labels: list[LabelledEvent], duration: float
) -> list[tuple[float, tuple[Action, ...]]]:
    """(start time, challenges) that a genuine clip performs, one every 4 s of the clip."""
    sequences = []
    for start in np.arange(0.0, max(duration - 2.0, 0.1), 4.0):
        opened = float(start) + 1.0  # warm-up
        picked: list[Action] = []
        for label in sorted(labels, key=lambda e: e.start):
            if len(picked) == 3:
                break
            if label.start >= opened and label.end <= opened + DEFAULT_WINDOW_S - 0.5:
                picked.append(label.kind)
                opened = label.end + 0.1
        if picked:
            sequences.append((float(start), tuple(picked)))
    return sequences


def run_session(
    frames: Sequence[tuple[float, FrameAnalysis]],
    start: float,
    challenges: tuple[Action, ...],
    *,
    warm_s: float = 3.0,
) -> Verdict:
    """Run one liveness check from ``start``; the detector has seen the call's last ``warm_s``.

    In a call the hub feeds the customer's frames to the detector before the
    check starts, so the baseline describes the resting face, not whatever
    the customer happens to be doing when the agent presses the button.
    """
    detector = ActionDetector()
    for t, analysis in frames:
        if start - warm_s <= t < start:
            primary = analysis.primary if analysis.face_count == 1 else None
            detector.update(t, primary.measures if primary else None)
    session = LivenessSession(challenges=challenges, started_at=start, detector=detector)
    for t, analysis in frames:
        if t < start:
            continue
        primary = analysis.primary
        status = session.update(t, analysis.face_count, primary.measures if primary else None)
        if status.verdict is not Verdict.PENDING:
            return status.verdict
    return session.expire(frames[-1][0] + DEFAULT_WINDOW_S * len(challenges) + 1.0).verdict


def evaluate_clips(
    directory: Path, clips: dict[str, dict[str, object]], fps: float | None
) -> list[int]:
    print(f"== challenge detection ({fps or 'all'} fps sampled)")
    hits = {a: 0 for a in Action}
    totals = {a: 0 for a in Action}
    false = {a: 0 for a in Action}
    scored_s = {a: 0.0 for a in Action}
    genuine = [0, 0]
    timings: list[float] = []
    for name, entry in clips.items():
        path = _check_file(directory, name, entry)
        frames = analyse_clip(path, fps)
        timings += [a.elapsed_ms for _, a in frames]
        duration = frames[-1][0] - frames[0][0]
        raw_events = entry.get("events", [])
        assert isinstance(raw_events, list)
        labels = [LabelledEvent(Action(e["kind"]), e["start"], e["end"]) for e in raw_events]
        raw_kinds = entry.get("labelled", [])
        assert isinstance(raw_kinds, list)
        labelled = {Action(k) for k in raw_kinds}
        events = detect(frames)
        for kind in labelled:
            scored_s[kind] += duration
        for label in labels:
            totals[label.kind] += 1
            found = any(_overlaps(e, label) for e in events)
            hits[label.kind] += found
            if not found:
                print(f"  missed {label.kind} {label.start:.2f}-{label.end:.2f} in {name}")
        for event in events:
            if event.action in labelled and not any(_overlaps(event, lab) for lab in labels):
                false[event.action] += 1
                print(f"  false {event.action} {event.start_s:.2f}-{event.end_s:.2f} in {name}")
        for start, challenges in genuine_sequences(labels, duration):
            verdict = run_session(frames, start, challenges)
            genuine[0] += 1
            genuine[1] += verdict is not Verdict.PASSED
            print(f"  genuine {name} from {start:.0f} s {[c.value for c in challenges]}: {verdict}")
    for kind in Action:
        rate = f"{hits[kind]}/{totals[kind]}" if totals[kind] else "n/a (no labelled event)"
        per_min = false[kind] / (scored_s[kind] / 60.0) if scored_s[kind] else 0.0
        print(
            f"  {kind.value:<10} detected {rate}; false {false[kind]} in "
            f"{scored_s[kind]:.0f} s = {per_min:.2f}/min"
        )
    if timings:
        p50, p95 = np.percentile(timings, [50, 95])
        print(f"  analysis per frame (detect+landmarks): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    return genuine


def evaluate_attacks(directory: Path, spoof: dict[str, dict[str, object]], fps: float) -> list[int]:
    attacks = [0, 0]
    for name, entry in spoof.items():
        path = _check_file(directory, name, entry)
        analysis = analyse_frame(decode_image(path.read_bytes()))
        for challenges in ATTACK_SEQUENCES:
            length = 1.0 + DEFAULT_WINDOW_S * len(challenges) + 1.0
            frames = [(i / fps, analysis) for i in range(int(length * fps))]
            verdict = run_session(frames, 0.0, challenges)
            attacks[0] += 1
            attacks[1] += verdict is Verdict.PASSED
            print(f"  static {name} {[c.value for c in challenges]}: {verdict}")
    return attacks


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloudcounter vision eval", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--threshold", type=float, default=DEFAULT_MATCH_THRESHOLD)
    parser.add_argument(
        "--fps",
        type=float,
        default=30.0,
        help="analysed frames per second during a challenge (default 30: short blinks)",
    )
    args = parser.parse_args(argv)
    labels = json.loads(args.labels.read_text())
    try:
        evaluate_identity(args.directory, labels["photos"], args.threshold)
        genuine = evaluate_clips(args.directory, labels["clips"], args.fps)
        print(f"== liveness (static pictures shown for the whole challenge, {args.fps} fps)")
        attacks = evaluate_attacks(args.directory, labels["spoof"], args.fps)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}")
        return 1
    print(f"  APCER {attacks[1]}/{attacks[0]} = {attacks[1] / max(attacks[0], 1):.3f}")
    print(f"  BPCER {genuine[1]}/{genuine[0]} = {genuine[1] / max(genuine[0], 1):.3f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(main(sys.argv[1:]))
