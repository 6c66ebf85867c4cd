"""The supervisor wallboard: the centre at a glance, pushed to team leads (``/supervisor``).

Two sources, like the metrics:

* **the call timeline as it is written** (a journal listener, :meth:`Wallboard.on_event`):
  arrivals, answers (with their wait, and whether within the service's target answer time),
  abandons and the latest risk level of each call, kept for the last hour and, in 15-minute
  buckets, for the current day (UTC);
* **the queue's state** at the time of the board: waiting calls and the longest wait per
  service, agents with their state and time in it, calls in progress.

Per service the board gives the service level over the last 15 and 60 minutes (answered
within the target ÷ calls that were answered or abandoned in the window; abandons within
the first 5 s are not counted, as is usual in contact centres), and the staffing: agents
needed now for the target service level by Erlang C (arrival rate of the last hour, the
mean handle time) beside agents staffed (signed in and not away, with the skill).

Bounded: at most :data:`MAX_EVENTS` events per service in the hour window and
:data:`MAX_TRACKED` calls tracked between request and end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cloudcounter.queue import erlang
from cloudcounter.queue.model import AgentState, CallState

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

log = logging.getLogger(__name__)
HOUR_S = 3600.0
BUCKET_S = 900.0
MAX_EVENTS = 50_000
MAX_TRACKED = 100_000
SHORT_ABANDON_S = 5.0
ANSWERED, ABANDONED, ARRIVED = "answered", "abandoned", "arrived"


@dataclass
class Bucket:
    """One 15-minute slice of the day for one service."""

    arrived: int = 0
    answered: int = 0
    within: int = 0
    abandoned: int = 0
    wait_total_s: float = 0.0

    def to_dict(self, start: float) -> dict[str, Any]:
        offered = self.answered + self.abandoned
        return {"start": iso(start), "arrived": self.arrived, "answered": self.answered,
                "abandoned": self.abandoned,
                "service_level": round(self.within / offered, 3) if offered else None,
                "average_wait_s": round(self.wait_total_s / self.answered, 1)
                if self.answered else None}


@dataclass
class ServiceStats:
    events: deque[tuple[float, str, float, bool]] = field(
        default_factory=lambda: deque(maxlen=MAX_EVENTS))  # (at, what, wait, within target)
    day: dict[float, Bucket] = field(default_factory=dict)  # bucket start -> bucket


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def day_start(ts: float) -> float:
    return ts - ts % 86400.0


def service_level(events: Any, since: float) -> tuple[float | None, int, int]:
    """(service level, answered, abandoned) over the events at or after ``since``."""
    answered = within = abandoned = 0
    for at, what, wait, ok in events:
        if at < since:
            continue
        if what == ANSWERED:
            answered += 1
            within += ok
        elif what == ABANDONED and wait >= SHORT_ABANDON_S:
            abandoned += 1
    offered = answered + abandoned
    return (round(within / offered, 3) if offered else None), answered, abandoned


class Wallboard:
    def __init__(self, ctx: "HubContext", clock: Any = time.time) -> None:
        self.ctx = ctx
        self.clock = clock
        self.stats: dict[str, ServiceStats] = {}
        self._requested: dict[str, tuple[str, float]] = {}  # call -> (service, requested at)
        self._risk: dict[str, str] = {}  # call -> latest risk level
        self._task: asyncio.Task[None] | None = None
        self._day = day_start(clock())
        self.pushes = 0

    # -- the timeline ------------------------------------------------------------------
    def on_event(self, call_id: str, actor: str, kind: str, payload: dict[str, Any],
                 at: float) -> None:
        if kind == "call.requested":
            if len(self._requested) >= MAX_TRACKED:  # calls that never ended here
                self._requested.clear()
                self._risk.clear()
            service = str(payload.get("service", "unknown"))[:64]
            self._requested[call_id] = (service, at)
            self._record(service, at, ARRIVED, 0.0, False)
        elif kind == "call.answered":
            known = self._requested.get(call_id)
            if known is None or known[1] < 0:  # unknown, or a re-queued call answered again
                return
            service, requested = known
            wait = max(0.0, at - requested)
            target = self.ctx.services.get(service)
            within = target is not None and wait <= target.target_answer_s
            self._requested[call_id] = (service, -1.0)
            self._record(service, at, ANSWERED, wait, within)
        elif kind == "risk.assessed":
            if call_id in self._requested:
                self._risk[call_id] = str(payload.get("level", ""))[:16]
        elif kind == "call.ended":
            known = self._requested.pop(call_id, None)
            self._risk.pop(call_id, None)
            if known is not None and known[1] >= 0 and payload.get("reason") == "abandoned":
                self._record(known[0], at, ABANDONED, max(0.0, at - known[1]), False)

    def _record(self, service: str, at: float, what: str, wait: float, within: bool) -> None:
        stats = self.stats.setdefault(service, ServiceStats())
        stats.events.append((at, what, wait, within))
        today = day_start(at)
        if today != self._day:  # a new day: yesterday's charts go
            self._day = today
            for s in self.stats.values():
                s.day.clear()
        bucket = stats.day.setdefault(at - at % BUCKET_S, Bucket())
        if what == ARRIVED:
            bucket.arrived += 1
        elif what == ANSWERED:
            bucket.answered += 1
            bucket.within += within
            bucket.wait_total_s += wait
        elif wait >= SHORT_ABANDON_S:
            bucket.abandoned += 1

    # -- the board ---------------------------------------------------------------------
    async def board(self) -> dict[str, Any]:
        now = self.clock()
        d = self.ctx.dispatcher
        mono = d.clock()
        agents = await d.store.agents()
        calls = await d.store.calls()
        target_level = self.ctx.settings.service_level_target
        services = []
        for code in sorted(set(self.ctx.services) | set(self.stats)):
            svc = self.ctx.services.get(code)
            stats = self.stats.get(code, ServiceStats())
            while stats.events and stats.events[0][0] < now - HOUR_S:
                stats.events.popleft()
            sl15, ans15, ab15 = service_level(stats.events, now - BUCKET_S)
            sl60, ans60, ab60 = service_level(stats.events, now - HOUR_S)
            arrived60 = sum(1 for e in stats.events if e[1] == ARRIVED)
            waiting = [c for c in calls if c.service == code and c.state is CallState.QUEUED]
            skill = svc.required_skill if svc else code
            handle = await d.store.handle_times(skill)
            aht = statistics.fmean(handle) if handle else d.config.default_handle_s
            target_s = svc.target_answer_s if svc else 60
            staffed = sum(1 for a in agents if skill in a.skills
                          and a.state not in (AgentState.OFFLINE, AgentState.AWAY))
            needed = erlang.agents_needed(arrived60 / HOUR_S, aht, target_s, target_level)
            services.append({
                "service": code, "name": svc.name if svc else code,
                "target_answer_s": target_s, "waiting": len(waiting),
                "longest_wait_s": round(max((mono - c.enqueued_at for c in waiting),
                                            default=0.0), 1),
                "service_level_15m": sl15, "service_level_60m": sl60,
                "answered_15m": ans15, "answered_60m": ans60,
                "abandoned_15m": ab15, "abandoned_60m": ab60, "arrived_60m": arrived60,
                "handle_time_s": round(aht, 1), "agents_staffed": staffed,
                "agents_needed": needed,
                "day": [b.to_dict(start) for start, b in sorted(stats.day.items())]})
        in_progress = [{
            "call_id": c.call_id, "service": c.service, "state": c.state.value,
            "agent": next((a.username for a in agents if a.agent_id == c.agent_id), None),
            "duration_s": round(mono - c.answered_at, 1) if c.answered_at else 0.0,
            "risk_level": self._risk.get(c.call_id) or c.customer_risk,
        } for c in calls if c.state in (CallState.OFFERED, CallState.IN_CALL)]
        # calls whose agent dropped, waiting again: a lead may take them over (1.5)
        dropped = [{
            "call_id": c.call_id, "service": c.service, "state": c.state.value,
            "dropped_by": c.dropped_by,
            "since_s": round(mono - c.dropped_at, 1) if c.dropped_at is not None else 0.0,
            "customer_online": c.customer_online and not c.held,
            "risk_level": self._risk.get(c.call_id) or c.customer_risk,
        } for c in calls if c.dropped_by is not None
            and c.state in (CallState.QUEUED, CallState.OFFERED)]
        return {
            "at": iso(now), "service_level_target": target_level,
            "dropped": sorted(dropped, key=lambda c: -c["since_s"]),
            "services": services,
            "agents": sorted(({"username": a.username, "display_name": a.display_name,
                               "state": a.state.value, "skills": sorted(a.skills),
                               "in_state_s": round(mono - a.state_since, 1),
                               "call_id": a.call_id, "lead": a.lead}
                              for a in agents if a.state is not AgentState.OFFLINE),
                             key=lambda a: a["username"]),
            "calls": sorted(in_progress, key=lambda c: -c["duration_s"])}

    # -- pushing -----------------------------------------------------------------------
    def start(self, push: Any, interval_s: float) -> None:
        """Call ``push()`` every ``interval_s``: it sends the board to whoever watches and
        returns False when nobody does (then nothing is computed)."""
        self._task = asyncio.create_task(self._run(push, interval_s), name="wallboard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, push: Any, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if await push(None):
                    self.pushes += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the board must not stop on a bad moment
                log.exception("wallboard push failed")
