"""Fixtures of the vision tests: the shared face data set, found through a setting.

``CLOUDCOUNTER_FACES_DIR`` (default ``../shared/data/faces`` from the repo
root) is verified against its ``SHA256SUMS``. Absent data skips the tests with
the reason shown (``-ra``), except under ``CI=true`` where it fails them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cloudcounter.vision.analysis import Image, decode_image

LABELS_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "vision" / "labels.json"
LABELS_MORE_PATH = LABELS_PATH.with_name("labels_more.json")
CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def labels() -> dict[str, dict[str, dict[str, object]]]:
    data: dict[str, dict[str, dict[str, object]]] = json.loads(LABELS_PATH.read_text())
    return data


@pytest.fixture(scope="session")
def load_photo(faces: Path):  # type: ignore[no-untyped-def]
    def load(name: str) -> Image:
        return decode_image((faces / name).read_bytes())

    return load


@pytest.fixture
def blank_frame() -> Image:
    return np.full((480, 640, 3), 200, dtype=np.uint8)


@pytest.fixture(scope="session")
def faces_more() -> Path:
    """The second data set (CLOUDCOUNTER_FACES_MORE_DIR), verified; skipped with a visible
    reason when absent, except under CI=true where absence is a failure."""
    from cloudcounter.vision.data import faces_more_dir, verify_checksums

    directory = faces_more_dir()
    if not (directory / "SHA256SUMS").is_file():
        reason = (f"face data set faces-more not found at {directory}; set "
                  "CLOUDCOUNTER_FACES_MORE_DIR (docs/vision.md lists the sources)")
        if CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    problems = verify_checksums(directory)
    if problems:
        pytest.fail("face data set faces-more is corrupt: " + "; ".join(problems))
    return directory


@pytest.fixture(scope="session")
def labels_more() -> dict[str, dict[str, dict[str, object]]]:
    data: dict[str, dict[str, dict[str, object]]] = json.loads(LABELS_MORE_PATH.read_text())
    return data
