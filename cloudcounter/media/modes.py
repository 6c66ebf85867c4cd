"""How the hub forwards media between a call's legs (``CLOUDCOUNTER_MEDIA_FORWARDING``):

* ``frame`` (the default): aiortc re-assembles each incoming frame and the hub forwards
  frames (``cloudcounter.media.call``);
* ``packet``: RTP packets forwarded with rewritten headers (``cloudcounter.media.packets``).

Read where a call's media is created (the hub process or a media worker: each reads its own
environment) and checked at start-up by the hub's settings."""

from __future__ import annotations

import os
from typing import Mapping

MEDIA_FORWARDING_MODES = ("frame", "packet")
MEDIA_FORWARDING_DEFAULT = "frame"
VARIABLE = "CLOUDCOUNTER_MEDIA_FORWARDING"


def media_forwarding(env: Mapping[str, str] | None = None) -> str:
    """The mode in ``env`` (the process's environment by default); ValueError otherwise."""
    value = (os.environ if env is None else env).get(VARIABLE, "")
    value = value.strip().lower() or MEDIA_FORWARDING_DEFAULT
    if value not in MEDIA_FORWARDING_MODES:
        raise ValueError(f"{VARIABLE} must be packet or frame, not {value!r}")
    return value
