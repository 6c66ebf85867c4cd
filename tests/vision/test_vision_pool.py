from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from cloudcounter.vision.analysis import Image
from cloudcounter.vision.errors import VisionError
from cloudcounter.vision.models import FACE_DESCRIPTOR_RESNET, SHAPE_PREDICTOR_68, model_dir
from cloudcounter.vision.pool import VisionPool


def test_models_are_found_without_importing_the_package() -> None:
    directory = model_dir()
    assert (directory / SHAPE_PREDICTOR_68).is_file()
    assert (directory / FACE_DESCRIPTOR_RESNET).is_file()
    assert "face_recognition_models" not in sys.modules


async def test_pool_must_be_started(blank_frame: Image) -> None:
    with pytest.raises(VisionError) as caught:
        await VisionPool(1).analyse(blank_frame)
    assert caught.value.code == "pool_not_started"


@pytest.mark.vision
async def test_pool_analyses_in_a_worker(
    blank_frame: Image, load_photo: Callable[[str], Image]
) -> None:
    async with VisionPool(1) as pool:
        await pool.warm_up()
        empty = await pool.analyse(blank_frame)
        assert empty.face_count == 0
        found = await pool.analyse(load_photo("photos/obama.jpg"), want_descriptor=True)
        assert found.face_count == 1
        assert found.primary is not None and found.primary.descriptor is not None
        assert found.primary.descriptor.shape == (128,)
        assert pool.busy == 0
    assert not pool.running


def test_trackers_are_kept_per_stream_and_closed_when_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudcounter.vision import mesh

    monkeypatch.setattr(mesh, "_streams", type(mesh._streams)())
    clock = [100.0]
    monkeypatch.setattr(mesh.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(mesh, "MAX_STREAMS", 2)
    a = mesh.mesher_for("call-a")
    assert mesh.mesher_for("call-a") is a and mesh.mesher_for(None) is not a
    b = mesh.mesher_for("call-b")
    mesh.mesher_for("call-c")  # over the cap: the least recently used (a) goes
    assert list(mesh._streams) == ["call-b", "call-c"]
    clock[0] += mesh.STREAM_IDLE_S + 1
    mesh.mesher_for("call-b")  # c idled too long
    assert list(mesh._streams) == ["call-b"] and mesh.mesher_for("call-b") is b
    mesh.forget_stream("call-b")
    assert not mesh._streams
