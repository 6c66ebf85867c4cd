"""The hub's media gateway: one :class:`CallMedia` per answered segment of a call.

A call normally has one segment. If its agent is lost, the call is re-queued: the segment
is closed (its recordings finished) and the next answer opens a new one; each segment's
recordings are stored with the call. Leg failures end the call with the right reason;
recording failures go on the timeline and are told to the agent, and the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from cloudcounter.db.models import Recording
from cloudcounter.errors import InvalidMessage, InvalidState
from cloudcounter.media import seam
from cloudcounter.media.call import ROLES, CallMedia, EndReason as LegEnd, Role, check_offer
from cloudcounter.media.errors import RecordingFailed
from cloudcounter.media.turn import ice_servers_for
from cloudcounter.media.health import FlowState, FlowWatch, HealthConfig, Verdict, assess
from cloudcounter.queue.model import EndReason
from cloudcounter.signaling.namespaces import agent_room, customer_room

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext
    from cloudcounter.recordings.writer import RecordingInfo

log = logging.getLogger(__name__)
UDP_RECEIVE_BUFFER = 2 << 20
LEG_END_REASON = {LegEnd.ICE_FAILED: EndReason.FAILED, LegEnd.CONNECTION_LOST: EndReason.FAILED,
                  LegEnd.CONNECTION_CLOSED: EndReason.COMPLETED}


@dataclass
class Segment:
    call_id: str
    number: int
    media: CallMedia
    origin_wall: float
    recording_ids: dict[str, int] = field(default_factory=dict)
    watches: dict[str, FlowWatch] = field(default_factory=dict)  # per participant


class HubMedia:
    def __init__(self, ctx: "HubContext") -> None:
        # aioice's 256 KiB UDP buffers overflow on a key-frame burst when the loop is late
        seam.set_udp_receive_buffer(UDP_RECEIVE_BUFFER)
        self.ctx = ctx
        self.segments: dict[str, Segment] = {}
        self._counts: dict[str, int] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.listeners: list[Any] = []  # analysis and other consumers: on_segment(segment)
        st = ctx.settings
        self.health = HealthConfig(stall_after_s=st.media_stall_s,
                                   start_timeout_s=st.media_start_timeout_s,
                                   keyframe_after_s=min(1.5, st.media_stall_s / 2),
                                   restart_every_s=st.media_start_timeout_s,
                                   max_restarts=st.media_restarts)
        self._watcher: asyncio.Task[None] | None = None

    # -- MediaGateway ---------------------------------------------------------------
    async def answer(self, call_id: str, role: str, offer_sdp: str) -> str:
        segment = await self._segment(call_id)
        kinds = check_offer(offer_sdp)  # refuse a bad offer before touching a working leg
        if role == "customer" and "video" not in kinds:
            # identity, liveness and the recording need the customer's camera; the agent may
            # be camera-off (audio only). The call goes on: offer again with the camera.
            raise InvalidMessage("the customer's offer must carry video (camera on)",
                                 code="video_required")
        renegotiated = await segment.media.reset_leg(role)  # type: ignore[arg-type]
        answer = await segment.media.answer(role, offer_sdp)  # type: ignore[arg-type]
        self.ctx.journal.event(call_id, role, "media.negotiated", {
            "role": role, "segment": segment.number, "renegotiated": renegotiated})
        return answer

    # -- silent monitoring (team leads) -------------------------------------------------
    async def add_monitor(self, call_id: str, watcher: str, role: str, offer_sdp: str) -> str:
        """A lead (``watcher``, an actor) watches and listens to ``role`` of a call in
        progress, receive-only; on the timeline ("monitored by")."""
        seg = self.segments.get(call_id)
        if seg is None or seg.media.closed:
            raise InvalidState("the call has no media yet", code="no_media")
        answer = await seg.media.add_monitor(f"{watcher}/{role}", role,  # type: ignore[arg-type]
                                             offer_sdp)
        self.ctx.journal.event(call_id, watcher, "monitor.started",
                               {"participant": role, "segment": seg.number})
        return answer

    async def stop_monitors(self, watcher: str, call_id: str | None = None) -> int:
        """Stop ``watcher``'s monitors (of one call, or of every call); returns how many."""
        stopped = 0
        for cid, seg in list(self.segments.items()):
            if call_id is not None and cid != call_id:
                continue
            for monitor_id in seg.media.monitors:
                if monitor_id.startswith(watcher + "/") and \
                        await seg.media.remove_monitor(monitor_id):
                    stopped += 1
                    self.ctx.journal.event(cid, watcher, "monitor.stopped", {
                        "participant": monitor_id.rsplit("/", 1)[1]})
        return stopped

    async def close_leg(self, call_id: str, role: str) -> None:
        # A lost participant ends the segment: both legs renegotiate in the next one.
        await self._close(call_id, f"{role}_lost")

    async def close_call(self, call_id: str, reason: str) -> None:
        await self._close(call_id, reason)
        self._counts.pop(call_id, None)
        self._opening.pop(call_id, None)

    # -- lifecycle ------------------------------------------------------------------
    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        for call_id in list(self.segments):
            await self._close(call_id, "hub_shutdown")
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- segments -------------------------------------------------------------------
    async def _segment(self, call_id: str) -> Segment:
        lock = self._opening.setdefault(call_id, asyncio.Lock())
        async with lock:
            seg = self.segments.get(call_id)
            if seg is not None:
                return seg
            number = self._counts[call_id] = self._counts.get(call_id, 0) + 1
            s = self.ctx.settings
            media = await self._new_media(
                call_id, call_id if number == 1 else f"{call_id}-s{number}",
                (ice_servers_for(s, f"hub.{call_id}") if s.turn_for_hub else s.ice_servers),
                s.media_host_addresses)
            seg = Segment(call_id, number, media, origin_wall=time.time() -
                          (time.monotonic() - media.origin))
            self.segments[call_id] = seg
            if self._watcher is None:
                self._watcher = asyncio.get_running_loop().create_task(
                    self._watch_media(), name="media-health")
            await self._start_recording(seg)
            for listener in self.listeners:
                listener.on_segment(seg)
            return seg

    async def _new_media(self, call_id: str, name: str, ice_servers: Any,
                         host_addresses: Any) -> CallMedia:
        """A segment's media, in this process (the worker-backed gateway,
        :class:`cloudcounter.media.workers.gateway.WorkerMedia`, opens it on a worker)."""
        return CallMedia(call_id=name, ice_servers=ice_servers, host_addresses=host_addresses,
                         on_ended=lambda role, reason: self._leg_ended(call_id, role, reason))

    async def _start_recording(self, seg: Segment) -> None:
        day = datetime.now(timezone.utc).strftime("%Y/%m/%d")
        directory = Path(self.ctx.settings.recordings_dir) / day
        paths = seg.media.start_recording(
            directory, on_failed=lambda role, err: self._recording_failed(seg, role, err),
            key=self.ctx.settings.at_rest_key_bytes)
        started = datetime.fromtimestamp(seg.origin_wall, timezone.utc)
        await self.ctx.journal.flush()  # the call's row exists before its recordings
        async with self.ctx.sm() as s, s.begin():
            for role, path in paths.items():
                rec = Recording(call_id=seg.call_id, participant=role, path=str(path.resolve()),
                                started_at=started, segment=seg.number, codecs=[])
                s.add(rec)
                await s.flush()
                seg.recording_ids[role] = rec.id
        self.ctx.journal.event(seg.call_id, "system", "recording.started", {
            "segment": seg.number, "files": {r: p.name for r, p in paths.items()}})

    async def _close(self, call_id: str, reason: str) -> None:
        seg = self.segments.pop(call_id, None)
        if seg is None:
            return
        infos = await seg.media.close()
        await self._store(seg, infos)
        self.ctx.journal.event(call_id, "system", "recording.stopped", {
            "segment": seg.number, "reason": reason,
            "files": {role: {"sha256": i.sha256, "size_bytes": i.size_bytes,
                             "duration_s": i.duration_s} for role, i in infos.items()}})

    async def _store(self, seg: Segment, infos: dict[Role, "RecordingInfo"]) -> None:
        now = datetime.now(timezone.utc)
        async with self.ctx.sm() as s, s.begin():
            for role, rec_id in seg.recording_ids.items():
                info = infos.get(role)  # type: ignore[call-overload]
                values: dict[str, Any] = {"finished_at": now}
                if info is not None:
                    values.update(sha256=info.sha256, size_bytes=info.size_bytes,
                                  duration_s=info.duration_s, offset_s=info.start_s,
                                  codecs=list(info.codecs))
                else:
                    values.update(error="nothing recorded")
                await s.execute(update(Recording).where(Recording.id == rec_id,
                                                        Recording.error.is_(None)).values(**values))

    # -- media health: never silently without video ------------------------------------
    async def _watch_media(self, interval: float = 0.5) -> None:
        """Once per ``interval``: is each participant's media reaching the hub? (see
        :mod:`cloudcounter.media.health`)."""
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for seg in list(self.segments.values()):
                for role in ROLES:
                    flow = seg.media.flow(role)
                    if flow is None:
                        continue
                    verdict = assess(seg.watches.setdefault(role, FlowWatch()), flow, now,
                                     self.health)
                    if verdict.request_keyframe:
                        seg.media.request_keyframe(role)
                    if verdict.changed or verdict.restart:
                        try:
                            await self._media_news(seg, role, verdict)
                        except asyncio.CancelledError:
                            raise
                        except Exception:  # a notification must not stop the watch
                            log.exception("call %s: media health notification failed",
                                          seg.call_id)

    async def _media_news(self, seg: Segment, role: Role, verdict: Verdict) -> None:
        watch = seg.watches[role]
        silent = round(verdict.silent_s, 1)
        if verdict.changed:
            kind = "media.stalled" if verdict.state is FlowState.STALLED else "media.restored"
            log.warning("call %s: %s's media %s (%.1f s without)", seg.call_id, role,
                        "stalled" if verdict.state is FlowState.STALLED else "flows again",
                        silent)
            self.ctx.journal.event(seg.call_id, "system", kind, {
                "participant": role, "segment": seg.number, "silent_s": silent})
        if verdict.restart:
            self.ctx.journal.event(seg.call_id, "system", "media.restart_requested", {
                "participant": role, "segment": seg.number, "attempt": watch.restarts})
        await self._tell(seg, role, verdict.state if verdict.changed else None, silent,
                         "no_media" if verdict.restart else None)

    async def _tell(self, seg: Segment, role: Role, state: FlowState | None, silent_s: float,
                    restart: str | None) -> None:
        """``call:media`` to both participants when ``state`` changed, ``media:restart`` to
        ``role``'s app when it should renegotiate (the reason)."""
        call = await self.ctx.dispatcher.store.get_call(seg.call_id)
        if call is None:
            return
        rooms: dict[str, tuple[str, str]] = {"customer": ("/customer",
                                                          customer_room(call.customer_id))}
        if call.agent_id is not None:
            rooms["agent"] = ("/agent", agent_room(call.agent_id))
        watch = seg.watches.setdefault(role, FlowWatch())
        if state is not None:
            news = {"call_id": seg.call_id, "participant": role, "state": state.value,
                    "silent_s": silent_s, "restarts": watch.restarts}
            for namespace, room in rooms.values():
                await self.ctx.sio.emit("call:media", news, to=room, namespace=namespace)
        if restart is not None and role in rooms:
            namespace, room = rooms[role]
            await self.ctx.sio.emit("media:restart", {
                "call_id": seg.call_id, "reason": restart, "attempt": watch.restarts},
                to=room, namespace=namespace)

    # -- callbacks from CallMedia (on the event loop) ---------------------------------
    def _leg_ended(self, call_id: str, role: Role, reason: LegEnd) -> None:
        """A leg ended on its own (its connection closed, failed or lost consent). The
        participant's app may be replacing it (a network change, a renegotiation that
        closed the old connection first): it is asked to, and the call ends only if no
        live leg replaced it within ``media_start_timeout_s``."""
        seg = self.segments.get(call_id)
        if seg is None:
            return
        watch = seg.watches.setdefault(role, FlowWatch())
        was = watch.state
        watch.state, watch.since = FlowState.STALLED, time.monotonic()
        watch.restarts += 1
        self.ctx.journal.event(call_id, "system", "media.leg_ended", {
            "participant": role, "segment": seg.number, "reason": reason.value})
        log.warning("call %s: %s's leg ended (%s); waiting for a new one", call_id, role,
                    reason.value)
        self._spawn(self._await_replacement(seg, role, reason, was is not FlowState.STALLED),
                    f"media-replace-{call_id}-{role}")

    async def _await_replacement(self, seg: Segment, role: Role, reason: LegEnd,
                                 news: bool) -> None:
        await self._tell(seg, role, FlowState.STALLED if news else None, 0.0, reason.value)
        await asyncio.sleep(self.health.start_timeout_s)
        if self.segments.get(seg.call_id) is seg and seg.media.flow(role) is None:
            await self.ctx.dispatcher.end_call(
                seg.call_id, LEG_END_REASON[reason], f"{role}:media", cause=reason.value)

    def _recording_failed(self, seg: Segment, role: Role, error: RecordingFailed) -> None:
        self.ctx.journal.event(seg.call_id, "system", "recording.failed",
                               {"participant": role, "error": error.message})
        self._spawn(self._report_failure(seg, role, error), f"rec-fail-{seg.call_id}")

    async def _report_failure(self, seg: Segment, role: Role, error: RecordingFailed) -> None:
        async with self.ctx.sm() as s, s.begin():
            await s.execute(update(Recording).where(Recording.id == seg.recording_ids.get(role))
                            .values(error=error.message))
        call = await self.ctx.dispatcher.store.get_call(seg.call_id)
        if call is not None and call.agent_id is not None:
            await self.ctx.sio.emit("call:recording_failed", {
                "call_id": seg.call_id, "participant": role,
                "message": "this call is not being recorded"}, to=agent_room(call.agent_id),
                namespace="/agent")


