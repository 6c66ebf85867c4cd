"""The simulators' media source: a clip prepared once, even by several simulators at once."""

from __future__ import annotations

import threading
from pathlib import Path

import av

from cloudcounter.sim.media import encoded_source


def test_concurrent_preparation_of_one_clip_gives_one_whole_file(faces: Path,
                                                                  tmp_path: Path) -> None:
    clip = faces / "video" / "mouth_open.mp4"
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
    assert frames > 100  # 7.2 s at 30 fps, decoded to the end
