"""The issue's targets, measured by ``vision eval`` on both data sets (slow tier: 2-3 min).

Deterministic: tracking is frame by frame in order, the attacks are rendered from seeds
and the replay sweep draws its prompts from a seeded generator; what is asserted are the
product's error rates, never a timing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloudcounter.vision import evaluate

pytestmark = [pytest.mark.vision, pytest.mark.slow]


@pytest.fixture(scope="module")
def report(faces: Path, faces_more: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("eval") / "report.json"
    # 15 fps is the demanding rate (short blinks); docs/vision.md has 20 and 30 fps too.
    argv = ["--faces", str(faces), "--faces-more", str(faces_more), "--fps", "15",
            "--replay-trials", "16", "--json", str(out)]
    assert evaluate.main(argv) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_genuine_sessions_pass(report: dict[str, Any]) -> None:
    for res in report["liveness"]:
        b = res["bpcer"]
        assert b["total"] >= 15 and b["errors"] <= 0.05 * b["total"], res["bpcer_failures"]


def test_actions_are_detected_without_false_detections(report: dict[str, Any]) -> None:
    for res in report["liveness"]:
        det = res["detection"]
        for kind in ("turn_left", "turn_right"):
            assert det[kind]["labelled"] >= 5 and det[kind]["recall"] >= 0.9, det[kind]
        assert det["blink"]["recall"] >= 0.95 and det["open_mouth"]["recall"] >= 0.95, det
        for kind, d in det.items():
            assert d["false_per_min"] is not None and d["false_per_min"] <= 0.5, (kind, d)
        face = res["frames_with_face"]
        assert face["errors"] <= 0.02 * face["total"], face


def test_attacks_fail(report: dict[str, Any]) -> None:
    first, *_ = report["liveness"]
    assert first["apcer"]["replay_injection"]["total"] >= 16 * 8
    assert first["apcer"]["screen_replay"]["total"] >= 10
    assert first["apcer"]["print_moved"]["total"] >= 8
    for res in report["liveness"]:
        for kind, a in res["apcer"].items():
            assert a["errors"] == 0, (res["fps"], kind, a)


def test_identity_checks_keep_people_apart(report: dict[str, Any]) -> None:
    idn = report["identity"]
    assert idn["refused"]["photos/obama-240p.jpg"] == "face_too_small"
    checks = idn["checks"]
    assert checks["far"]["errors"] == 0 and checks["far"]["total"] >= 100
    assert checks["frr"]["errors"] <= 0.02 * checks["frr"]["total"]
    assert checks["margin_same"] > 0 and checks["margin_different"] > 0


def test_small_faces_are_found(report: dict[str, Any]) -> None:
    for width in ("60", "45"):
        r = report["small_faces"][width]
        assert r["tried"] >= 100 and r["found"] >= 0.98 * r["tried"], (width, r)
