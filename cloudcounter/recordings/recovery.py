"""Crash recovery: what a hub killed mid-call left open is closed when it starts again.

A hub killed with SIGKILL leaves its calls ``in_call`` (or queued, offered...) with no end,
and their recordings without size, duration or SHA-256; the files decode up to the kill (the
writer flushes a cluster at least every second) but carry no duration or cues, so a player
cannot seek in them. On start-up (:func:`recover`, run by the hub before it takes calls):

* every call its hub left open ends ``failed`` with cause ``hub_restarted``, on the timeline;
* every recording left open is **finalized**: remuxed (no re-encoding) into a file with its
  duration and cues, written beside it and moved over it atomically (sealed again with the
  at-rest key when it was sealed); then hashed, and its size, duration and SHA-256 stored,
  with ``recovered`` on the timeline (``recording.recovered``). The bytes a crash tore
  (at most the last cluster, or the last at-rest chunk) are dropped. A file that cannot be
  read at all keeps its row with the error.

The remuxing runs on a worker thread, never on the event loop. Only the in-memory queue
exists today (one hub process per database), so every open call at start-up was this
hub's; with several nodes the owner's lease decides (the scale-out issue).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import av
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db.models import CallSession, Recording
from cloudcounter.recordings.crypto import (
    AtRestError, EncryptedReader, EncryptedWriter, is_encrypted, sha256_and_size,
)

log = logging.getLogger(__name__)
CAUSE = "hub_restarted"


@dataclass
class Finalized:
    sha256: str
    size_bytes: int
    duration_s: float
    packets: int


@dataclass
class RecoveryReport:
    calls: list[str] = field(default_factory=list)
    recordings: int = 0
    unreadable: int = 0


def _plain_copy(path: Path, key: bytes | None, tmp: Path) -> Path:
    """The readable WebM of ``path``: itself, or its sealed chunks decrypted up to the first
    torn one into ``tmp``."""
    if key is None or not is_encrypted(path):
        return path
    out = tmp / "plain.webm"
    with EncryptedReader(path, key) as r, open(out, "wb") as f:
        for i in range(r.chunks):
            try:
                f.write(r.chunk(i))
            except AtRestError:  # the chunk being written at the kill
                break
    return out


def finalize(path: Path, key: bytes | None = None) -> Finalized:
    """Remux a recording the writer could not close into a complete WebM (duration, cues),
    in place and atomically; returns its hash, size and duration. Blocking: call it on a
    worker thread."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".recover-") as t:
        tmp = Path(t)
        source = _plain_copy(path, key, tmp)
        remuxed = tmp / "remuxed.webm"
        packets, first, last = 0, None, None
        with av.open(str(source)) as src, av.open(str(remuxed), "w", format="webm") as dst:
            streams = {}
            for s in src.streams:
                if s.type in ("video", "audio"):
                    streams[s.index] = dst.add_stream_from_template(s)
            try:
                for packet in src.demux(*[src.streams[i] for i in streams]):
                    if packet.dts is None or packet.size == 0:
                        continue
                    t_s = float(packet.pts * packet.time_base) if packet.pts is not None \
                        else None
                    if t_s is not None:
                        first = t_s if first is None else min(first, t_s)
                        last = t_s if last is None else max(last, t_s)
                    packet.stream = streams[packet.stream.index]
                    dst.mux(packet)
                    packets += 1
            except (av.error.InvalidDataError, av.error.EOFError):
                pass  # the torn tail: everything before it is kept
        final = tmp / "final.webm"
        if key is not None and source is not path:
            with EncryptedWriter(final, key) as w, open(remuxed, "rb") as f:
                while data := f.read(1 << 20):
                    w.write(data)
        else:
            os.replace(remuxed, final)
        os.replace(final, path)
    sha, size = sha256_and_size(path, key)
    duration = (last - first) if first is not None and last is not None else 0.0
    return Finalized(sha, size, round(duration, 3), packets)


async def recover(sm: async_sessionmaker, journal: Any, key: bytes | None = None
                  ) -> RecoveryReport:
    """End the calls and finalize the recordings a killed hub left open (see the module)."""
    report = await end_open_calls(sm, journal)
    await finalize_open_recordings(sm, journal, key, report)
    return report


async def end_open_calls(sm: async_sessionmaker, journal: Any) -> RecoveryReport:
    """End every call left open as ``failed`` (``hub_restarted``); quick: the hub does it
    before it takes calls."""
    report = RecoveryReport()
    now = datetime.now(timezone.utc)
    async with sm() as s:
        open_calls = list((await s.scalars(select(CallSession.id).where(
            CallSession.ended_at.is_(None), CallSession.state != "ended"))).all())
    for call_id in open_calls:
        journal.event(call_id, "system", "call.ended", {"reason": "failed", "cause": CAUSE})
        journal.call_updated(call_id, state="ended", ended_at=now.timestamp(),
                             end_reason="failed")
        report.calls.append(call_id)
    if open_calls:
        log.warning("recovered %d call(s) left open by a previous run: ended as failed "
                    "(%s)", len(open_calls), CAUSE)
    await journal.flush()
    return report


async def finalize_open_recordings(sm: async_sessionmaker, journal: Any,
                                   key: bytes | None = None,
                                   report: RecoveryReport | None = None) -> RecoveryReport:
    """Finalize every recording left open (the files' work on a worker thread)."""
    report = report if report is not None else RecoveryReport()
    async with sm() as s:
        open_recordings = list((await s.scalars(select(Recording).where(
            Recording.finished_at.is_(None), Recording.error.is_(None)))).all())
    for rec in open_recordings:
        values: dict[str, Any] = {"finished_at": datetime.now(timezone.utc)}
        path = Path(rec.path)
        try:
            done = await asyncio.to_thread(finalize, path, key)
            values.update(sha256=done.sha256, size_bytes=done.size_bytes,
                          duration_s=done.duration_s)
            journal.event(rec.call_id, "system", "recording.recovered", {
                "participant": rec.participant, "segment": rec.segment, "file": path.name,
                "sha256": done.sha256, "size_bytes": done.size_bytes,
                "duration_s": done.duration_s, "packets": done.packets, "cause": CAUSE})
            report.recordings += 1
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            values["error"] = f"not recoverable: {type(exc).__name__}: {exc}"[:500]
            journal.event(rec.call_id, "system", "recording.failed", {
                "participant": rec.participant, "segment": rec.segment,
                "message": values["error"], "cause": CAUSE})
            report.unreadable += 1
            log.error("recording %s of call %s could not be recovered: %s", path.name,
                      rec.call_id, exc)
        async with sm() as s, s.begin():
            await s.execute(update(Recording).where(Recording.id == rec.id).values(**values))
    await journal.flush()
    return report