# -- media worker processes (issue 16; docs/media.md, "Media workers") ---------------------
WORKER_LOST = "worker_lost"


class WorkerMedia(HubMedia):
    """The same gateway with every segment's media on a worker process
    (:mod:`cloudcounter.media.workers`): the hub keeps the journal, the recordings' rows,
    the media-health watch and the analysis; the worker forwards and records. A worker
    lost mid-call ends its calls ``failed`` (cause ``worker_lost``, both participants told)
    and finalizes their recordings as crash recovery does."""

    def __init__(self, ctx: "HubContext", pool: Any) -> None:
        super().__init__(ctx)
        self.pool = pool
        pool.on_lost = self.worker_lost
        self.tap_fps = ctx.settings.vision_challenge_fps

    async def _new_media(self, call_id: str, name: str, ice_servers: Any,
                         host_addresses: Any) -> Any:
        from cloudcounter.media.port import MediaUnavailable
        from cloudcounter.media.workers.remote import RemoteCallMedia

        link = await self.pool.place()
        if link is None:
            self._counts[call_id] -= 1
            raise MediaUnavailable("no media worker can take a call now")
        media = RemoteCallMedia(link, name, name,
                                lambda role, reason: self._leg_ended(call_id, role, reason),
                                self.tap_fps)
        try:
            await media.open(ice_servers, host_addresses)
        except BaseException:
            self._counts[call_id] -= 1
            raise
        log.info("call %s: media on worker %s", call_id, link.worker_id)
        return media

    def worker_lost(self, link: Any) -> None:
        self._spawn(self._fail_calls(link), f"worker-lost-{link.worker_id}")

    async def _fail_calls(self, link: Any) -> None:
        lost = [(cid, seg) for cid, seg in list(self.segments.items())
                if getattr(seg.media, "link", None) is link]
        for call_id, seg in lost:
            self.segments.pop(call_id, None)
            self.ctx.journal.event(call_id, "system", "media.worker_lost", {
                "worker": link.worker_id, "segment": seg.number})
            try:
                await self.ctx.dispatcher.end_call(call_id, EndReason.FAILED, "system",
                                                   cause=WORKER_LOST)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the recordings are finalized regardless
                log.exception("call %s: ending it after its worker was lost failed", call_id)
            await self._recover(seg)
        await self.ctx.journal.flush()

    async def _recover(self, seg: Segment) -> None:
        from cloudcounter.recordings.recovery import finalize

        key = self.ctx.settings.at_rest_key_bytes
        paths = getattr(seg.media, "recording_paths", {})
        for role, rec_id in seg.recording_ids.items():
            path = paths.get(role)
            values: dict[str, Any] = {"finished_at": datetime.now(timezone.utc)}
            try:
                if path is None:
                    raise FileNotFoundError("no file")
                done = await asyncio.to_thread(finalize, Path(path), key)
                values.update(sha256=done.sha256, size_bytes=done.size_bytes,
                              duration_s=done.duration_s)
                self.ctx.journal.event(seg.call_id, "system", "recording.recovered", {
                    "participant": role, "segment": seg.number, "file": Path(path).name,
                    "sha256": done.sha256, "size_bytes": done.size_bytes,
                    "duration_s": done.duration_s, "packets": done.packets,
                    "cause": WORKER_LOST})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the other
                values["error"] = f"not recoverable: {type(exc).__name__}: {exc}"[:500]
                self.ctx.journal.event(seg.call_id, "system", "recording.failed", {
                    "participant": role, "segment": seg.number, "message": values["error"],
                    "cause": WORKER_LOST})
            async with self.ctx.sm() as s, s.begin():
                await s.execute(update(Recording).where(Recording.id == rec_id)
                                .values(**values))
