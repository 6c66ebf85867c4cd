"""``cloudcounter vision eval``: the product's figures on the labelled face data sets.

Reads both data sets (``--faces``, ``--faces-more``; by default the settings
``CLOUDCOUNTER_FACES_DIR`` and ``CLOUDCOUNTER_FACES_MORE_DIR``), verifies every file
against the SHA-256 in its labels, and prints (and with ``--json`` writes) identity
FAR/FRR with margins, per-kind recall and false detections per minute, and liveness
error rates in ISO/IEC 30107-3 terms: BPCER (bona fide sessions failed) and APCER per
attack type. See docs/vision.md, "Evaluation", and :mod:`.eval_liveness`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cloudcounter.vision import eval_liveness as ev
from cloudcounter.vision.analysis import analyse_frame, decode_image
from cloudcounter.vision.attacks import print_frame, screen_frame
from cloudcounter.vision.data import faces_dir, faces_more_dir
from cloudcounter.vision.errors import EnrolmentError
from cloudcounter.vision.identity import DEFAULT_MATCH_THRESHOLD, compare, enrol
from cloudcounter.vision.labels import (
    DEFAULT_LABELS,
    DEFAULT_LABELS_MORE,
    Dataset,
    check_file,
    load,
)
from cloudcounter.vision.liveness import Verdict, pick_challenges, pick_pauses
from cloudcounter.vision.pad import PadVerdict
from cloudcounter.vision.quality import quality_problems


def _rate(errors: int, total: int) -> dict[str, Any]:
    return {"errors": errors, "total": total, "rate": round(errors / total, 4) if total else None}


def evaluate_identity(sets: list[Dataset], clips: list[ev.ClipData], threshold: float
                      ) -> dict[str, Any]:
    refused: dict[str, str] = {}
    photos: dict[str, tuple[str, np.ndarray]] = {}
    for data in sets:
        for name, entry in data.photos.items():
            path = check_file(data.directory / name, entry["sha256"])
            try:
                photos[name] = (str(entry["person"]), enrol(decode_image(path.read_bytes())))
            except EnrolmentError as error:
                refused[name] = error.code
    # Live frames of the clips: one usable frame a second passes the quality gate.
    probes: list[tuple[str, str, float, np.ndarray]] = []
    for clip in clips:
        next_t = 0.0
        for t, analysis, rgb in zip((t for t, _ in clip.frames), (a for _, a in clip.frames),
                                    clip.rgb, strict=False):
            face = analysis.primary
            if t < next_t or analysis.face_count != 1 or face is None or face.quality is None:
                continue
            m = face.measures
            if quality_problems(face.quality, m.yaw_deg, m.pitch_deg):
                continue
            live = analyse_frame(rgb, True).primary
            if live is not None and live.descriptor is not None:
                probes.append((clip.labels.person or clip.labels.name, clip.labels.name, t,
                               live.descriptor))
                next_t = t + 1.0
    same: list[float] = []
    different: list[float] = []
    for (a, (pa, da)), (b, (pb, db)) in itertools.combinations(sorted(photos.items()), 2):
        (same if pa == pb else different).append(compare(da, db, threshold).distance)
    # One reference per person (their first usable live frame), every other frame a probe.
    references: dict[str, np.ndarray] = {}
    for person, _clip, _t, d in probes:
        references.setdefault(person, d)
    live_same: list[float] = []
    live_diff: list[float] = []
    closest: tuple[float, str] = (9.0, "")
    farthest: tuple[float, str] = (0.0, "")
    for person, ref in references.items():
        for other, clip_name, t, d in probes:
            if d is ref:
                continue
            distance = compare(ref, d).distance
            pair = f"{person} vs {other} ({clip_name} at {t:.1f} s): {distance:.3f}"
            if other == person:
                live_same.append(distance)
                farthest = max(farthest, (distance, pair))
            else:
                live_diff.append(distance)
                closest = min(closest, (distance, pair))
    def summary(s: list[float], d: list[float]) -> dict[str, Any]:
        return {"frr": _rate(sum(x > threshold for x in s), len(s)),
                "far": _rate(sum(x <= threshold for x in d), len(d)),
                "same_max": round(max(s), 3) if s else None,
                "different_min": round(min(d), 3) if d else None,
                "margin_same": round(threshold - max(s), 3) if s else None,
                "margin_different": round(min(d) - threshold, 3) if d else None}
    # As the product decides: the median of 3 consecutive usable frames of a clip.
    checks_same: list[float] = []
    checks_diff: list[float] = []
    by_clip: dict[str, list[tuple[str, np.ndarray]]] = {}
    for person, clip_name, _t, d in probes:
        by_clip.setdefault(clip_name, []).append((person, d))
    for person, ref in references.items():
        for rows in by_clip.values():
            for i in range(0, len(rows) - 2, 3):
                group = rows[i:i + 3]
                if any(d is ref for _, d in group):
                    continue
                median = float(np.median([compare(ref, d).distance for _, d in group]))
                (checks_same if group[0][0] == person else checks_diff).append(median)
    sweep = {f"{t:.2f}": {"frames": {"far": _rate(sum(x <= t for x in live_diff), len(live_diff)),
                                     "frr": _rate(sum(x > t for x in live_same), len(live_same))},
                          "checks": {"far": _rate(sum(x <= t for x in checks_diff),
                                                  len(checks_diff)),
                                     "frr": _rate(sum(x > t for x in checks_same),
                                                  len(checks_same))}}
             for t in (0.5, 0.55, 0.6)}
    return {"threshold": threshold, "refused": refused, "photos": summary(same, different),
            "checks": summary(checks_same, checks_diff), "sweep": sweep,
            "live_frames": {**summary(live_same, live_diff), "people": len(references),
                            "probes": len(probes), "closest_different": closest[1],
                            "farthest_same": farthest[1]}}


def evaluate_liveness(clips: list[ev.ClipData], fps: float, sets: list[Dataset],
                      replay_trials: int, seed: int) -> dict[str, Any]:
    detection = ev.DetectionScore()
    genuine: list[dict[str, Any]] = []
    attacks: dict[str, list[int]] = {k: [0, 0] for k in (
        "replay_injection", "screen_replay", "print_moved", "static_picture")}
    pad_alone: dict[str, list[int]] = {"screen_replay": [0, 0], "print_moved": [0, 0]}
    notes: list[str] = []
    rng = random.Random(seed)
    for clip in clips:
        detection.add(clip, ev.detect(clip.frames))
        times = [t for t, _ in clip.frames]
        for start, challenges, prompts in ev.genuine_sequences(clip.labels.events, clip.duration):
            status = ev.run_session(clip.frames, start, challenges, prompt_times=prompts)
            ok = status.verdict is Verdict.PASSED
            genuine.append({"clip": clip.labels.name, "start": round(start, 2),
                            "challenges": [c.value for c in challenges],
                            "verdict": status.verdict.value,
                            "reason": status.reason.value if status.reason else None,
                            "pad": status.pad.payload() if status.pad else None})
            if not ok or not clip.rgb:
                continue
            # The same session on a screen, re-filmed: the actions come on time.
            end = (status.results[-1].seen_at or start) + 1.0 if status.results else start
            window = [(t, rgb) for t, rgb in zip(times, clip.rgb, strict=True)
                      if start - ev.WARM_S <= t <= end]
            instance = rng.randrange(1 << 30)
            frames = ev.attack_frames(window, lambda x, t: screen_frame(x, t, instance),
                                      f"screen:{instance}")
            replay = ev.run_session(frames, start, challenges, prompt_times=prompts)
            attacks["screen_replay"][0] += 1
            attacks["screen_replay"][1] += replay.verdict is Verdict.PASSED
            pad_alone["screen_replay"][0] += 1
            pad_alone["screen_replay"][1] += ev.pad_only(frames) is not PadVerdict.ATTACK
        passed, trials, replay_notes = ev.replay_sweep(clip, replay_trials, rng.randrange(1 << 30))
        attacks["replay_injection"][0] += trials
        attacks["replay_injection"][1] += passed
        notes += replay_notes
        if clip.rgb:  # a print of the clip's first frame, moved and bent
            instance = rng.randrange(1 << 30)
            still = clip.rgb[0]
            span = [(i / fps, still) for i in range(int(fps * 14))]
            frames = ev.attack_frames(span, lambda x, t: print_frame(x, t, instance),
                                      f"print:{instance}")
            for _ in range(2):
                status = ev.run_session(frames, 3.0, pick_challenges(3, rng),
                                        pauses=pick_pauses(3, rng))
                attacks["print_moved"][0] += 1
                attacks["print_moved"][1] += status.verdict is Verdict.PASSED
            pad_alone["print_moved"][0] += 1
            pad_alone["print_moved"][1] += ev.pad_only(frames) is not PadVerdict.ATTACK
    for data in sets:
        for name, entry in data.spoof.items():
            picture = analyse_frame(decode_image(check_file(data.directory / name,
                                                            entry["sha256"]).read_bytes()),
                                    want_cues=True)
            for _ in range(4):
                frames = [(i / fps, picture) for i in range(int(20 * fps))]
                status = ev.run_session(frames, 3.0, pick_challenges(3, rng),
                                        pauses=pick_pauses(3, rng))
                attacks["static_picture"][0] += 1
                attacks["static_picture"][1] += status.verdict is Verdict.PASSED
    failed = [g for g in genuine if g["verdict"] != "passed"]
    return {
        "fps": fps,
        "detection": detection.report(),
        "bpcer": _rate(len(failed), len(genuine)),
        "bpcer_failures": failed,
        "apcer": {k: _rate(v[1], v[0]) for k, v in attacks.items()},
        "pad_alone_missed": {k: _rate(v[1], v[0]) for k, v in pad_alone.items()},
        "notes": detection.notes + notes,
        "genuine_sessions": genuine,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloudcounter vision eval", description=__doc__)
    parser.add_argument("directory", type=Path, nargs="?",
                        help="the faces data set (same as --faces)")
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--faces-more", type=Path, default=None)
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--labels-more", type=Path, default=DEFAULT_LABELS_MORE)
    parser.add_argument("--no-more", action="store_true", help="skip the faces-more data set")
    parser.add_argument("--threshold", type=float, default=DEFAULT_MATCH_THRESHOLD)
    parser.add_argument("--fps", type=float, action="append",
                        help="analysed frames per second (repeatable; default 15 and 30)")
    parser.add_argument("--replay-trials", type=int, default=40,
                        help="random-prompt replays per clip")
    parser.add_argument("--no-attacks", action="store_true", help="skip rendered attacks")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    sets = [load(args.labels, args.directory or args.faces or faces_dir())]
    if not args.no_more:
        sets.append(load(args.labels_more, args.faces_more or faces_more_dir()))
    report: dict[str, Any] = {"datasets": [str(s.directory) for s in sets], "liveness": []}
    try:
        for n, fps in enumerate(args.fps or [15.0, 30.0]):
            clips = [ev.analyse_clip(c, fps, keep_rgb=n == 0) for s in sets for c in s.clips]
            if n == 0:
                report["identity"] = evaluate_identity(sets, clips, args.threshold)
                report["small_faces"] = {
                    str(w): dict(zip(("found", "tried"), ev.small_faces(clips, w), strict=True))
                    for w in (60, 45)}
            if args.no_attacks or n > 0:  # rendered attacks once, at the first rate
                clips = [ev.ClipData(c.labels, c.frames, [], c.duration) for c in clips]
            timings = [a.elapsed_ms for c in clips for _, a in c.frames]
            result = evaluate_liveness(clips, fps, sets, args.replay_trials, args.seed)
            result["ms_per_frame"] = {"p50": round(float(np.percentile(timings, 50)), 1),
                                      "p95": round(float(np.percentile(timings, 95)), 1)}
            result["frames_with_face"] = _rate(
                sum(a.face_count == 0 for c in clips for _, a in c.frames), len(timings))
            report["liveness"].append(result)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}")
        return 1
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"report written to {args.json}")
    return 0


def print_report(report: dict[str, Any]) -> None:
    for width, r in report.get("small_faces", {}).items():
        print(f"== faces {width} px wide in a 640x480 frame: found {r['found']}/{r['tried']}")
    idn = report["identity"]
    print(f"== identity (threshold {idn['threshold']})")
    for name, code in idn["refused"].items():
        print(f"  enrol {name}: refused ({code})")
    for part in ("photos", "live_frames", "checks"):
        s = idn[part]
        print(f"  {part}: FRR {s['frr']['errors']}/{s['frr']['total']}, "
              f"FAR {s['far']['errors']}/{s['far']['total']}, same-person max "
              f"{s['same_max']}, different-person min {s['different_min']}")
    live = idn["live_frames"]
    print(f"  closest different: {live['closest_different']}; farthest same: "
          f"{live['farthest_same']}")
    for t, row in idn["sweep"].items():
        print(f"  threshold {t}: frames FAR {row['frames']['far']['errors']}/"
              f"{row['frames']['far']['total']} FRR {row['frames']['frr']['errors']}/"
              f"{row['frames']['frr']['total']}; checks (median of 3) FAR "
              f"{row['checks']['far']['errors']}/{row['checks']['far']['total']} FRR "
              f"{row['checks']['frr']['errors']}/{row['checks']['frr']['total']}")
    for res in report["liveness"]:
        print(f"== liveness at {res['fps']:g} fps (frames as the hub scales them)")
        for note in res["notes"]:
            print(f"  {note}")
        for kind, d in res["detection"].items():
            print(f"  {kind:<10} detected {d['detected']}/{d['labelled']}; false {d['false']} "
                  f"in {d['scored_s']:.0f} s = {d['false_per_min']}/min")
        face = res["frames_with_face"]
        print(f"  frames with a face {face['total'] - face['errors']}/{face['total']}; "
              f"analysis per frame p50 {res['ms_per_frame']['p50']} ms, "
              f"p95 {res['ms_per_frame']['p95']} ms")
        for g in res["bpcer_failures"]:
            print(f"  genuine failed: {g['clip']} from {g['start']} s {g['challenges']}: "
                  f"{g['reason']}")
        b = res["bpcer"]
        print(f"  BPCER {b['errors']}/{b['total']}")
        for kind, a in res["apcer"].items():
            print(f"  APCER {kind} {a['errors']}/{a['total']}")
        for kind, a in res["pad_alone_missed"].items():
            print(f"  PAD alone missed {kind} {a['errors']}/{a['total']}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
