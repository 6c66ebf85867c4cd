"""Which worker takes a new call: pure, tested synchronously.

Both legs of a call meet on one worker because the hub places the *call* (its first
``answer`` opens the media there; the second leg finds it). A new call goes to the live,
non-draining worker with the most spare capacity, spare being the smaller of its spare
call slots and its spare CPU (a share of one core); ties go to the fewer calls, then the id.
A worker without a live lease, draining, or full takes none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class WorkerView:
    worker_id: str
    alive: bool  # its lease is live (it reported its load recently) and its channel is open
    draining: bool
    calls: int
    capacity: int
    cpu: float  # share of one core, 0..1 (or more on a busy machine)


def spare(w: WorkerView) -> float:
    if w.capacity <= 0:
        return 0.0
    return min(1.0 - w.calls / w.capacity, 1.0 - w.cpu)


def eligible(w: WorkerView) -> bool:
    return w.alive and not w.draining and w.calls < w.capacity


def choose(workers: Sequence[WorkerView]) -> str | None:
    """The worker for a new call, or ``None`` when no worker may take one."""
    candidates = [w for w in workers if eligible(w)]
    if not candidates:
        return None
    best = max(candidates, key=lambda w: (round(spare(w), 3), -w.calls, _neg(w.worker_id)))
    return best.worker_id


def _neg(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)
