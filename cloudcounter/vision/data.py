"""Where the shared face data set lives, its checksums, and reading its clips.

The data set is never copied into the repository: ``CLOUDCOUNTER_FACES_DIR``
points at it, by default ``../shared/data/faces`` relative to the repository
root. Its ``SHA256SUMS`` is verified before use.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudcounter.vision.frames import Image, to_rgb

FACES_DIR_ENV = "CLOUDCOUNTER_FACES_DIR"
FACES_MORE_DIR_ENV = "CLOUDCOUNTER_FACES_MORE_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FACES_DIR = REPO_ROOT.parent / "shared" / "data" / "faces"
DEFAULT_FACES_MORE_DIR = REPO_ROOT.parent / "shared" / "data" / "faces-more"


def _setting(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    if not value:
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def faces_dir() -> Path:
    """The configured data directory (it may not exist); relative paths start at the repo root."""
    return _setting(FACES_DIR_ENV, DEFAULT_FACES_DIR)


def faces_more_dir() -> Path:
    """The second data set (webcam clips with real head turns), like :func:`faces_dir`."""
    return _setting(FACES_MORE_DIR_ENV, DEFAULT_FACES_MORE_DIR)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksums(directory: Path) -> list[str]:
    """Problems found against ``SHA256SUMS`` (empty when every file matches)."""
    sums = directory / "SHA256SUMS"
    if not sums.is_file():
        return [f"{sums} is missing"]
    problems = []
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        expected, name = line.split(maxsplit=1)
        path = directory / name.strip().removeprefix("*").removeprefix("./")
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{name} does not match its checksum")
    return problems


@dataclass(frozen=True)
class ClipFrame:
    t: float
    rgb: Image


def read_clip(
    path: Path, *, fps: float | None = None, start_s: float = 0.0, end_s: float | None = None
) -> Iterator[ClipFrame]:
    """Decode a clip with PyAV into RGB frames (at most 640 px wide, as in a call),
    optionally sampled down to ``fps``."""
    import av

    next_t = start_s
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.pts is None or stream.time_base is None:
                continue
            t = float(frame.pts * stream.time_base)
            if t < start_s - 1e-6:
                continue
            if end_s is not None and t > end_s:
                break
            if fps is not None:
                if t + 1e-6 < next_t:
                    continue
                next_t += 1.0 / fps
                while next_t <= t:
                    next_t += 1.0 / fps
            # scaled exactly as the hub scales a call's frames before analysis
            yield ClipFrame(t=t, rgb=np.ascontiguousarray(to_rgb(frame)))
