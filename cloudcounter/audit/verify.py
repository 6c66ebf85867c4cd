"""Verifying the record: each call's chain, its recordings, and the daily digests.

:func:`verify_call` and :func:`verify_all` report every break with its place
(:class:`cloudcounter.audit.chain.Break`); an empty list is a record that proves itself.
:func:`write_digest` appends the day's digest (``cloudcounter audit digest``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.audit.chain import (
    GENESIS, Break, chained_evidence, chained_recordings, head, verify_events,
)
from cloudcounter.db.audit_models import AuditDigest
from cloudcounter.db.models import CallEvent, CallSession, Recording
from cloudcounter.errors import Conflict, InvalidMessage

BATCH = 200  # calls read at once by verify_all


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"cloudcounter audit key id\x00" + key).hexdigest()[:16]


def sign(key: bytes, data: str) -> str:
    return hmac.new(key, data.encode(), hashlib.sha256).hexdigest()


def digest_root(prev_root: str, entries: list[list[Any]]) -> str:
    h = prev_root
    for call_id, seq, last in entries:
        h = hashlib.sha256(f"{h}|{call_id}|{seq}|{last}".encode()).hexdigest()
    return h


def file_sha256(path: Path, at_rest_key: bytes | None) -> str | None:
    from cloudcounter.recordings.crypto import sha256_and_size
    if not path.is_file():
        return None
    return sha256_and_size(path, at_rest_key)[0]


async def _recording_breaks(call_id: str, events: list[CallEvent], recs: list[Recording],
                            at_rest_key: bytes | None, files: bool) -> list[Break]:
    chained = chained_recordings(events)
    purged = {r.get("id") for e in events if e.kind == "retention.purged"
              and isinstance(e.payload, dict)
              for r in e.payload.get("recordings") or [] if isinstance(r, dict)}
    out: list[Break] = []
    for r in recs:
        if r.sha256 is None:
            continue  # never closed (failed or still recording): nothing to compare with
        where = f"recording {r.public_id} ({r.participant}, segment {r.segment})"
        want = chained.get((r.segment, r.participant))
        if want is None:
            out.append(Break(call_id, "recording_unchained", None,
                             f"{where}: its SHA-256 is not on the timeline"))
            continue
        if r.sha256 != want:
            out.append(Break(call_id, "recording_row_changed", None,
                             f"{where}: the recording's row says {r.sha256[:12]}…, the chain "
                             f"{want[:12]}…"))
        if getattr(r, "purged_at", None) is not None:
            if r.public_id not in purged:
                out.append(Break(call_id, "recording_purged_unrecorded", None,
                                 f"{where}: marked purged, but no retention.purged event "
                                 "names it"))
            continue
        if not files:
            continue
        got = await asyncio.to_thread(file_sha256, Path(r.path), at_rest_key)
        if got is None:
            out.append(Break(call_id, "recording_missing", None, f"{where}: the file is gone"))
        elif got != want:
            out.append(Break(call_id, "recording_replaced", None,
                             f"{where}: the file's SHA-256 is {got[:12]}…, the chain holds "
                             f"{want[:12]}…"))
    evidence = chained_evidence(events)
    if files and evidence:
        gone = {f.get("file") for e in events if e.kind == "retention.purged"
                and isinstance(e.payload, dict)
                for f in e.payload.get("evidence") or [] if isinstance(f, dict)}
        dirs = sorted({Path(r.path).parent for r in recs})
        for name, want in sorted(evidence.items()):
            if name in gone:
                continue
            got = None
            for d in dirs:
                got = await asyncio.to_thread(file_sha256, d / name, at_rest_key)
                if got is not None:
                    break
            if got is None:
                out.append(Break(call_id, "evidence_missing", None,
                                 f"evidence {name}: the file is gone"))
            elif got != want:
                out.append(Break(call_id, "evidence_replaced", None,
                                 f"evidence {name}: not the file the chain holds"))
    return out


async def _digest_breaks(s: AsyncSession, call_id: str, requested_at: datetime,
                         events: list[CallEvent]) -> list[Break]:
    day = _day_of(requested_at)
    d = (await s.scalars(select(AuditDigest).where(AuditDigest.day == day))).first()
    if d is None:
        return []
    by_seq = {e.seq: e for e in events}
    for cid, seq, last in d.entries:
        if cid != call_id:
            continue
        if seq == 0:
            return []
        e = by_seq.get(seq)
        if e is None:
            return [Break(call_id, "deleted", seq, f"the digest of {day} holds event {seq}; "
                          "it is missing (the end of the timeline was cut)")]
        if e.hash != last:
            return [Break(call_id, "digest_mismatch", seq,
                          f"event {seq} does not have the hash the digest of {day} holds")]
        return []
    return [Break(call_id, "digest_missing_call", None,
                  f"the call is not in the digest of {day} (added to the database later?)")]


def _day_of(at: datetime) -> date:
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    return at.date()


async def verify_call(sm: async_sessionmaker, call_id: str, at_rest_key: bytes | None = None,
                      files: bool = True) -> list[Break]:
    """The call's chain, its recordings (``files``: their files too) and its digest."""
    async with sm() as s:
        call = await s.get(CallSession, call_id)
        events = list((await s.scalars(select(CallEvent).where(CallEvent.call_id == call_id)
                                       )).all())
        recs = list((await s.scalars(select(Recording).where(Recording.call_id == call_id)
                                     )).all())
        breaks = verify_events(call_id, events)
        if call is not None:
            breaks += await _digest_breaks(s, call_id, call.requested_at, events)
    if call is None and not events:
        raise InvalidMessage(f"no such call {call_id}", code="unknown_call")
    return breaks + await _recording_breaks(call_id, events, recs, at_rest_key, files)


