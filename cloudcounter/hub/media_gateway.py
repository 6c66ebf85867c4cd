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
from cloudcounter.media import seam
from cloudcounter.media.call import CallMedia, EndReason as LegEnd, Role, check_offer
from cloudcounter.media.errors import RecordingFailed
from cloudcounter.queue.model import EndReason
from cloudcounter.signaling.namespaces import agent_room

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

    # -- MediaGateway ---------------------------------------------------------------
    async def answer(self, call_id: str, role: str, offer_sdp: str) -> str:
        segment = await self._segment(call_id)
        check_offer(offer_sdp)  # refuse a bad offer before touching a working leg
        renegotiated = await segment.media.reset_leg(role)  # type: ignore[arg-type]
        answer = await segment.media.answer(role, offer_sdp)  # type: ignore[arg-type]
        self.ctx.journal.event(call_id, role, "media.negotiated", {
            "role": role, "segment": segment.number, "renegotiated": renegotiated})
        return answer

    async def close_leg(self, call_id: str, role: str) -> None:
        # A lost participant ends the segment: both legs renegotiate in the next one.
        await self._close(call_id, f"{role}_lost")

    async def close_call(self, call_id: str, reason: str) -> None:
        await self._close(call_id, reason)
        self._counts.pop(call_id, None)
        self._opening.pop(call_id, None)

    # -- lifecycle ------------------------------------------------------------------
    async def stop(self) -> None:
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
            media = CallMedia(
                call_id=call_id if number == 1 else f"{call_id}-s{number}",
                ice_servers=s.ice_servers, host_addresses=s.media_host_addresses,
                on_ended=lambda role, reason: self._leg_ended(call_id, role, reason))
            seg = Segment(call_id, number, media, origin_wall=time.time() -
                          (time.monotonic() - media.origin))
            self.segments[call_id] = seg
            await self._start_recording(seg)
            for listener in self.listeners:
                listener.on_segment(seg)
            return seg

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

    # -- callbacks from CallMedia (on the event loop) ---------------------------------
    def _leg_ended(self, call_id: str, role: Role, reason: LegEnd) -> None:
        self._spawn(self.ctx.dispatcher.end_call(
            call_id, LEG_END_REASON[reason], f"{role}:media", cause=reason.value),
            f"media-end-{call_id}")

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
