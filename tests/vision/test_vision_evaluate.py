"""The labels agree with the data sets, and ``vision eval`` runs end to end on a subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudcounter.vision import evaluate
from cloudcounter.vision.actions import Action
from cloudcounter.vision.data import (
    FACES_DIR_ENV,
    FACES_MORE_DIR_ENV,
    REPO_ROOT,
    faces_dir,
    faces_more_dir,
)
from cloudcounter.vision.eval_liveness import REACTION_S, genuine_sequences
from cloudcounter.vision.labels import LabelledEvent

pytestmark = pytest.mark.vision


def _sums(directory: Path) -> dict[str, str]:
    sums = {}
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    return sums


def test_labels_carry_the_data_sets_checksums(
    faces: Path, labels: dict[str, dict[str, dict[str, object]]]
) -> None:
    sums = _sums(faces)
    labelled = {**labels["photos"], **labels["spoof"], **labels["clips"]}
    assert set(labelled) == set(sums)
    for name, entry in labelled.items():
        assert entry["sha256"] == sums[name], name


def test_more_labels_carry_their_checksums(
    faces_more: Path, labels_more: dict[str, dict[str, dict[str, object]]]
) -> None:
    sums = _sums(faces_more)
    assert set(labels_more["clips"]) == set(sums)
    for name, entry in labels_more["clips"].items():
        assert entry["sha256"] == sums[name], name


def test_relative_settings_start_at_the_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACES_DIR_ENV, "../shared/data/faces")
    monkeypatch.setenv(FACES_MORE_DIR_ENV, "../shared/data/faces-more")
    assert faces_dir() == (REPO_ROOT.parent / "shared" / "data" / "faces").resolve()
    assert faces_more_dir() == (REPO_ROOT.parent / "shared" / "data" / "faces-more").resolve()


def test_genuine_sequences_are_product_like() -> None:
    """Distinct actions (no repeat), each prompted a reaction time before its onset;
    uncertain events are never prompted."""
    events = [
        LabelledEvent(Action.OPEN_MOUTH, 2.0, 3.0),
        LabelledEvent(Action.BLINK, 3.5, 3.7),
        LabelledEvent(Action.BLINK, 4.5, 4.7),
        LabelledEvent(Action.TURN_LEFT, 5.0, 6.0, uncertain=True),
        LabelledEvent(Action.TURN_RIGHT, 6.5, 7.5),
    ]
    (start, challenges, prompts), *_ = genuine_sequences(events, 9.0)
    assert challenges == (Action.OPEN_MOUTH, Action.BLINK, Action.TURN_RIGHT)
    assert prompts == (2.0 - REACTION_S, 3.5 - REACTION_S, 6.5 - REACTION_S)
    assert start == prompts[0] - 1.0


def test_eval_runs_on_a_subset(
    faces: Path,
    labels: dict[str, dict[str, dict[str, object]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keep = {
        "photos": [
            "photos/obama.jpg",
            "photos/obama2.jpg",
            "photos/obama-240p.jpg",
            "photos/biden.jpg",
            "photos/two_people.jpg",
        ],
        "spoof": ["spoof/printed_photo.jpg"],
        "clips": ["video/mouth_open.mp4"],
    }
    subset: dict[str, object] = {"schema": 2, "dataset": "subset"}
    for section, names in keep.items():
        subset[section] = {name: labels[section][name] for name in names}
        for name in names:  # links to the read-only data, outside the repository
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).symlink_to(faces / name)
    labels_path = tmp_path / "labels.json"
    labels_path.write_text(json.dumps(subset))
    report = tmp_path / "report.json"
    argv = [str(tmp_path), "--labels", str(labels_path), "--no-more", "--fps", "15",
            "--replay-trials", "6", "--no-attacks", "--json", str(report)]
    assert evaluate.main(argv) == 0
    out = capsys.readouterr().out
    assert "enrol photos/two_people.jpg: refused (multiple_faces)" in out
    assert "enrol photos/obama-240p.jpg: refused (face_too_small)" in out
    assert "photos: FRR 0/1, FAR 0/2" in out
    assert "open_mouth detected 2/2" in out
    data = json.loads(report.read_text())
    (live,) = data["liveness"]
    assert live["bpcer"]["errors"] == 0 and live["bpcer"]["total"] >= 1
    assert live["apcer"]["static_picture"] == {"errors": 0, "total": 4, "rate": 0.0}
    assert live["apcer"]["replay_injection"]["errors"] == 0
    assert live["detection"]["blink"]["false"] == 0
    assert data["identity"]["refused"] == {"photos/obama-240p.jpg": "face_too_small",
                                           "photos/two_people.jpg": "multiple_faces"}
