"""The labels agree with the data set, and ``vision eval`` runs end to end on a subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudcounter.vision import evaluate
from cloudcounter.vision.actions import Action
from cloudcounter.vision.data import FACES_DIR_ENV, REPO_ROOT, faces_dir

pytestmark = pytest.mark.vision


def test_labels_carry_the_data_sets_checksums(
    faces: Path, labels: dict[str, dict[str, dict[str, object]]]
) -> None:
    sums = {}
    for line in (faces / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    labelled = {**labels["photos"], **labels["spoof"], **labels["clips"]}
    assert set(labelled) == set(sums)
    for name, entry in labelled.items():
        assert entry["sha256"] == sums[name], name


def test_relative_setting_starts_at_the_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACES_DIR_ENV, "../shared/data/faces")
    assert faces_dir() == (REPO_ROOT.parent / "shared" / "data" / "faces").resolve()


def test_genuine_sequences_follow_the_labels() -> None:
    events = [
        evaluate.LabelledEvent(Action.OPEN_MOUTH, 2.0, 3.0),
        evaluate.LabelledEvent(Action.BLINK, 3.5, 3.7),
    ]
    assert evaluate.genuine_sequences(events, 7.0)[0] == (0.0, (Action.OPEN_MOUTH, Action.BLINK))


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
            "photos/biden.jpg",
            "photos/two_people.jpg",
        ],
        "spoof": ["spoof/printed_photo.jpg"],
        "clips": ["video/mouth_open.mp4"],
    }
    subset: dict[str, object] = {}
    for section, names in keep.items():
        subset[section] = {name: labels[section][name] for name in names}
        for name in names:  # links to the read-only data, outside the repository
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).symlink_to(faces / name)
    labels_path = tmp_path / "labels.json"
    labels_path.write_text(json.dumps(subset))
    assert evaluate.main([str(tmp_path), "--labels", str(labels_path), "--fps", "15"]) == 0
    out = capsys.readouterr().out
    assert "refused (multiple_faces) [ok]" in out
    assert "FRR 0/1" in out and "FAR 0/2" in out
    assert "open_mouth detected 2/2" in out
    assert "APCER 0/4" in out
    assert "BPCER 0/" in out
