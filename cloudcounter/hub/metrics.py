"""Prometheus metrics of one hub node (``GET /metrics``; docs/operations.md lists them).

One registry per app (no module globals). Three sources:

* **the call timeline as it is written** (a journal listener): requests, offers and their
  results, answers (and whether within the service's target answer time), abandons, ends,
  waits, checks, risk levels, recordings' bytes and failures;
* **state read at scrape time** (:meth:`HubMetrics.refresh`): queue lengths and oldest
  waits, agents by state, calls in progress, media legs (:mod:`.media_stats`), the vision
  pool, backlogs of the journal, the security log and the webhook outbox, sockets;
* **probes**: event-loop lag (:class:`LoopLagProbe`), vision analysis latency, webhook
  attempt latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Iterator

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector,
    ProcessCollector, generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cloudcounter.hub import media_stats
from cloudcounter.queue.model import AgentState, CallState

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

NS = "cloudcounter"
WAIT_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NAMESPACES = ("/customer", "/agent", "/supervisor")
OFFER_RESULTS = {"offer.declined": "declined", "offer.timeout": "missed",
                 "offer.withdrawn": "withdrawn"}


class HubMetrics:
    def __init__(self, ctx: "HubContext") -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        svc = ["service"]
        self.requested = Counter(f"{NS}_calls_requested", "Calls requested", svc, registry=r)
        self.offers = Counter(f"{NS}_offers", "Offers made to agents", svc, registry=r)
        self.offer_results = Counter(f"{NS}_offer_results", "How offers ended: accepted, "
                                     "declined, missed, withdrawn", ["service", "result"],
                                     registry=r)
        self.answered = Counter(f"{NS}_calls_answered", "Calls answered", svc, registry=r)
        self.within = Counter(f"{NS}_calls_answered_within_target", "Calls answered within "
                              "the service's target answer time", svc, registry=r)
        self.abandoned = Counter(f"{NS}_calls_abandoned", "Calls abandoned before an answer",
                                 svc, registry=r)
        self.ended = Counter(f"{NS}_calls_ended", "Calls ended, by reason",
                             ["service", "reason"], registry=r)
        self.waits = Histogram(f"{NS}_queue_wait_seconds", "Time from the request to the "
                               "answer (outcome=answered) or to the customer leaving "
                               "(outcome=abandoned)", ["service", "outcome"],
                               buckets=WAIT_BUCKETS, registry=r)
        self.checks = Counter(f"{NS}_checks", "Identity and liveness verdicts",
                              ["kind", "verdict"], registry=r)
        self.risk = Counter(f"{NS}_risk_assessments", "Risk assessments, by level", ["level"],
                            registry=r)
        self.rec_bytes = Counter(f"{NS}_recording_bytes", "Bytes of finished recordings",
                                 registry=r)
        self.recordings = Counter(f"{NS}_recordings", "Recordings finished", registry=r)
        self.rec_failures = Counter(f"{NS}_recording_failures", "Recordings that failed",
                                    ["participant"], registry=r)
        self.vision_latency = Histogram(f"{NS}_vision_analysis_seconds", "Time to analyse one "
                                        "frame in the vision pool (queueing included)",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.webhook_latency = Histogram(f"{NS}_webhook_attempt_seconds", "Webhook delivery "
                                         "attempts", ["outcome"], buckets=LATENCY_BUCKETS,
                                         registry=r)
        self.loop_lag = Histogram(f"{NS}_event_loop_lag_seconds", "How late the event loop "
                                  "ran a timer (probed every 0.25 s)", buckets=LAG_BUCKETS,
                                  registry=r)
        self.waiting = Gauge(f"{NS}_queue_waiting", "Calls waiting", svc, registry=r)
        self.oldest = Gauge(f"{NS}_queue_oldest_wait_seconds", "Wait of the longest-waiting "
                            "call", svc, registry=r)
        self.in_progress = Gauge(f"{NS}_calls_in_progress", "Calls answered and not ended",
                                 svc, registry=r)
        self.agents = Gauge(f"{NS}_agents", "Signed-in agents, by state", ["state"],
                            registry=r)
        self.node_lapses = Counter(f"{NS}_cluster_node_lapses", "Hub nodes whose lease "
                                   "lapsed, handled by this node", registry=r)
        info = Gauge(f"{NS}_build_info", "This hub node", ["node", "protocol"], registry=r)
        from cloudcounter.signaling.schemas import PROTOCOL_TEXT
        info.labels(ctx.settings.node_id, PROTOCOL_TEXT).set(1)
        self.state = _ScrapeState()
        r.register(_Snapshot(self.state))
        self._service: dict[str, str] = {}  # call_id -> service, until the call ends
        self._requested: dict[str, float] = {}  # call_id -> requested at, until answered
        self._lock = asyncio.Lock()

    # -- the timeline ----------------------------------------------------------------
    def on_event(self, call_id: str, actor: str, kind: str, payload: dict[str, Any],
                 at: float) -> None:
        if kind == "call.requested":
            service = str(payload.get("service", "unknown"))
            if len(self._service) > 100_000:  # calls that never ended in this process
                self._service.clear()
                self._requested.clear()
            self._service[call_id], self._requested[call_id] = service, at
            self.requested.labels(service).inc()
            return
        service = self._service.get(call_id, "unknown")
        requested = self._requested.get(call_id)
        if kind == "call.offered":
            self.offers.labels(service).inc()
        elif kind in OFFER_RESULTS:
            self.offer_results.labels(service, OFFER_RESULTS[kind]).inc()
        elif kind == "call.answered":
            if not payload.get("taken_over"):  # a lead's take-over answers no offer
                self.offer_results.labels(service, "accepted").inc()
            self.answered.labels(service).inc()
            if requested is not None:
                wait = max(0.0, at - requested)
                self.waits.labels(service, "answered").observe(wait)
                target = self.ctx.services.get(service)
                if target is not None and wait <= target.target_answer_s:
                    self.within.labels(service).inc()
                del self._requested[call_id]  # a re-queued call's later answer: no wait
        elif kind == "call.ended":
            reason = str(payload.get("reason", "unknown"))
            self.ended.labels(service, reason).inc()
            if reason == "abandoned":
                self.abandoned.labels(service).inc()
                if requested is not None:
                    self.waits.labels(service, "abandoned").observe(max(0.0, at - requested))
            self._service.pop(call_id, None)
            self._requested.pop(call_id, None)
        elif kind == "check.result":
            self.checks.labels(str(payload.get("kind")), str(payload.get("verdict"))).inc()
        elif kind == "risk.assessed":
            self.risk.labels(str(payload.get("level"))).inc()
        elif kind == "recording.stopped":
            for info in (payload.get("files") or {}).values():
                if isinstance(info, dict) and isinstance(info.get("size_bytes"), int):
                    self.recordings.inc()
                    self.rec_bytes.inc(info["size_bytes"])
        elif kind == "recording.failed":
            self.rec_failures.labels(str(payload.get("participant", "unknown"))).inc()

    # -- the scrape ------------------------------------------------------------------
    async def render(self) -> bytes:
        async with self._lock:
            await self.refresh()
            return generate_latest(self.registry)

    async def refresh(self) -> None:
        ctx = self.ctx
        now = ctx.dispatcher.clock()
        self.waiting.clear()
        self.oldest.clear()
        for code in ctx.services:
            self.waiting.labels(code).set(0)
        for row in ctx.dispatcher.stats_from(await ctx.dispatcher.store.waiting_calls(), now):
            self.waiting.labels(row["service"]).set(row["waiting"])
            self.oldest.labels(row["service"]).set(row["oldest_wait_s"])
        self.in_progress.clear()
        for code in ctx.services:
            self.in_progress.labels(code).set(0)
        for call in await ctx.dispatcher.store.calls():
            if call.state is CallState.IN_CALL:
                self.in_progress.labels(call.service).inc()
        counts = {s.value: 0 for s in AgentState if s is not AgentState.OFFLINE}
        for agent in await ctx.dispatcher.store.agents():
            if agent.state is not AgentState.OFFLINE:
                counts[agent.state.value] += 1
        for state, n in counts.items():
            self.agents.labels(state).set(n)
        st = self.state
        st.legs = await media_stats.collect(getattr(ctx.media, "segments", {}).values())
        st.segments = len(getattr(ctx.media, "segments", {}))
        pool = getattr(ctx.media, "pool", None)  # media worker processes (issue 16)
        st.workers = pool.snapshot() if pool is not None else []
        st.workers_lost = pool.lost_total if pool is not None else None
        st.sockets = {ns: sum(1 for _ in ctx.sio.manager.get_participants(ns, None))
                      for ns in NAMESPACES}
        st.journal_backlog = ctx.journal.pending
        st.journal_failures = ctx.journal.failures
        st.dead_letters = ctx.journal.dead_letters
        st.security_backlog = ctx.security.log.pending
        analysis = ctx.analysis
        st.vision = None if analysis is None else (
            analysis.size, analysis.busy, analysis.state, analysis.dropped_total())
        dispatcher = ctx.webhook_dispatcher
        if dispatcher is not None:
            st.webhooks = (dispatcher.delivered, dispatcher.failed_attempts, dispatcher.given_up)
            st.webhook_backlog = await dispatcher.backlog()
            timeline = ctx.webhook_timeline
            st.webhook_publish_failures = timeline.failures if timeline is not None else 0

    def on_webhook_attempt(self, delivered: bool, seconds: float) -> None:
        self.webhook_latency.labels("delivered" if delivered else "failed").observe(seconds)


class _ScrapeState:
    def __init__(self) -> None:
        self.legs: list[media_stats.LegStats] = []
        self.segments = 0
        self.sockets: dict[str, int] = {}
        self.journal_backlog = self.journal_failures = self.dead_letters = 0
        self.security_backlog = 0
        self.vision: tuple[int, int, str, int] | None = None
        self.webhooks: tuple[int, int, int] | None = None
        self.webhook_backlog: dict[str, int] = {}
        self.webhook_publish_failures = 0
        self.workers: list[dict[str, Any]] = []
        self.workers_lost: int | None = None


class _Snapshot(Collector):
    """Families built from what :meth:`HubMetrics.refresh` read (per leg, backlogs...)."""

    def __init__(self, state: _ScrapeState) -> None:
        self.s = state

    def describe(self) -> list[Metric]:
        return []  # built at collection time

    def collect(self) -> Iterator[Metric]:
        s = self.s
        yield _gauge("media_segments", "Calls with media on this node", s.segments)
        yield from _worker_families(s)
        leg = ["call_id", "participant"]
        kinds = [*leg, "kind"]
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "rb": CounterMetricFamily(f"{NS}_media_received_bytes", "Bytes received from "
                                      "the participant (the leg's transport)", labels=leg),
            "sb": CounterMetricFamily(f"{NS}_media_sent_bytes", "Bytes sent to the "
                                      "participant", labels=leg),
            "fr": CounterMetricFamily(f"{NS}_media_frames_received", "Video frames received "
                                      "from the participant", labels=leg),
            "pk": CounterMetricFamily(f"{NS}_media_packets_received", "RTP packets received",
                                      labels=kinds),
            "pl": CounterMetricFamily(f"{NS}_media_packets_lost", "RTP packets lost on the "
                                      "way to the hub", labels=kinds),
            "ji": GaugeMetricFamily(f"{NS}_media_jitter_seconds", "Interarrival jitter of "
                                    "what the participant sends", labels=kinds),
            "rt": GaugeMetricFamily(f"{NS}_media_rtt_seconds", "Round-trip time to the "
                                    "participant (RTCP receiver reports)", labels=leg),
            "fl": GaugeMetricFamily(f"{NS}_media_fraction_lost", "Fraction of what the hub "
                                    "sends that the participant reports lost", labels=leg),
        }
        for x in s.legs:
            ids = [x.call_id, x.participant]
            fams["rb"].add_metric(ids, x.bytes_received)
            fams["sb"].add_metric(ids, x.bytes_sent)
            fams["fr"].add_metric(ids, x.video_frames)
            if x.rtt_s is not None:
                fams["rt"].add_metric(ids, x.rtt_s)
            if x.fraction_lost_sent is not None:
                fams["fl"].add_metric(ids, x.fraction_lost_sent)
            for kind, k in (x.inbound or {}).items():
                fams["pk"].add_metric([*ids, kind], k.packets)
                fams["pl"].add_metric([*ids, kind], k.packets_lost)
                if k.jitter_s is not None:
                    fams["ji"].add_metric([*ids, kind], k.jitter_s)
        yield from fams.values()
        sockets = GaugeMetricFamily(f"{NS}_socket_connections", "Open Socket.IO connections",
                                    labels=["namespace"])
        for ns, n in s.sockets.items():
            sockets.add_metric([ns], n)
        yield sockets
        yield _gauge("journal_backlog", "Timeline operations waiting to be written",
                     s.journal_backlog)
        yield CounterMetricFamily(f"{NS}_journal_write_failures", "Journal batches the "
                                  "database failed (retried)", value=s.journal_failures)
        yield CounterMetricFamily(f"{NS}_journal_dead_letters", "Journal operations the "
                                  "database refused, put aside (alert on any)",
                                  value=s.dead_letters)
        yield _gauge("security_log_backlog", "Security events waiting to be written",
                     s.security_backlog)
        if s.vision is not None:
            size, busy, state, dropped = s.vision
            yield _gauge("vision_pool_size", "Vision worker processes", size)
            yield _gauge("vision_pool_busy", "Frames being analysed", busy)
            yield _gauge("vision_pool_ready", "1 when the vision workers have loaded their "
                         "models", 1 if state == "ready" else 0)
            yield CounterMetricFamily(f"{NS}_vision_frames_dropped", "Frames not analysed "
                                      "because the pool was busy", value=dropped)
        if s.webhooks is not None:
            done = CounterMetricFamily(f"{NS}_webhook_deliveries", "Webhook attempts by "
                                       "outcome (given_up: too old, an operator must "
                                       "redeliver)", labels=["outcome"])
            for label, n in zip(("delivered", "failed_attempt", "given_up"), s.webhooks):
                done.add_metric([label], n)
            yield done
            backlog = GaugeMetricFamily(f"{NS}_webhook_backlog", "Webhook deliveries pending "
                                        "or given up", labels=["state"])
            for state, n in sorted(s.webhook_backlog.items()):
                backlog.add_metric([state], n)
            yield backlog
            yield CounterMetricFamily(f"{NS}_webhook_publish_failures", "Timeline batches "
                                      "whose webhook events could not be built",
                                      value=s.webhook_publish_failures)


def _worker_families(s: _ScrapeState) -> Iterator[Metric]:
    """Per media worker (docs/media.md, "Media workers"): calls, CPU, packets, loss."""
    if s.workers_lost is None:
        return
    w = ["worker"]
    calls = GaugeMetricFamily(f"{NS}_media_worker_calls", "Calls on the worker", labels=w)
    cpu = GaugeMetricFamily(f"{NS}_media_worker_cpu", "The worker's CPU (share of one core, "
                            "last second)", labels=w)
    cpu_s = CounterMetricFamily(f"{NS}_media_worker_cpu_seconds", "CPU the worker process "
                                "used", labels=w)
    pin = CounterMetricFamily(f"{NS}_media_worker_packets_in", "Audio packets and video "
                              "frames received by the worker's open calls", labels=w)
    pout = CounterMetricFamily(f"{NS}_media_worker_packets_out", "Audio packets and video "
                               "frames forwarded by the worker's open calls", labels=w)
    lost = CounterMetricFamily(f"{NS}_media_worker_lost", "Video frames dropped or broken "
                               "in the worker's open calls", labels=w)
    for x in s.workers:
        ids = [str(x["worker"])]
        calls.add_metric(ids, x["calls"])
        cpu.add_metric(ids, float(x.get("cpu") or 0.0))
        cpu_s.add_metric(ids, float(x.get("process_cpu_s") or 0.0))
        pin.add_metric(ids, int(x.get("packets_in") or 0))
        pout.add_metric(ids, int(x.get("packets_out") or 0))
        lost.add_metric(ids, int(x.get("lost") or 0))
    yield from (calls, cpu, cpu_s, pin, pout, lost)
    yield CounterMetricFamily(f"{NS}_media_workers_lost", "Media workers lost with calls "
                              "(crashed, killed or lapsed)", value=s.workers_lost)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NS}_{name}", doc, value=value)


class LoopLagProbe:
    """Measures how late the event loop wakes a 0.25 s timer; one owned task."""

    def __init__(self, histogram: Histogram, interval_s: float = 0.25) -> None:
        self.histogram = histogram
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.histogram.observe(max(0.0, time.monotonic() - started - self.interval_s))
