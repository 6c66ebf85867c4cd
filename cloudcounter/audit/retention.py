"""Retention: per-service periods, legal holds, and the purge job (docs/supervision.md).

The purge deletes the files (recordings, evidence frames) of ended calls older than their
service's period, never of a call under legal hold or whose review is not closed. The rows,
their SHA-256 and the timeline stay: the recording rows say ``purged_at`` and
``purge_rule``, and a ``retention.purged`` event on the call's timeline names the rule, the
files and their hashes, so the chain still verifies. ``dry_run`` reports, deletes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.audit.review import aware
from cloudcounter.db.audit_models import LegalHold, RetentionRule, ReviewTask
from cloudcounter.db.models import CallSession, Recording, ServiceType
from cloudcounter.errors import InvalidMessage, NotFound

MAX_DAYS = 36500


async def set_rule(sm: async_sessionmaker, service: str, days: int, actor: str
                   ) -> dict[str, Any]:
    if not 1 <= days <= MAX_DAYS:
        raise InvalidMessage(f"days must be from 1 to {MAX_DAYS}", code="invalid_days")
    async with sm() as s, s.begin():
        if await s.get(ServiceType, service) is None:
            raise NotFound(f"no service {service!r}", code="unknown_service")
        rule = await s.get(RetentionRule, service)
        now = datetime.now(timezone.utc)
        if rule is None:
            s.add(RetentionRule(service_code=service, days=days, updated_at=now,
                                updated_by=actor))
        else:
            rule.days, rule.updated_at, rule.updated_by = days, now, actor
    return {"service": service, "days": days, "updated_by": actor}


async def rules(sm: async_sessionmaker, default_days: int) -> list[dict[str, Any]]:
    async with sm() as s:
        services = (await s.scalars(select(ServiceType.code).order_by(ServiceType.code))).all()
        found = {r.service_code: r for r in (await s.scalars(select(RetentionRule))).all()}
    return [{"service": c, "days": found[c].days if c in found else (default_days or None),
             "source": "rule" if c in found else ("default" if default_days else "keep"),
             "updated_by": found[c].updated_by if c in found else None} for c in services]


async def add_hold(sm: async_sessionmaker, call_id: str, reason: str, actor: str
                   ) -> dict[str, Any]:
    from cloudcounter.text import check_text
    try:
        reason = check_text(reason).strip()
    except ValueError as exc:
        raise InvalidMessage(str(exc), code="invalid_reason") from None
    if not 1 <= len(reason) <= 1000:
        raise InvalidMessage("a hold needs a reason (at most 1000 characters)",
                             code="invalid_reason")
    async with sm() as s, s.begin():
        if await s.get(CallSession, call_id) is None:
            raise NotFound("no such call", code="unknown_call")
        h = LegalHold(call_id=call_id, reason=reason, created_by=actor,
                      created_at=datetime.now(timezone.utc))
        s.add(h)
        await s.flush()
        return hold_dict(h)


async def release_hold(sm: async_sessionmaker, hold_id: int, actor: str) -> dict[str, Any]:
    async with sm() as s, s.begin():
        h = await s.get(LegalHold, hold_id)
        if h is None or h.released_at is not None:
            raise NotFound("no such active hold", code="unknown_hold")
        h.released_at, h.released_by = datetime.now(timezone.utc), actor
        return hold_dict(h)


def hold_dict(h: LegalHold) -> dict[str, Any]:
    return {"id": h.id, "call_id": h.call_id, "reason": h.reason,
            "created_at": aware(h.created_at).isoformat(), "created_by": h.created_by,
            "released_at": aware(h.released_at).isoformat() if h.released_at else None,
            "released_by": h.released_by}


async def holds(sm: async_sessionmaker, active: bool = True) -> list[dict[str, Any]]:
    stmt = select(LegalHold).order_by(LegalHold.id)
    if active:
        stmt = stmt.where(LegalHold.released_at.is_(None))
    async with sm() as s:
        return [hold_dict(h) for h in (await s.scalars(stmt)).all()]


@dataclass
class PurgeReport:
    dry_run: bool
    purged: list[dict[str, Any]] = field(default_factory=list)  # per call
    kept: list[dict[str, Any]] = field(default_factory=list)  # expired but held / in review

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "purged": self.purged, "kept": self.kept}


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _evidence(paths: list[str], call_id: str) -> list[Path]:
    out: list[Path] = []
    for directory in sorted({Path(p).parent for p in paths}):
        out += sorted(p for p in directory.glob(f"{call_id}-chk_*.jpg") if p.is_file())
    return out


async def purge(sm: async_sessionmaker, journal: Any, default_days: int, actor: str,
                dry_run: bool = True, now: datetime | None = None) -> PurgeReport:
    now = now or datetime.now(timezone.utc)
    report = PurgeReport(dry_run)
    periods = {r["service"]: r["days"] for r in await rules(sm, default_days) if r["days"]}
    async with sm() as s:
        held = set((await s.scalars(select(LegalHold.call_id)
                                    .where(LegalHold.released_at.is_(None)))).all())
        in_review = set((await s.scalars(select(ReviewTask.call_id)
                                         .where(ReviewTask.state != "closed"))).all())
        candidates = []
        for service, days in periods.items():
            cutoff = now - timedelta(days=days)
            rows = (await s.execute(
                select(CallSession.id, CallSession.ended_at).where(
                    CallSession.service_code == service, CallSession.state == "ended",
                    CallSession.ended_at < cutoff))).all()
            for call_id, ended in rows:
                recs = (await s.scalars(select(Recording).where(
                    Recording.call_id == call_id, Recording.purged_at.is_(None)))).all()
                candidates.append((call_id, service, days, ended, list(recs)))
    for call_id, service, days, ended, recs in candidates:
        rule = f"{service}:{days}d"
        paths = [r.path for r in recs]
        evidence = await asyncio.to_thread(_evidence, paths, call_id) if paths else []
        if not recs and not evidence:
            continue
        if call_id in held or call_id in in_review:
            report.kept.append({"call_id": call_id, "rule": rule,
                                "why": "legal hold" if call_id in held else "under review"})
            continue
        entry = {"call_id": call_id, "rule": rule, "ended_at": aware(ended).isoformat(),
                 "recordings": [{"id": r.public_id, "sha256": r.sha256} for r in recs],
                 "evidence": []}
        for p in evidence:
            entry["evidence"].append({"file": p.name, "sha256": await asyncio.to_thread(_sha, p)})
        report.purged.append(entry)
        if dry_run:
            continue
        # the rows first: a file left behind by a failure is safer than one gone unexplained
        async with sm() as s, s.begin():
            await s.execute(update(Recording).where(Recording.id.in_([r.id for r in recs]))
                            .values(purged_at=now, purge_rule=rule))
        journal.event(call_id, actor, "retention.purged", {
            "rule": rule, "on": now.date().isoformat(), "recordings": entry["recordings"],
            "evidence": entry["evidence"]})
        await journal.flush()
        for p in [Path(x) for x in paths] + evidence:
            await asyncio.to_thread(p.unlink, missing_ok=True)
    if not dry_run:
        await journal.flush()
    return report
