"""Fixtures of the vision tests: the shared face data set, found through a setting.

``CLOUDCOUNTER_FACES_DIR`` (default ``../shared/data/faces`` from the repo
root) is verified against its ``SHA256SUMS``. Absent data skips the tests with
the reason shown (``-ra``), except under ``CI=true`` where it fails them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cloudcounter.vision.analysis import Image, decode_image

LABELS_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "vision" / "labels.json"


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
