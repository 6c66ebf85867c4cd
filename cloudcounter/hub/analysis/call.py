"""One answered segment's analysis: frames from the media tap, findings to the agent.

:class:`CallAnalysis` runs one task (:meth:`CallAnalysis.run`) that takes the newest
decoded frame of the customer's video, decides with the :class:`~.policy.Sampler`
whether to analyse it, converts it off the loop and awaits the vision pool. Every
analysed frame feeds, in this order: the running liveness check (or else the call's
:class:`~cloudcounter.vision.ActionDetector`, so that its baseline is the resting
face), the pending identity check, the drift measure and the alert debouncer. The task
ends when the tap closes (the segment's media closed) or is cancelled.

The hub side (sockets, journal, files) is behind :class:`Outlet`, the pool behind
:class:`PoolLike`: tests drive this class with fakes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np

from cloudcounter.errors import CloudCounterError, InvalidState
from cloudcounter.hub.analysis.evidence import Image, evidence_name, evidence_url, new_check_id
from cloudcounter.hub.analysis.policy import (
    PROMPTS, AlertDebouncer, DescriptorSchedule, Sampler, SamplingConfig, frame_signal,
    liveness_details, liveness_verdict,
)
from cloudcounter.hub.analysis.verdicts import IdentityGate, PadEvidence
from cloudcounter.media.tap import TapClosed
from cloudcounter.vision import (
    Action, ActionDetector, FrameAnalysis, LivenessSession, LivenessStatus, Verdict,
    pick_challenges,
)
from cloudcounter.vision.liveness import pick_pauses
from cloudcounter.vision.identity import descriptor_distance

log = logging.getLogger(__name__)
IDENTITY_HARD_CAP_S = 15.0
#: A liveness check that got no analysed frame this long fails (reason ``no_video``).
START_CAP_S = 15.0


class PoolLike(Protocol):
    @property
    def size(self) -> int: ...
    @property
    def busy(self) -> int: ...
    async def analyse(self, frame: Image, want_descriptor: bool = False, *,
                      stream: str | None = None, want_cues: bool = False
                      ) -> FrameAnalysis: ...


class FrameSource(Protocol):
    async def recv(self) -> Any: ...
    def close(self) -> None: ...


class Outlet(Protocol):
    """Where findings go: the agent, the customer, the timeline, the evidence files."""

    def journal(self, actor: str, kind: str, payload: dict[str, Any]) -> None: ...
    async def to_agent(self, event: str, data: dict[str, Any]) -> None: ...
    async def to_customer(self, event: str, data: dict[str, Any]) -> None: ...
    async def save_evidence(self, name: str, rgb: Image) -> bool: ...


@dataclass(frozen=True)
class AnalysisConfig:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    match_threshold: float = 0.6
    drift_threshold: float = 0.6
    window_s: float = 5.0
    #: An action must begin this soon after its prompt (docs/vision.md, "Liveness").
    onset_window_s: float = 1.8
    warmup_s: float = 1.0
    auto_liveness_count: int = 3
    identity_timeout_s: float = 3.0
    alert_hold_s: float = 1.5
    tick_s: float = 0.25


@dataclass
class _Identity:
    check_id: str
    actor: str
    deadline: float
    gate: IdentityGate
    analysed: int = 0
    last_count: int | None = None
    last_rgb: Image | None = None


@dataclass
class _Liveness:
    check_id: str
    actor: str
    challenges: tuple[Action, ...]
    requested_at: float
    #: Starts with the first frame analysed after the request, so that a pool still
    #: loading its models (or a hub under load) does not eat the customer's windows.
    session: LivenessSession | None = None
    announced: int = -1
    last_rgb: Image | None = None
    pad_evidence: PadEvidence = field(default_factory=PadEvidence)


@dataclass
class CallStats:
    frames: int = 0
    analysed: int = 0
    analysis_ms: list[float] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


class CallAnalysis:
    def __init__(
        self,
        call_id: str,
        source: FrameSource,
        pool: PoolLike,
        outlet: Outlet,
        config: AnalysisConfig,
        *,
        reference: np.ndarray | None = None,
        auto_checks: tuple[str, ...] = (),
        rng: random.Random | None = None,
        convert: Callable[[Any], Awaitable[Image]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call_id = call_id
        self.source = source
        self.pool = pool
        self.outlet = outlet
        self.config = config
        self.reference = reference
        self.rng = rng
        self.clock = clock
        self.convert = convert or _default_convert
        self.detector = ActionDetector()
        self.sampler = Sampler(config.sampling)
        self.descriptors = DescriptorSchedule(config.sampling)
        self.alerts = AlertDebouncer(config.alert_hold_s)
        self.identity: _Identity | None = None
        self.liveness: _Liveness | None = None
        self.anchor: np.ndarray | None = None
        self.drifted = False
        self.video_at: float | None = None
        self.stats = CallStats()
        self._auto = [c for c in auto_checks if c in ("identity", "liveness")]
        self._requested_at: dict[str, float] = {}

    # -- requests (from the agent namespace or the automatic checks) ---------------------
    def start_identity(self, actor: str) -> str:
        if self.reference is None:
            raise CloudCounterError("the customer has no reference photo",
                                    code="no_reference_photo")
        if self.identity is not None:
            raise InvalidState("an identity check is already running", code="check_running")
        if self.video_at is None:
            raise InvalidState("no video from the customer yet", code="no_video")
        now = self.clock()
        check_id = new_check_id()
        self.identity = _Identity(check_id, actor, deadline=now + self.config.identity_timeout_s,
                                  gate=IdentityGate(self.config.match_threshold))
        self._requested(check_id, "identity", actor, now, {})
        return check_id

    def start_liveness(self, actor: str, count: int) -> tuple[str, tuple[Action, ...]]:
        if self.liveness is not None:
            raise InvalidState("a liveness check is already running", code="check_running")
        if self.video_at is None:
            raise InvalidState("no video from the customer yet", code="no_video")
        now = self.clock()
        challenges = pick_challenges(count, self.rng)
        check_id = new_check_id()
        self.liveness = _Liveness(check_id, actor, challenges, requested_at=now)
        self._requested(check_id, "liveness", actor, now,
                        {"challenges": [c.value for c in challenges]})
        return check_id, challenges

    def _requested(self, check_id: str, kind: str, actor: str, now: float,
                   extra: dict[str, Any]) -> None:
        self._requested_at[check_id] = now
        self.outlet.journal(actor, "check.requested",
                            {"check_id": check_id, "kind": kind, **extra})

    @property
    def busy_checks(self) -> bool:
        return self.identity is not None or self.liveness is not None

    # -- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                frame: Any = None
                try:
                    async with asyncio.timeout(self.config.tick_s):
                        frame = await self.source.recv()
                except TimeoutError:
                    pass
                except (TapClosed, StopAsyncIteration):
                    return
                if frame is not None:
                    await self._on_frame(frame, self.clock())
                await self._tick(self.clock())
        finally:
            self.source.close()
            self._abandon()

    async def _on_frame(self, frame: Any, t: float) -> None:
        self.stats.frames += 1
        if self.video_at is None:
            self.video_at = t
        fast = self.liveness is not None
        if not self.sampler.admit(t, fast=fast, busy=self.pool.busy, capacity=self.pool.size,
                                  urgent=self.identity is not None):
            return
        want = self.identity is not None or (not fast and self.descriptors.wanted(t))
        try:
            rgb = await self.convert(frame)
            analysis = await self.pool.analyse(rgb, want, stream=self.call_id, want_cues=fast)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken worker: the manager restarts the pool
            log.warning("call %s: analysis failed: %r", self.call_id, exc)
            return
        self.stats.analysed += 1
        self.stats.analysis_ms.append(analysis.elapsed_ms)
        await self._use(t, rgb, analysis)

    async def _use(self, t: float, rgb: Image, analysis: FrameAnalysis) -> None:
        primary = analysis.primary
        count = analysis.face_count
        lv = self.liveness
        if lv is not None and t >= lv.requested_at:
            if lv.session is None:
                lv.session = LivenessSession(
                    lv.challenges, started_at=t, window_s=self.config.window_s,
                    onset_window_s=self.config.onset_window_s,
                    warmup_s=self.config.warmup_s, detector=self.detector,
                    pauses=pick_pauses(len(lv.challenges), self.rng))
            lv.last_rgb = rgb
            lv.pad_evidence.offer(primary, rgb)
            status = lv.session.update(t, count, primary.measures if primary else None,
                                       primary)
            await self._liveness_status(lv, status, self.clock())
        else:
            self.detector.update(t, primary.measures if count == 1 and primary else None)
        descriptor = primary.descriptor if primary is not None and count == 1 else None
        ident = self.identity
        if ident is not None and (descriptor is not None or count != 1):
            ident.analysed += 1
            ident.last_count, ident.last_rgb = count, rgb
            if descriptor is not None and primary is not None and self.reference is not None:
                if ident.gate.offer(self.reference, primary):
                    self.anchor, self.drifted = descriptor, False
                    self.descriptors.measured(t, False)
                    verdict, details = ident.gate.verdict()
                    await self._identity_done(ident, verdict, details, rgb)
                descriptor = None  # the identity check's, not the drift check's
        if descriptor is not None:
            if self.anchor is None:
                self.anchor = descriptor
            else:
                drift = descriptor_distance(self.anchor, descriptor)
                self.drifted = drift > self.config.drift_threshold
            self.descriptors.measured(t, self.drifted)
        if count != 1:
            self.drifted = False
            self.descriptors.soon(t)
        changed = self.alerts.update(t, frame_signal(count, self.drifted))
        if changed is not None:
            self.outlet.journal("system", "analysis.alert", {"signal": changed})
            await self.outlet.to_agent("analysis:alert", {
                "call_id": self.call_id, "signal": changed, "at": utc_now()})

    async def _tick(self, now: float) -> None:
        ident = self.identity
        # The deadline counts once a frame was analysed (the pool may still be loading
        # its models when the first check of the hub starts), with a hard cap.
        if ident is not None and ((now >= ident.deadline and ident.analysed) or
                                  now >= ident.deadline + IDENTITY_HARD_CAP_S):
            if ident.gate.usable or ident.gate.rejected:
                verdict, details = ident.gate.verdict()  # fewer frames than wished for
            else:
                verdict = "multiple_faces" if (ident.last_count or 0) > 1 else "no_face"
                details = {"distance": None, "threshold": self.config.match_threshold}
            await self._identity_done(ident, verdict, details, ident.last_rgb)
        lv = self.liveness
        if lv is not None and lv.session is not None:
            await self._liveness_status(lv, lv.session.expire(now), now)
        elif lv is not None and now - lv.requested_at > START_CAP_S:
            self.liveness = None
            await self.outlet.to_customer("liveness:done", {"call_id": self.call_id,
                                                            "verdict": "fail"})
            await self._result(lv.check_id, "liveness", "fail", {
                "challenges": [{"action": a.value, "passed": False, "seen_at_s": None}
                               for a in lv.challenges], "reason": "no_video"}, None)
        if self._auto and self.video_at is not None and not self.busy_checks:
            await self._next_auto()

    async def _next_auto(self) -> None:
        kind = self._auto.pop(0)
        try:
            if kind == "identity":
                self.start_identity("system")
            else:
                self.start_liveness("system", self.config.auto_liveness_count)
        except CloudCounterError as exc:
            self.outlet.journal("system", "check.skipped", {"kind": kind, "reason": exc.code})

    # -- results -----------------------------------------------------------------------
    async def _identity_done(self, ident: _Identity, verdict: str, details: dict[str, Any],
                             rgb: Image | None) -> None:
        self.identity = None
        await self._result(ident.check_id, "identity", verdict, details, rgb)

    async def _liveness_status(self, lv: _Liveness, status: LivenessStatus, now: float) -> None:
        if self.liveness is not lv or lv.session is None:
            return
        if status.verdict is Verdict.PENDING:
            if status.prompt is None or status.index == lv.announced:
                return
            lv.announced = status.index
            action = status.prompt
            expires = round(max(0.0, (status.deadline or now) - now), 1)
            common = {"call_id": self.call_id, "index": status.index, "total": status.total,
                      "action": action.value, "prompt": PROMPTS[action], "expires_in_s": expires}
            self.outlet.journal("system", "liveness.challenge", {
                "check_id": lv.check_id, "index": status.index, "total": status.total,
                "action": action.value})
            await self.outlet.to_customer("liveness:challenge", common)
            passed = sum(1 for r in status.results if r.seen_at is not None)
            await self.outlet.to_agent("check:progress", {
                **common, "check_id": lv.check_id, "kind": "liveness", "passed_so_far": passed})
            return
        self.liveness = None
        verdict = liveness_verdict(status)
        details = liveness_details(lv.challenges, status, lv.session.started_at)
        if status.pad is not None:
            pad_file = None
            if lv.pad_evidence.rgb is not None:
                name = evidence_name(self.call_id, lv.check_id, "-pad")
                if await self.outlet.save_evidence(name, lv.pad_evidence.rgb):
                    pad_file = name
            self.outlet.journal("system", "check.pad", {
                "check_id": lv.check_id, **status.pad.payload(), "evidence": pad_file})
            details["pad"] = {**status.pad.payload(), "evidence_url":
                              evidence_url(self.call_id, pad_file) if pad_file else None}
        await self.outlet.to_customer("liveness:done", {"call_id": self.call_id,
                                                        "verdict": verdict})
        await self._result(lv.check_id, "liveness", verdict, details, lv.last_rgb)

    async def _result(self, check_id: str, kind: str, verdict: str, details: dict[str, Any],
                      rgb: Image | None) -> None:
        name = evidence_name(self.call_id, check_id)
        saved = rgb is not None and await self.outlet.save_evidence(name, rgb)
        requested = self._requested_at.pop(check_id, None)
        latency = round(self.clock() - requested, 3) if requested is not None else None
        self.stats.checks.append({"check_id": check_id, "kind": kind, "verdict": verdict,
                                  "latency_s": latency})
        self.outlet.journal("system", "check.result", {
            "check_id": check_id, "kind": kind, "verdict": verdict, "details": details,
            "evidence": name if saved else None})
        await self.outlet.to_agent("check:result", {
            "call_id": self.call_id, "check_id": check_id, "kind": kind, "verdict": verdict,
            "details": details, "evidence_url": evidence_url(self.call_id, name) if saved
            else None, "at": utc_now()})

    def _abandon(self) -> None:
        """The segment ended: running checks end without a verdict (on the timeline)."""
        for kind, check in (("identity", self.identity), ("liveness", self.liveness)):
            if check is not None:
                self.outlet.journal("system", "check.abandoned", {
                    "check_id": check.check_id, "kind": kind, "reason": "segment_ended"})
        self.identity = self.liveness = None


async def _default_convert(frame: Any) -> Image:
    from cloudcounter.hub.analysis.evidence import to_rgb

    return await asyncio.to_thread(to_rgb, frame)