async def verify_all(sm: async_sessionmaker, at_rest_key: bytes | None = None,
                     files: bool = True, audit_key: bytes | None = None
                     ) -> tuple[int, list[Break]]:
    """Every call (in batches), then the digest log. Returns (calls checked, breaks)."""
    async with sm() as s:
        ids = list((await s.scalars(select(CallSession.id).order_by(CallSession.id))).all())
    breaks: list[Break] = []
    for cid in ids:
        breaks += await verify_call(sm, cid, at_rest_key, files)
    breaks += await verify_digests(sm, audit_key, entries=False)
    return len(ids), breaks


async def day_entries(s: AsyncSession, day: date) -> list[list[Any]]:
    start = datetime.combine(day, time(), timezone.utc)
    ids = (await s.scalars(select(CallSession.id).where(
        CallSession.requested_at >= start, CallSession.requested_at < start + timedelta(days=1))
        .order_by(CallSession.id))).all()
    entries: list[list[Any]] = []
    for cid in ids:
        events = (await s.scalars(select(CallEvent).where(CallEvent.call_id == cid))).all()
        h = head(events)
        entries.append([cid, h[0], h[1]] if h else [cid, 0, GENESIS])
    return entries


async def write_digest(sm: async_sessionmaker, day: date, actor: str,
                       audit_key: bytes | None, now: datetime | None = None) -> AuditDigest:
    """Append the digest of ``day`` (a day that is over); refused when it exists."""
    now = now or datetime.now(timezone.utc)
    if day >= now.date():
        raise InvalidMessage(f"{day} is not over yet", code="day_not_over")
    async with sm() as s, s.begin():
        if (await s.scalars(select(AuditDigest.id).where(AuditDigest.day == day))).first():
            raise Conflict(f"the digest of {day} exists (the log is append-only)",
                           code="digest_exists")
        last = (await s.scalars(select(AuditDigest).order_by(AuditDigest.id.desc())
                                .limit(1))).first()
        prev_root = last.root if last else GENESIS
        entries = await day_entries(s, day)
        root = digest_root(prev_root, entries)
        d = AuditDigest(day=day, created_at=now, created_by=actor, entries=entries,
                        prev_root=prev_root, root=root,
                        key_id=key_id(audit_key) if audit_key else None,
                        signature=sign(audit_key, root) if audit_key else None)
        s.add(d)
    return d


async def verify_digests(sm: async_sessionmaker, audit_key: bytes | None,
                         entries: bool = True) -> list[Break]:
    """The digest log: each root recomputed, chained to the one before, signed with the
    audit key (when set), and each call's digested event still there with its hash."""
    out: list[Break] = []
    async with sm() as s:
        digests = (await s.scalars(select(AuditDigest).order_by(AuditDigest.id))).all()
        prev = GENESIS
        for d in digests:
            place = f"digest {d.day}"
            if d.prev_root != prev:
                out.append(Break(place, "digest_chain", None, "not chained to the digest "
                                 "before it (a digest was deleted or changed)"))
            if digest_root(d.prev_root, d.entries) != d.root:
                out.append(Break(place, "digest_changed", None,
                                 "its entries do not give its root"))
            if audit_key is not None:
                if d.signature is None:
                    out.append(Break(place, "digest_unsigned", None, "no signature"))
                elif d.key_id == key_id(audit_key) and not hmac.compare_digest(
                        d.signature, sign(audit_key, d.root)):
                    out.append(Break(place, "digest_signature", None,
                                     "the signature does not match the root"))
            prev = d.root
            if not entries:
                continue
            seqs = {(cid, seq): last for cid, seq, last in d.entries if seq}
            for (cid, seq), last in seqs.items():
                h = (await s.scalars(select(CallEvent.hash).where(
                    CallEvent.call_id == cid, CallEvent.seq == seq))).first()
                if h is None:
                    out.append(Break(cid, "deleted", seq,
                                     f"the digest of {d.day} holds event {seq}; it is missing"))
                elif h != last:
                    out.append(Break(cid, "digest_mismatch", seq,
                                     f"event {seq} does not have the hash the digest of "
                                     f"{d.day} holds"))
    return out
