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

import cv2
import numpy as np

from cloudcounter.vision.frames import MAX_WIDTH, Image, to_rgb

__all__ = ["MAX_WIDTH", "Image", "evidence_name", "evidence_url", "new_check_id", "to_rgb",
           "valid_name", "write_jpeg"]

CHECK_ID_RE = re.compile(r"^chk_[0-9a-f]{12}$")
#: ``<call>-<check>.jpg`` (the frame a verdict was made on) or ``<call>-<check>-pad.jpg``
#: (the frame with the strongest presentation-attack cue of a liveness check).
EVIDENCE_NAME_RE = re.compile(r"^(call_[0-9a-f]{16})-(chk_[0-9a-f]{12})(-pad)?\.jpg$")
JPEG_QUALITY = 90


def new_check_id() -> str:
    return "chk_" + secrets.token_hex(6)


def evidence_name(call_id: str, check_id: str, suffix: str = "") -> str:
    return f"{call_id}-{check_id}{suffix}.jpg"


def evidence_url(call_id: str, name: str) -> str:
    return f"/api/calls/{call_id}/evidence/{name}"


def valid_name(call_id: str, name: str) -> bool:
    """A well-formed evidence file name of this call (no path, no traversal)."""
    m = EVIDENCE_NAME_RE.fullmatch(name)
    return m is not None and m.group(1) == call_id


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
