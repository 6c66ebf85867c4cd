"""Decoded video frames as the analysis sees them: RGB, at most ``MAX_WIDTH`` wide.

The hub converts every frame it analyses with :func:`to_rgb` (PyAV's scaler, in a
thread); the evaluation reads clips through the same function, so that its figures are
measured on frames scaled exactly as in a call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

#: Frames wider than this are scaled down before analysis (landmarks and the
#: descriptor do not gain from more; the small-face pass works on this size).
MAX_WIDTH = 640


def to_rgb(frame: Any, max_width: int = MAX_WIDTH) -> Image:
    """RGB array of a decoded ``av.VideoFrame``, at most ``max_width`` wide (blocking)."""
    if frame.width > max_width:
        height = max(2, round(frame.height * max_width / frame.width / 2) * 2)
        frame = frame.reformat(width=max_width, height=height, format="rgb24")
        return np.asarray(frame.to_ndarray(), dtype=np.uint8)
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
