"""Pure rate limits: plain data in, decisions out, the time always passed in.

* :class:`SlidingWindow` — at most ``limit`` hits per key in any ``window_s``.
* :class:`ProgressiveDelay` — after ``free`` failures, each further attempt waits
  ``base_s * 2**(failures - free)`` (capped) after the last failure. Never a lock: once
  the delay has passed there is always a fresh attempt. Attempts in progress count as
  failures until they are settled, so concurrent attempts cannot race past the limit.

Both keep bounded memory: old keys are dropped when a key count passes ``max_keys``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class SlidingWindow:
    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may be hit again; 0 if it may now."""
        hits = self._prune(key, now)
        if hits is None or len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window_s - now)

    def hit(self, key: str, now: float) -> float:
        """Count a hit if allowed; return 0 (allowed) or the seconds to wait (refused)."""
        wait = self.retry_after(key, now)
        if wait > 0:
            return wait
        if key not in self._hits and len(self._hits) >= self.max_keys:
            self._evict(now)
        self._hits.setdefault(key, deque()).append(now)
        return 0.0

    def _prune(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and now - hits[0] >= self.window_s:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def _evict(self, now: float) -> None:
        for key in list(self._hits):
            self._prune(key, now)
        if len(self._hits) >= self.max_keys:  # still full: forget the oldest half
            for key in list(self._hits)[: len(self._hits) // 2]:
                del self._hits[key]


@dataclass
class _Record:
    failures: int = 0
    pending: int = 0
    last_failure: float = 0.0


class ProgressiveDelay:
    """Failures per key with exponentially growing waits; forgotten after ``forget_s``
    without a failure."""

    def __init__(self, free: int, base_s: float, cap_s: float, forget_s: float = 3600.0,
                 max_keys: int = 100_000) -> None:
        self.free = free
        self.base_s = base_s
        self.cap_s = cap_s
        self.forget_s = forget_s
        self.max_keys = max_keys
        self._records: dict[str, _Record] = {}

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failures (0 for the first ``free`` ones)."""
        if failures < self.free:
            return 0.0
        return float(min(self.cap_s, self.base_s * 2 ** min(failures - self.free, 30)))

    def retry_after(self, key: str, now: float) -> float:
        rec = self._get(key, now)
        if rec is None:
            return 0.0
        if rec.failures + rec.pending < self.free:
            return 0.0
        if rec.pending:
            # attempts in progress count as failures until they are settled
            return max(self.base_s, self.delay(rec.failures + rec.pending))
        return max(0.0, rec.last_failure + self.delay(rec.failures) - now)

    def begin(self, key: str, now: float) -> None:
        """An attempt starts (call after :meth:`retry_after` said 0)."""
        rec = self._get(key, now)
        if rec is None:
            if len(self._records) >= self.max_keys:
                self._evict(now)
            rec = self._records[key] = _Record()
        rec.pending += 1

    def failed(self, key: str, now: float) -> None:
        rec = self._records.setdefault(key, _Record())
        rec.pending = max(0, rec.pending - 1)
        rec.failures += 1
        rec.last_failure = now

    def settled(self, key: str, reset: bool = True) -> None:
        """An attempt succeeded (``reset``: forget the failures) or was not judged."""
        rec = self._records.get(key)
        if rec is None:
            return
        rec.pending = max(0, rec.pending - 1)
        if reset:
            rec.failures = 0
        if rec.failures == 0 and rec.pending == 0:
            del self._records[key]

    def failures(self, key: str) -> int:
        rec = self._records.get(key)
        return rec.failures if rec is not None else 0

    def _get(self, key: str, now: float) -> _Record | None:
        rec = self._records.get(key)
        if rec is not None and not rec.pending and now - rec.last_failure >= self.forget_s:
            del self._records[key]
            return None
        return rec

    def _evict(self, now: float) -> None:
        for key in list(self._records):
            self._get(key, now)
        if len(self._records) >= self.max_keys:
            for key in list(self._records)[: len(self._records) // 2]:
                if not self._records[key].pending:
                    del self._records[key]
