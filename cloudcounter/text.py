"""Free text from outside (notes, reasons, script texts): bounded and free of control
characters. PostgreSQL refuses ``\\u0000`` in text, and no control character belongs in a
note or a statement; a line break and a tab are allowed where text may span lines."""

from __future__ import annotations

import re

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_text(value: str, *, multiline: bool = True) -> str:
    """``value`` unchanged, or ValueError naming the first control character."""
    m = (CONTROL if multiline else CONTROL_ONE_LINE).search(value)
    if m is not None:
        raise ValueError(f"control character U+{ord(m.group()):04X} is not allowed")
    return value
