"""The label files of the face data sets (``tests/fixtures/vision/labels*.json``).

Schema 2: each file names its data set and lists ``photos``, ``spoof`` and ``clips``
with each file's SHA-256. A clip has ``events`` (``kind``, ``start``, ``end``, optional
``uncertain``), ``labelled`` (the kinds labelled exhaustively: only those are scored
for false detections), ``dont_care`` spans (not scored) and the ``person`` shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudcounter.vision.actions import Action, ActionEvent
from cloudcounter.vision.data import REPO_ROOT, sha256_file

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "vision"
DEFAULT_LABELS = FIXTURES / "labels.json"
DEFAULT_LABELS_MORE = FIXTURES / "labels_more.json"
#: A detection matches a labelled event of its kind within this tolerance.
MATCH_TOLERANCE_S = 0.25


@dataclass(frozen=True)
class LabelledEvent:
    kind: Action
    start: float
    end: float
    uncertain: bool = False

    def matches(self, event: ActionEvent) -> bool:
        return (event.action is self.kind
                and event.end_s >= self.start - MATCH_TOLERANCE_S
                and event.start_s <= self.end + MATCH_TOLERANCE_S)


@dataclass(frozen=True)
class ClipLabels:
    name: str
    path: Path
    sha256: str
    person: str | None
    events: tuple[LabelledEvent, ...]
    labelled: frozenset[Action]
    dont_care: tuple[tuple[float, float], ...] = ()

    def ignored(self, event: ActionEvent) -> bool:
        """In a dont_care span or matching an uncertain event: neither hit nor false."""
        if any(a <= event.end_s and event.start_s <= b for a, b in self.dont_care):
            return True
        return any(e.uncertain and e.matches(event) for e in self.events)


@dataclass(frozen=True)
class Dataset:
    name: str
    directory: Path
    photos: dict[str, dict[str, Any]] = field(default_factory=dict)
    spoof: dict[str, dict[str, Any]] = field(default_factory=dict)
    clips: tuple[ClipLabels, ...] = ()


def check_file(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    if sha256_file(path) != sha256:
        raise ValueError(f"{path} does not match the SHA-256 of its labels")
    return path


def load(labels_path: Path, directory: Path) -> Dataset:
    raw = json.loads(labels_path.read_text())
    clips = []
    for name, entry in raw.get("clips", {}).items():
        events = tuple(LabelledEvent(Action(e["kind"]), float(e["start"]), float(e["end"]),
                                     bool(e.get("uncertain", False)))
                       for e in entry.get("events", []))
        clips.append(ClipLabels(
            name=name, path=directory / name, sha256=entry["sha256"],
            person=entry.get("person"), events=events,
            labelled=frozenset(Action(k) for k in entry.get("labelled", [])),
            dont_care=tuple((float(a), float(b)) for a, b in entry.get("dont_care", []))))
    return Dataset(name=raw.get("dataset", labels_path.stem), directory=directory,
                   photos=raw.get("photos", {}), spoof=raw.get("spoof", {}),
                   clips=tuple(clips))
