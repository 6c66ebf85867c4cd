"""The hub resource for in-call analysis: the vision pool and one analysis per segment.

:class:`AnalysisManager` listens to :class:`~cloudcounter.hub.media_gateway.HubMedia`
(``on_segment``): for each answered segment it opens a tap on the customer's video and
owns one task running a :class:`~.call.CallAnalysis`. The agent namespace asks it for
checks (:meth:`request_identity`, :meth:`request_liveness`). The pool is started when
the first segment opens (hub start-up and tests without media stay fast) and restarted
if a worker dies. :meth:`stop` cancels and awaits every task and stops the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from sqlalchemy import select

from cloudcounter.db.models import Customer, Recording
from cloudcounter.errors import CloudCounterError, InvalidState
from cloudcounter.hub.analysis.call import AnalysisConfig, CallAnalysis, CallStats
from cloudcounter.hub.analysis.evidence import Image, write_jpeg
from cloudcounter.hub.analysis.policy import SamplingConfig
from cloudcounter.hub.analysis.worker import init_hub_worker
from cloudcounter.hub.settings import Settings
from cloudcounter.signaling.namespaces import agent_room, customer_room
from cloudcounter.vision import Action, FrameAnalysis, VisionPool

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext
    from cloudcounter.hub.media_gateway import Segment

log = logging.getLogger(__name__)
KEEP_STATS = 200


def vision_unavailable(message: str = "face analysis is not available") -> CloudCounterError:
    return CloudCounterError(message, code="vision_unavailable")


def analysis_config(s: Settings) -> AnalysisConfig:
    return AnalysisConfig(
        sampling=SamplingConfig(idle_fps=s.vision_idle_fps, challenge_fps=s.vision_challenge_fps,
                                descriptor_interval_s=s.vision_drift_interval_s),
        match_threshold=s.vision_match_threshold, drift_threshold=s.vision_drift_threshold,
        window_s=s.vision_liveness_window_s, onset_window_s=s.vision_liveness_onset_s,
        auto_liveness_count=s.vision_liveness_challenges,
        alert_hold_s=s.vision_alert_hold_s)


class HubOutlet:
    """A call's findings to its agent's and customer's rooms, its timeline, its directory."""

    def __init__(self, ctx: "HubContext", call_id: str, agent_id: int | None,
                 customer_id: str, directory: Path) -> None:
        self.ctx, self.call_id, self.agent_id = ctx, call_id, agent_id
        self.customer_id, self.directory = customer_id, directory

    def journal(self, actor: str, kind: str, payload: dict[str, Any]) -> None:
        self.ctx.journal.event(self.call_id, actor, kind, payload)
        # check results complete script steps and feed the risk engine
        self.ctx.flows.analysis_event(self.call_id, kind, payload)

    async def to_agent(self, event: str, data: dict[str, Any]) -> None:
        if self.agent_id is not None:
            await self.ctx.sio.emit(event, data, to=agent_room(self.agent_id), namespace="/agent")

    async def to_customer(self, event: str, data: dict[str, Any]) -> None:
        await self.ctx.sio.emit(event, data, to=customer_room(self.customer_id),
                                namespace="/customer")

    async def save_evidence(self, name: str, rgb: Image) -> bool:
        key = self.ctx.settings.at_rest_key_bytes

        def write() -> tuple[str, int]:
            from cloudcounter.recordings.crypto import sha256_and_size
            write_jpeg(self.directory / name, rgb, key)
            return sha256_and_size(self.directory / name, key)
        try:
            sha256, size = await asyncio.to_thread(write)
        except OSError as exc:
            log.warning("call %s: evidence %s not saved: %s", self.call_id, name, exc)
            self.journal("system", "evidence.failed", {"file": name, "error": str(exc)})
            return False
        # the file's hash on the hash-chained timeline (cloudcounter.audit.chain)
        self.ctx.journal.event(self.call_id, "system", "evidence.hashed",
                               {"file": name, "sha256": sha256, "size_bytes": size})
        return True


