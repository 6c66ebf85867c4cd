"""Evidence frames: the frame a check used, saved as JPEG beside the call's recordings.

Names are ``<call_id>-<check_id>.jpg``; :func:`valid_name` is the only way a name from
a URL reaches the file system. Conversion and encoding are blocking: call them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

CHECK_ID_RE = re.compile(r"^chk_[0-9a-f]{12}$")
EVIDENCE_NAME_RE = re.compile(r"^(call_[0-9a-f]{16})-(chk_[0-9a-f]{12})\.jpg$")
#: Frames wider than this are scaled down before analysis (detection runs at 320 px
#: anyway; landmarks and the descriptor do not gain from more).
MAX_WIDTH = 640
JPEG_QUALITY = 90


def new_check_id() -> str:
    return "chk_" + secrets.token_hex(6)


def evidence_name(call_id: str, check_id: str) -> str:
    return f"{call_id}-{check_id}.jpg"


def evidence_url(call_id: str, name: str) -> str:
    return f"/api/calls/{call_id}/evidence/{name}"


def valid_name(call_id: str, name: str) -> bool:
    """A well-formed evidence file name of this call (no path, no traversal)."""
    m = EVIDENCE_NAME_RE.fullmatch(name)
    return m is not None and m.group(1) == call_id


def to_rgb(frame: av.VideoFrame, max_width: int = MAX_WIDTH) -> Image:
    """RGB array of a decoded frame, at most ``max_width`` wide (blocking: use a thread)."""
    if frame.width > max_width:
        height = max(2, round(frame.height * max_width / frame.width / 2) * 2)
        frame = frame.reformat(width=max_width, height=height, format="rgb24")
        return np.asarray(frame.to_ndarray(), dtype=np.uint8)
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def write_jpeg(path: Path, rgb: Image, key: bytes | None = None) -> int:
    """Encode and write atomically (a reader never sees half a file); returns the size.
    With ``key`` the file is sealed (evidence at rest, :mod:`cloudcounter.recordings.crypto`)."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError("JPEG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    if key is not None:
        from cloudcounter.recordings.crypto import write_encrypted

        write_encrypted(path, data.tobytes(), key)
        return int(data.size)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
    return int(data.size)
