"""The hash chain of a call's timeline.

Every ``call_events`` row stores ``hash``, the SHA-256 of its canonical form, and
``prev_hash``, the previous event's ``hash`` (:data:`GENESIS` for a call's first event).
The canonical form is ASCII JSON with sorted keys and no spaces of::

    {"v": 1, "call_id": ..., "seq": ..., "at": "YYYY-MM-DDTHH:MM:SS.ffffffZ",
     "actor": ..., "kind": ..., "payload": ..., "prev": ...}

so anyone can recompute it offline (docs/supervision.md). The journal's one writer task
computes the hashes in the transaction that writes the events (:mod:`cloudcounter.db.journal`).

:func:`verify_events` walks a call's events and names every break: ``changed`` (the row's
content no longer has its hash), ``deleted`` (a sequence number or a link is missing),
``reordered`` (a row sits at another place than the one it was chained at),
``missing_hash``; :mod:`cloudcounter.audit.verify` compares each recording's file and row
with the SHA-256 the chain holds (``recording.stopped``), and each evidence frame with its
``evidence.hashed`` event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

GENESIS = "0" * 64
VERSION = 1


def utc_text(at: datetime) -> str:
    """A time as the chain writes it (naive times are UTC: SQLite returns them so)."""
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normal_payload(payload: Any) -> Any:
    """The payload as the database gives it back (JSON round trip)."""
    return json.loads(json.dumps(payload if payload is not None else {}, default=repr))


def canonical(call_id: str, seq: int, at: datetime, actor: str, kind: str, payload: Any,
              prev: str) -> bytes:
    return json.dumps({"v": VERSION, "call_id": call_id, "seq": seq, "at": utc_text(at),
                       "actor": actor, "kind": kind, "payload": payload, "prev": prev},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash(call_id: str, seq: int, at: datetime, actor: str, kind: str, payload: Any,
               prev: str) -> str:
    return hashlib.sha256(canonical(call_id, seq, at, actor, kind, payload, prev)).hexdigest()


def row_hash(e: Any, seq: int | None = None, prev: str | None = None) -> str:
    """The hash of a ``CallEvent`` row (or anything with its attributes) as it is now."""
    return event_hash(e.call_id, e.seq if seq is None else seq, e.at, e.actor, e.kind,
                      e.payload, e.prev_hash if prev is None else prev)


@dataclass(frozen=True)
class Break:
    call_id: str
    kind: str  # changed | deleted | reordered | missing_hash | recording_* | digest_*
    seq: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f" at event {self.seq}" if self.seq is not None else ""
        return f"{self.call_id}{where}: {self.kind}: {self.detail}"


def verify_events(call_id: str, events: Iterable[Any]) -> list[Break]:
    """Every break in one call's timeline (events in any order; rows with ``seq``,
    ``at``, ``actor``, ``kind``, ``payload``, ``hash`` and ``prev_hash``)."""
    rows = sorted(events, key=lambda e: e.seq)
    breaks: list[Break] = []
    by_hash = {e.hash: e for e in rows if e.hash}
    seqs = {e.seq for e in rows}
    expected_prev, expected_seq = GENESIS, 1
    prev_row: Any = None
    for e in rows:
        if not e.hash or not e.prev_hash:
            breaks.append(Break(call_id, "missing_hash", e.seq,
                                "the event has no hash (written outside the journal?)"))
            expected_prev, expected_seq, prev_row = e.hash or "", e.seq + 1, e
            continue
        moved = False
        if e.prev_hash != expected_prev:
            before = by_hash.get(e.prev_hash)
            if before is not None and before is not e:
                moved = True
                breaks.append(Break(call_id, "reordered", e.seq,
                                    f"chained after event {before.seq}, found after event "
                                    f"{e.seq - 1 if e.seq > 1 else 'none'}"))
            elif e.seq > expected_seq:
                missing = f"{expected_seq}" if e.seq == expected_seq + 1 else \
                    f"{expected_seq} to {e.seq - 1}"
                breaks.append(Break(call_id, "deleted", e.seq,
                                    f"event(s) {missing} before this one are missing"))
            elif prev_row is not None and prev_row.seq == e.seq - 1:
                breaks.append(Break(call_id, "changed", prev_row.seq,
                                    f"event {prev_row.seq} ({prev_row.kind}) was rewritten with "
                                    f"a new hash: event {e.seq}'s link no longer fits"))
            else:
                breaks.append(Break(call_id, "deleted", e.seq,
                                    "the event chained before this one is missing "
                                    "(or its link was changed)"))
        elif e.seq > expected_seq:  # a gap with intact links: the numbers were changed
            breaks.append(Break(call_id, "reordered", e.seq,
                                f"sequence numbers {expected_seq} to {e.seq - 1} are missing "
                                "but the links are whole"))
        if row_hash(e) != e.hash:
            others = [s for s in range(1, max(seqs | {e.seq}) + 2) if s != e.seq
                      and row_hash(e, seq=s) == e.hash]
            if others:
                if not moved:
                    breaks.append(Break(call_id, "reordered", e.seq,
                                        f"the event was written as event {others[0]}"))
            else:
                breaks.append(Break(call_id, "changed", e.seq,
                                    f"the content of event {e.seq} ({e.kind}) does not match "
                                    "its hash: payload, time, actor or kind changed"))
        expected_prev, expected_seq, prev_row = e.hash, e.seq + 1, e
    return breaks


def chained_recordings(events: Iterable[Any]) -> dict[tuple[int, str], str]:
    """(segment, participant) -> SHA-256 as the chain holds it (``recording.stopped`` and
    ``recording.hashed`` events; the last one of a segment counts)."""
    out: dict[tuple[int, str], str] = {}
    for e in sorted(events, key=lambda e: e.seq):
        if e.kind in ("recording.stopped", "recording.hashed") and isinstance(e.payload, dict):
            files = e.payload.get("files") or {}
            seg = e.payload.get("segment")
            if not isinstance(files, dict) or not isinstance(seg, int):
                continue
            for role, info in files.items():
                if isinstance(info, dict) and isinstance(info.get("sha256"), str):
                    out[(seg, role)] = info["sha256"]
    return out


def chained_evidence(events: Iterable[Any]) -> dict[str, str]:
    """Evidence file name -> SHA-256 as the chain holds it (``evidence.hashed``)."""
    out: dict[str, str] = {}
    for e in events:
        p = e.payload if isinstance(e.payload, dict) else {}
        if e.kind == "evidence.hashed" and isinstance(p.get("file"), str) and \
                isinstance(p.get("sha256"), str):
            out[p["file"]] = p["sha256"]
    return out


def head(events: Iterable[Any]) -> tuple[int, str] | None:
    """(seq, hash) of the last event."""
    rows = sorted(events, key=lambda e: e.seq)
    return (rows[-1].seq, rows[-1].hash) if rows else None