class AnalysisManager:
    def __init__(self, ctx: "HubContext", pool_size: int | None = None) -> None:
        self.ctx = ctx
        self.config = analysis_config(ctx.settings)
        self.pool_size = pool_size or max(1, ctx.settings.vision_workers)
        self.pool: VisionPool | None = None
        #: Test seam: the challenge picker's RNG (None: ``random.SystemRandom``).
        self.rng: random.Random | None = None
        self.calls: dict[str, CallAnalysis] = {}
        self.stats: OrderedDict[str, CallStats] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._ready: VisionPool | None = None  # the pool whose workers loaded their models
        # metrics: frames dropped (the pool busy) by finished calls; (seconds) per analysis
        self.dropped_finished = 0
        self.on_analysed: Callable[[float], None] | None = None

    def dropped_total(self) -> int:
        """Frames not analysed because the pool was busy, since the hub started."""
        return self.dropped_finished + sum(c.sampler.stats.dropped_busy
                                           for c in list(self.calls.values()))

    # -- PoolLike for the calls: lazy start, restart after a worker died --------------------
    @property
    def size(self) -> int:
        return self.pool_size

    @property
    def busy(self) -> int:
        return self.pool.busy if self.pool is not None else 0

    @property
    def state(self) -> str:
        """``cold`` (no pool yet), ``warming`` (workers loading their models) or ``ready``."""
        if self.pool is None:
            return "cold"
        return "ready" if self._ready is self.pool else "warming"

    def ensure_pool(self) -> VisionPool:
        if self._stopping:
            raise vision_unavailable("the hub is stopping")
        if self.pool is None:
            self.pool = VisionPool(self.pool_size, initializer=init_hub_worker)
            self.pool.start()
            self._spawn(self._warm_up(self.pool), "vision-warm-up")
        return self.pool

    async def _warm_up(self, pool: VisionPool) -> None:
        try:
            await pool.warm_up()
            self._ready = pool
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("vision pool failed to start: %r", exc)

    async def analyse(self, frame: Image, want_descriptor: bool = False, *,
                      stream: str | None = None, want_cues: bool = False) -> FrameAnalysis:
        pool = self.ensure_pool()
        started = time.monotonic()
        try:
            result = await pool.analyse(frame, want_descriptor, stream=stream,
                                        want_cues=want_cues)
            if self.on_analysed is not None:
                self.on_analysed(time.monotonic() - started)
            return result
        except BrokenProcessPool:
            if self.pool is pool:
                log.error("a vision worker died; restarting the pool")
                self.pool = None
                self._spawn(pool.stop(), "vision-pool-stop")
            raise

    # -- segments ------------------------------------------------------------------------
    def on_segment(self, segment: "Segment") -> None:
        if self._stopping:
            return
        try:
            self.ensure_pool()
            tap = segment.media.add_tap(maxsize=1, max_fps=None)
        except Exception as exc:
            log.error("call %s: no analysis: %r", segment.call_id, exc)
            return
        self._spawn(self._run_segment(segment, tap), f"analysis-{segment.call_id}")

    async def _run_segment(self, segment: "Segment", tap: Any) -> None:
        call_id = segment.call_id
        try:
            call = await self.ctx.dispatcher.store.get_call(call_id)
            if call is None:
                return
            service = self.ctx.services.get(call.service)
            reference, directory = await self._load(call.customer_id, segment)
            outlet = HubOutlet(self.ctx, call_id, call.agent_id, call.customer_id, directory)
            analysis = CallAnalysis(
                call_id, tap, self, outlet, self.config, reference=reference,
                auto_checks=tuple(service.auto_checks) if service else (), rng=self.rng)
        except BaseException:
            tap.close()
            raise
        self.calls[call_id] = analysis
        started = asyncio.get_running_loop().time()
        try:
            await analysis.run()
        finally:
            if self.calls.get(call_id) is analysis:
                del self.calls[call_id]
            self.dropped_finished += analysis.sampler.stats.dropped_busy
            self._keep_stats(call_id, analysis.stats)
            seconds = asyncio.get_running_loop().time() - started
            log.info("call %s: %d frames taken (%d overwritten in the tap), %d analysed "
                     "(%.1f/s), %d dropped while the pool was busy", call_id,
                     analysis.stats.frames, tap.dropped, analysis.stats.analysed,
                     analysis.stats.analysed / seconds if seconds > 0 else 0.0,
                     analysis.sampler.stats.dropped_busy)

    async def _load(self, customer_id: str, segment: "Segment") -> tuple[np.ndarray | None, Path]:
        from cloudcounter.hub.customers import descriptor_from_bytes

        async with self.ctx.sm() as s:
            data = await s.scalar(select(Customer.face_descriptor)
                                  .where(Customer.id == customer_id))
            rec_id = segment.recording_ids.get("customer")
            path = await s.scalar(select(Recording.path).where(Recording.id == rec_id)) \
                if rec_id is not None else None
        reference = descriptor_from_bytes(data) if data else None
        if path:
            directory = Path(path).parent
        else:  # the same dated directory the media gateway records into
            day = datetime.fromtimestamp(segment.origin_wall, timezone.utc).strftime("%Y/%m/%d")
            directory = Path(self.ctx.settings.recordings_dir) / day
        return reference, directory

    def _keep_stats(self, call_id: str, stats: CallStats) -> None:
        self.stats[call_id] = stats
        while len(self.stats) > KEEP_STATS:
            self.stats.popitem(last=False)

    # -- requests from the agent namespace ----------------------------------------------
    def _call(self, call_id: str) -> CallAnalysis:
        if self._stopping:
            raise vision_unavailable("the hub is stopping")
        analysis = self.calls.get(call_id)
        if analysis is None:
            raise InvalidState("no video from the customer yet", code="no_video")
        return analysis

    async def request_identity(self, call_id: str, customer_id: str, actor: str
                               ) -> dict[str, Any]:
        if call_id not in self.calls and not self._stopping:
            async with self.ctx.sm() as s:  # say why before saying "not yet"
                data = await s.scalar(select(Customer.face_descriptor)
                                      .where(Customer.id == customer_id))
            if not data:
                raise CloudCounterError("the customer has no reference photo",
                                        code="no_reference_photo")
        return {"check_id": self._call(call_id).start_identity(actor)}

    def request_liveness(self, call_id: str, actor: str, count: int) -> dict[str, Any]:
        check_id, challenges = self._call(call_id).start_liveness(actor, count)
        return {"check_id": check_id, "challenges": [Action(c).value for c in challenges]}

    # -- lifecycle -----------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool, self.pool = self.pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.stop()
