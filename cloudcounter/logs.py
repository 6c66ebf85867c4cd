"""Logging of what clients get wrong: once, briefly, rate-limited.

A hostile client can send thousands of bad messages a second; each refusal must not cost
a traceback in the log. :class:`RefusalLog` writes one short line per refusal up to
``burst`` lines per ``window_s``, then counts silently and writes one summary line
("... N more refusals not logged") when the window turns.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable


class RefusalLog:
    def __init__(self, logger: logging.Logger, burst: int = 20, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._window_start = -1e18
        self._logged = 0
        self._suppressed = 0
        self.total = 0

    def _allow(self) -> bool:
        now = self.clock()
        if now - self._window_start >= self.window_s:
            if self._suppressed:
                self.logger.warning("%d more refusals not logged in the last %.0f s",
                                    self._suppressed, self.window_s)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        self.total += 1
        if self._logged < self.burst:
            self._logged += 1
            return True
        self._suppressed += 1
        return False

    def refused(self, what: str, who: str, code: str, level: int = logging.INFO) -> None:
        """One line: what was refused, from whom, with which code (never the input)."""
        if self._allow():
            self.logger.log(level, "refused %s from %s: %s", _short(what), _short(who), code)

    def failed(self, what: str, who: str, exc: BaseException) -> None:
        """An unexpected error while handling a client's input: the first ones in a window
        with their traceback, then counted."""
        if self._allow():
            self.logger.error("handling %s from %s failed: %s", _short(what), _short(who),
                              type(exc).__name__, exc_info=exc)


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    text = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return text + ("…" if len(str(value)) > limit else "")
