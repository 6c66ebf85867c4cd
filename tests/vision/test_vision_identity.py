from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cloudcounter.vision.analysis import FrameAnalysis, Image, analyse_frame
from cloudcounter.vision.errors import (
    BadImageError,
    BlurredImageError,
    EnrolmentError,
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
)
from cloudcounter.vision.identity import (
    DEFAULT_MATCH_THRESHOLD,
    ContinuitySignal,
    MatchVerdict,
    check_continuity,
    compare,
    enrol,
)

PEOPLE = {
    "photos/obama.jpg": "obama",
    "photos/obama2.jpg": "obama",
    "photos/obama-480p.jpg": "obama",
    "photos/biden.jpg": "biden",
    "photos/astronaut.png": "astronaut",
}


@pytest.fixture(scope="module")
def descriptors(load_photo: Callable[[str], Image]) -> dict[str, np.ndarray]:
    return {name: enrol(load_photo(name)) for name in PEOPLE}


@pytest.mark.vision
def test_two_people_is_refused(load_photo: Callable[[str], Image]) -> None:
    with pytest.raises(MultipleFacesError) as caught:
        enrol(load_photo("photos/two_people.jpg"))
    assert caught.value.code == "multiple_faces"
    assert caught.value.count == 2
    assert isinstance(caught.value, EnrolmentError)


def test_blank_image_has_no_face(blank_frame: Image) -> None:
    with pytest.raises(NoFaceError) as caught:
        enrol(blank_frame)
    assert caught.value.code == "no_face"


@pytest.mark.parametrize("data", [b"", b"not a jpeg at all"])
def test_unreadable_bytes_are_bad_image(data: bytes) -> None:
    with pytest.raises(BadImageError) as caught:
        enrol(data)
    assert caught.value.code == "bad_image"


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640), np.uint8),
        np.zeros((480, 640, 3), np.float32),
        np.zeros((8, 8, 3), np.uint8),
    ],
)
def test_wrong_arrays_are_bad_image(image: Image) -> None:
    with pytest.raises(BadImageError):
        enrol(image)


def test_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(MultipleFacesError("two faces", count=2)))
    assert isinstance(error, MultipleFacesError) and error.code == "multiple_faces"


@pytest.mark.vision
def test_enrol_accepts_encoded_bytes(faces: Path, descriptors: dict[str, np.ndarray]) -> None:
    from_bytes = enrol((faces / "photos/obama.jpg").read_bytes())
    assert from_bytes.shape == (128,)
    assert compare(descriptors["photos/obama.jpg"], from_bytes).distance < 1e-3


@pytest.mark.vision
def test_same_person_matches_and_others_are_rejected(descriptors: dict[str, np.ndarray]) -> None:
    for a, b in itertools.combinations(PEOPLE, 2):
        match = compare(descriptors[a], descriptors[b], DEFAULT_MATCH_THRESHOLD)
        expected = MatchVerdict.MATCH if PEOPLE[a] == PEOPLE[b] else MatchVerdict.NO_MATCH
        assert match.verdict is expected, (a, b, match.distance)


@pytest.mark.vision
def test_threshold_is_configurable(descriptors: dict[str, np.ndarray]) -> None:
    same = (descriptors["photos/obama.jpg"], descriptors["photos/obama2.jpg"])
    assert compare(*same, threshold=0.6).matched
    assert not compare(*same, threshold=0.05).matched


@pytest.mark.vision
def test_continuity_flags_a_change_of_person(
    load_photo: Callable[[str], Image], descriptors: dict[str, np.ndarray]
) -> None:
    anchor = descriptors["photos/obama.jpg"]
    other = analyse_frame(load_photo("photos/biden.jpg"), True)
    check = check_continuity(other, anchor)
    assert check.face_count == 1
    assert check.drift is not None and check.drift > 0.6
    assert check.signals == (ContinuitySignal.FACE_CHANGED,)
    same = check_continuity(analyse_frame(load_photo("photos/obama2.jpg"), True), anchor)
    assert same.ok and same.drift is not None and same.drift < 0.6


@pytest.mark.vision
def test_continuity_flags_face_count(load_photo: Callable[[str], Image]) -> None:
    two = analyse_frame(load_photo("photos/two_people.jpg"), False)
    assert check_continuity(two, None).signals == (ContinuitySignal.MULTIPLE_FACES,)
    empty = FrameAnalysis(width=640, height=480)
    assert check_continuity(empty, None).signals == (ContinuitySignal.NO_FACE,)
    assert pickle.loads(pickle.dumps(two)).face_count == 2


@pytest.mark.vision
def test_small_or_blurred_reference_photos_are_refused(
        load_photo: Callable[[str], Image]) -> None:
    """obama-240p.jpg's face is 62 px wide; obama.jpg blurred loses its detail."""
    import cv2

    with pytest.raises(FaceTooSmallError) as small:
        enrol(load_photo("photos/obama-240p.jpg"))
    assert small.value.code == "face_too_small" and "80 px" in small.value.message
    sharp = load_photo("photos/obama.jpg")
    with pytest.raises(BlurredImageError) as blurred:
        enrol(np.ascontiguousarray(cv2.GaussianBlur(sharp, (0, 0), 9)))
    assert blurred.value.code == "image_blurred" and blurred.value.retryable
    assert enrol(sharp).shape == (128,)  # the same photo, sharp, is accepted
