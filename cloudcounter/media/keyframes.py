"""When to ask an upstream sender for a key frame: pure decisions, time passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KeyframeThrottle:
    """Let through at most one key frame request per ``interval_s``.

    Requests come from several places (a downstream PLI/FIR, a downstream that
    starts, a tap that starts, a downstream still waiting for its first key
    frame): one PLI per interval is enough for the upstream encoder, and a
    request that was lost (UDP) is repeated after the interval.
    """

    interval_s: float = 0.5
    _last: float | None = None
    sent: int = 0
    suppressed: int = 0

    def allow(self, now: float) -> bool:
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        self.sent += 1
        return True


@dataclass
class KeyframeGate:
    """A downstream that must start (or restart) on a key frame.

    ``admit`` says whether a video packet may be passed on; while waiting, a
    delta frame is dropped and the caller should ask upstream for a key frame.
    """

    waiting: bool = True
    dropped: int = 0

    def admit(self, keyframe: bool) -> bool:
        if self.waiting:
            if not keyframe:
                self.dropped += 1
                return False
            self.waiting = False
        return True

    def reset(self) -> None:
        """After a gap (queue overflow), wait for the next key frame again."""
        self.waiting = True
