"""VP8 bitstream facts the hub needs without decoding (RFC 6386 section 9.1)."""

from __future__ import annotations


def is_keyframe(data: bytes) -> bool:
    """True if ``data`` (a depayloaded VP8 frame) is a key frame: the P bit is 0."""
    return len(data) >= 3 and not (data[0] & 0x01)


def dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a key frame's header, or None for any other frame."""
    if not is_keyframe(data) or len(data) < 10 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height
