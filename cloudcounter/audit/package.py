"""Evidence packages: one call's record as a zip that proves itself offline.

The package holds

* ``call.json``: the call (service, agent, customer, times, outcome, risk);
* ``timeline.json``: every timeline event with its ``hash`` and ``prev_hash``;
* ``checks.json``: the check evidence (script steps, confirmations with their text and
  its SHA-256, approvals), and ``review.json``: review results (when there are any);
* ``recordings/…webm`` (the plaintext, also when sealed at rest) and ``evidence/…jpg``;
* ``manifest.json``: the SHA-256 and size of every other file, the chain's head and the
  verification result at export; ``manifest.sig``: HMAC-SHA256 of ``manifest.json`` with
  ``CLOUDCOUNTER_AUDIT_KEY`` (absent when no key is set).

:func:`verify_package` needs neither the database nor the hub: the files against the
manifest, the manifest against its signature, the timeline's chain recomputed, and each
recording against the SHA-256 the chain holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import aliased

from cloudcounter.audit.chain import (
    chained_evidence, chained_recordings, head, utc_text, verify_events,
)
from cloudcounter.audit.verify import key_id, verify_call
from cloudcounter.db.models import (
    CallApproval, CallConfirmation, CallEvent, CallSession, CallStep, Customer, Recording,
    ServiceType, User,
)
from cloudcounter.errors import InvalidMessage, InvalidState

FORMAT = "cloudcounter-evidence/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
CHUNK = 1 << 20


def _iso(v: datetime | None) -> str | None:
    return None if v is None else utc_text(v)


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in obj.__table__.columns:
        if col.key in skip:
            continue
        v = getattr(obj, col.key)
        out[col.key] = _iso(v) if isinstance(v, datetime) else v
    return out


@dataclass
class Collected:
    """What the database holds about a call, read before the files are written."""
    call_id: str
    call: dict[str, Any]
    timeline: list[dict[str, Any]]
    checks: dict[str, Any]
    review: dict[str, Any] | None
    recordings: list[dict[str, Any]]  # with "path" (not written to the package)
    evidence: list[Path]
    breaks: list[dict[str, Any]]
    head: tuple[int, str] | None


async def collect(sm: async_sessionmaker, call_id: str,
                  at_rest_key: bytes | None) -> Collected:
    agent = aliased(User)
    async with sm() as s:
        row = (await s.execute(
            select(CallSession, Customer.name, ServiceType.name, agent.username)
            .join(Customer, Customer.id == CallSession.customer_id)
            .join(ServiceType, ServiceType.code == CallSession.service_code)
            .outerjoin(agent, agent.id == CallSession.agent_id)
            .where(CallSession.id == call_id))).first()
        if row is None:
            raise InvalidMessage(f"no such call {call_id}", code="unknown_call")
        c = row[0]
        if c.state != "ended":
            raise InvalidState("the call has not ended", code="call_not_ended")
        events = (await s.scalars(select(CallEvent).where(CallEvent.call_id == call_id)
                                  .order_by(CallEvent.seq))).all()
        recs = (await s.scalars(select(Recording).where(Recording.call_id == call_id)
                                .order_by(Recording.segment, Recording.participant))).all()
        steps = (await s.scalars(select(CallStep).where(CallStep.call_id == call_id)
                                 .order_by(CallStep.id))).all()
        confs = (await s.scalars(select(CallConfirmation).where(
            CallConfirmation.call_id == call_id).order_by(CallConfirmation.id))).all()
        approvals = (await s.scalars(select(CallApproval).where(
            CallApproval.call_id == call_id).order_by(CallApproval.id))).all()
        review = await _review(s, call_id)
    call = {**_row(c), "customer_name": row[1], "service_name": row[2], "agent": row[3]}
    timeline = [{"seq": e.seq, "at": utc_text(e.at), "actor": e.actor, "kind": e.kind,
                 "payload": e.payload, "hash": e.hash, "prev_hash": e.prev_hash}
                for e in events]
    breaks = await verify_call(sm, call_id, at_rest_key)
    evidence: list[Path] = []
    for directory in sorted({Path(r.path).parent for r in recs}):
        evidence += sorted(p for p in directory.glob(f"{call_id}-chk_*.jpg") if p.is_file())
    return Collected(
        call_id=call_id, call=call, timeline=timeline,
        checks={"steps": [_row(x) for x in steps], "confirmations": [_row(x) for x in confs],
                "approvals": [_row(x) for x in approvals]},
        review=review,
        recordings=[{**_row(r, skip=("id",)), "path": r.path} for r in recs],
        evidence=evidence, breaks=[b.to_dict() for b in breaks], head=head(events))


async def _review(s: Any, call_id: str) -> dict[str, Any] | None:
    """Review results of the call (supervision tables), when the module has them."""
    try:
        from cloudcounter.audit import review
    except ImportError:
        return None
    return await review.package_review(s, call_id)


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False,
                      default=str).encode()


def write_package(data: Collected, out: Path, at_rest_key: bytes | None,
                  audit_key: bytes | None, actor: str) -> dict[str, Any]:
    """Write the zip (blocking: run it in a thread); returns the manifest."""
    from cloudcounter.recordings import crypto
    files: dict[str, dict[str, Any]] = {}
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        def put(name: str, blob: bytes) -> None:
            z.writestr(name, blob)
            files[name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}

        def put_file(name: str, path: Path) -> None:
            digest, size = hashlib.sha256(), 0
            with z.open(name, "w", force_zip64=True) as w:
                if crypto.is_encrypted(path):
                    if at_rest_key is None:
                        raise crypto.AtRestError(f"{path.name} is sealed but no "
                                                 "CLOUDCOUNTER_AT_REST_KEY is set")
                    with crypto.EncryptedReader(path, at_rest_key) as r:
                        for i in range(r.chunks):
                            chunk = r.chunk(i)
                            digest.update(chunk)
                            size += len(chunk)
                            w.write(chunk)
                else:
                    with open(path, "rb") as f:
                        while chunk := f.read(CHUNK):
                            digest.update(chunk)
                            size += len(chunk)
                            w.write(chunk)
            files[name] = {"sha256": digest.hexdigest(), "size": size}

        put("call.json", _json(data.call))
        put("timeline.json", _json(data.timeline))
        put("checks.json", _json(data.checks))
        if data.review is not None:
            put("review.json", _json(data.review))
        recordings = []
        for r in data.recordings:
            path = Path(r["path"])
            entry = {k: v for k, v in r.items() if k != "path"}
            if r.get("purged_at") is None and path.is_file():
                name = f"recordings/{r['public_id']}-{r['participant']}-{r['segment']}.webm"
                put_file(name, path)
                entry["file"] = name
            else:
                entry["file"] = None
            recordings.append(entry)
        put("recordings.json", _json(recordings))
        for path in data.evidence:
            put_file(f"evidence/{path.name}", path)
        manifest = {"format": FORMAT, "call_id": data.call_id,
                    "created_at": utc_text(datetime.now(timezone.utc)), "created_by": actor,
                    "files": files,
                    "chain": {"head_seq": data.head[0] if data.head else 0,
                              "head_hash": data.head[1] if data.head else None,
                              "verified_at_export": not data.breaks,
                              "breaks_at_export": data.breaks},
                    "key_id": key_id(audit_key) if audit_key else None}
        blob = _json(manifest)
        z.writestr(MANIFEST, blob)
        if audit_key:
            z.writestr(SIGNATURE, hmac.new(audit_key, blob, hashlib.sha256).hexdigest())
    tmp.replace(out)
    manifest["sha256"] = hashlib.sha256(blob).hexdigest()
    return manifest


@dataclass
class PackageReport:
    ok: bool = True
    signed: bool | None = None  # None: not checked (no key given)
    problems: list[str] = field(default_factory=list)
    call_id: str | None = None

    def fail(self, text: str) -> None:
        self.ok = False
        self.problems.append(text)


def verify_package(path: Path, audit_key: bytes | None) -> PackageReport:
    """Check a package offline (see the module's docstring)."""
    rep = PackageReport()
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        rep.fail(f"not a readable zip: {exc}")
        return rep
    with z:
        names = set(z.namelist())
        if MANIFEST not in names:
            rep.fail("no manifest.json")
            return rep
        blob = z.read(MANIFEST)
        try:
            manifest = json.loads(blob)
            files = manifest["files"]
            rep.call_id = manifest["call_id"]
        except (ValueError, KeyError, TypeError):
            rep.fail("manifest.json does not parse")
            return rep
        if manifest.get("format") != FORMAT:
            rep.fail(f"unknown format {manifest.get('format')!r}")
        if audit_key is not None:
            if SIGNATURE not in names:
                rep.signed = False
                rep.fail("the package is not signed")
            else:
                want = hmac.new(audit_key, blob, hashlib.sha256).hexdigest()
                rep.signed = hmac.compare_digest(z.read(SIGNATURE).decode("ascii", "replace")
                                                 .strip(), want)
                if not rep.signed:
                    rep.fail("manifest.sig does not match manifest.json (wrong key, or the "
                             "manifest was changed)")
        for extra in sorted(names - set(files) - {MANIFEST, SIGNATURE}):
            rep.fail(f"{extra}: not in the manifest")
        for name, info in sorted(files.items()):
            if name not in names:
                rep.fail(f"{name}: missing")
                continue
            digest = hashlib.sha256()
            with z.open(name) as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != info.get("sha256"):
                rep.fail(f"{name}: SHA-256 does not match the manifest")
        if "timeline.json" not in names:
            rep.fail("timeline.json: missing")
            return rep
        try:
            timeline = json.loads(z.read("timeline.json"))
            rows = [SimpleNamespace(
                call_id=rep.call_id, seq=int(e["seq"]),
                at=datetime.strptime(e["at"], "%Y-%m-%dT%H:%M:%S.%fZ"), actor=e["actor"],
                kind=e["kind"], payload=e["payload"], hash=e["hash"], prev_hash=e["prev_hash"])
                for e in timeline]
            recordings = json.loads(z.read("recordings.json")) \
                if "recordings.json" in names else []
        except (ValueError, KeyError, TypeError):
            rep.fail("timeline.json or recordings.json does not parse")
            return rep
        for b in verify_events(str(rep.call_id), rows):
            rep.fail(f"timeline: {b}")
        h = head(rows)
        chain = manifest.get("chain") or {}
        if (h[0] if h else 0) != chain.get("head_seq") or \
                (h[1] if h else None) != chain.get("head_hash"):
            rep.fail("timeline: its last event is not the head the manifest names")
        chained = chained_recordings(rows)
        for r in recordings:
            file_name = r.get("file")
            if not file_name or r.get("sha256") is None:
                continue
            expected = chained.get((r.get("segment"), r.get("participant")))
            got = (files.get(file_name) or {}).get("sha256")
            if expected is None:
                rep.fail(f"{file_name}: its SHA-256 is not on the timeline")
            elif got != expected:
                rep.fail(f"{file_name}: not the recording the timeline holds")
        for fname, want in chained_evidence(rows).items():
            got = (files.get(f"evidence/{fname}") or {}).get("sha256")
            if got is not None and got != want:
                rep.fail(f"evidence/{fname}: not the file the timeline holds")
    return rep


async def export_call(sm: async_sessionmaker, journal: Any, call_id: str, out: Path,
                      at_rest_key: bytes | None, audit_key: bytes | None,
                      actor: str) -> dict[str, Any]:
    """Write a call's package to ``out`` and put the export on the call's timeline
    (``audit.exported``, with the manifest's SHA-256)."""
    import asyncio
    data = await collect(sm, call_id, at_rest_key)
    manifest = await asyncio.to_thread(write_package, data, out, at_rest_key, audit_key, actor)
    journal.event(call_id, actor, "audit.exported", {
        "manifest_sha256": manifest["sha256"], "files": len(manifest["files"]),
        "head_seq": manifest["chain"]["head_seq"], "signed": audit_key is not None,
        "verified": manifest["chain"]["verified_at_export"]})
    await journal.flush()
    return manifest
