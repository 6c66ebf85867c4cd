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
from cloudcounter.vision.data import faces_dir, verify_checksums

LABELS_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "vision" / "labels.json"


@pytest.fixture(scope="session")
def faces() -> Path:
    directory = faces_dir()
    if not (directory / "SHA256SUMS").is_file():
        reason = (
            f"face data set not found at {directory}; set CLOUDCOUNTER_FACES_DIR "
            "(see /work/shared/data/faces/README.md for the sources)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    problems = verify_checksums(directory)
    if problems:
        pytest.fail("face data set is corrupt: " + "; ".join(problems))
    return directory


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
