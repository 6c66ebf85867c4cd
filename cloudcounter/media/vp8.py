"""VP8 bitstream facts the hub needs without decoding (RFC 6386 sections 9.1 and 19.1)."""

from __future__ import annotations

START_CODE = b"\x9d\x01\x2a"


def is_keyframe(data: bytes) -> bool:
    """True if ``data`` (a depayloaded VP8 frame) is a key frame: the P bit is 0 and the
    key frame start code follows the frame tag (a fragment of a frame, whose first byte
    is arbitrary, is not taken for a key frame)."""
    return len(data) >= 10 and not (data[0] & 0x01) and data[3:6] == START_CODE


def is_plausible(data: bytes, size: int | None = None) -> bool:
    """Whether ``data`` can be a whole VP8 frame: the 3-byte frame tag has a known
    version and a first partition that fits in the frame (``size`` bytes, default
    ``len(data)``), and a key frame has its start code. Only the first 10 bytes are read.

    A receiver whose jitter buffer gave up on a lost packet can hand over the tail of
    a frame as if it were one (aiortc does, after an overflow): its first bytes are
    then payload, which this check refuses with high probability (a random tag passes
    it about once in 300 for a 1,500-byte frame, a random key frame tag almost never).
    """
    size = len(data) if size is None else size
    if size < 3 or len(data) < 3:
        return False
    tag = data[0] | data[1] << 8 | data[2] << 16
    version = (tag >> 1) & 0x07
    first_partition = (tag >> 5) & 0x7FFFF
    if version > 3 or first_partition == 0:
        return False
    if not tag & 0x01:  # key frame
        return len(data) >= 10 and data[3:6] == START_CODE and first_partition <= size - 10
    return first_partition <= size - 3


def dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a key frame's header, or None for any other frame."""
    if not is_keyframe(data):
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height
