"""Free text from outside (notes, reasons, script texts, every protocol string): bounded and
free of control characters. PostgreSQL refuses ``\\u0000`` in text, a lone surrogate cannot
be encoded, and no control character belongs in a note or a statement. Where text may span
lines, a line break (LF, CR) and a tab are allowed.

Refused: C0 and C1 controls, DEL, the Unicode line and paragraph separators and lone
surrogates. This is the lowest layer's rule: the signalling schemas
(:class:`cloudcounter.signaling.schemas.Message`) and the business data (scripts, rules,
subjects) use it.
"""

from __future__ import annotations

import re
from typing import Any

CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def check_text(value: str, *, multiline: bool = True) -> str:
    """``value`` unchanged, or ValueError naming the first control character."""
    m = (CONTROL_MULTILINE if multiline else CONTROL_ONE_LINE).search(value)
    if m is not None:
        raise ValueError(f"control character U+{ord(m.group()):04X} is not allowed")
    return value


def has_control_characters(value: Any, multiline: bool = False, depth: int = 0) -> bool:
    """Whether a string, or any string in a list, tuple or dict (keys too, always one
    line), holds a character refused by :func:`check_text`."""
    if isinstance(value, str):
        return (CONTROL_MULTILINE if multiline else CONTROL_ONE_LINE).search(value) is not None
    if depth > 32:
        return False
    if isinstance(value, (list, tuple)):
        return any(has_control_characters(v, multiline, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(has_control_characters(k, False, depth + 1)
                   or has_control_characters(v, multiline, depth + 1)
                   for k, v in value.items())
    return False
