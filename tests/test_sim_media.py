"""The simulators' media source: a clip prepared once, even by several simulators at once."""

from __future__ import annotations

import threading
from pathlib import Path

import av

from cloudcounter.sim.media import encoded_source


def small_clip(path: Path, frames: int = 60) -> Path:
    """A 2 s MPEG-4 clip (not VP8, so the simulator transcodes it)."""
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            picture = np.full((120, 160, 3), (i * 4) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_concurrent_preparation_of_one_clip_gives_one_whole_file(tmp_path: Path) -> None:
    clip = small_clip(tmp_path / "clip.mp4")
    results: list[Path] = []
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            results.append(encoded_source(clip, cache=tmp_path / "cache"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1
    (target,) = set(results)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [target.name]  # no leftovers
    with av.open(str(target)) as c:
        assert {s.codec_context.name for s in c.streams} >= {"vp8"}
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= 55  # the 2 s clip, decoded to the end
