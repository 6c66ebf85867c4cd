"""The ``cloudcounter audit`` commands (docs/supervision.md): verify the record, write the
daily digest, export and check evidence packages."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta, timezone
from typing import Any


def _cli() -> Any:
    from cloudcounter.hub import cli
    return cli


def _report(breaks: list[Any], checked: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": not breaks, "checked": checked,
                          "breaks": [b.to_dict() for b in breaks]}, indent=2))
    elif breaks:
        for b in breaks:
            print(f"BREAK {b}")
        print(f"{len(breaks)} break(s) in {checked}")
    else:
        print(f"ok: {checked}, the chain is whole")
    return 1 if breaks else 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from cloudcounter.audit.verify import verify_all, verify_call
    cli = _cli()
    if bool(args.call) == bool(args.all):
        raise cli.CliError("name a call, or --all")
    s = cli.settings()
    if args.all:
        n, breaks = cli.run_db(lambda sm: verify_all(sm, s.at_rest_key_bytes,
                                                     not args.no_files, s.audit_key_bytes))
        return _report(breaks, f"{n} call(s) and the digest log", args.json)
    breaks = cli.run_db(lambda sm: verify_call(sm, args.call, s.at_rest_key_bytes,
                                               not args.no_files))
    return _report(breaks, f"call {args.call}", args.json)


def cmd_audit_digest(args: argparse.Namespace) -> int:
    from cloudcounter.audit.verify import write_digest
    cli = _cli()
    s = cli.settings()
    try:
        day = (date.fromisoformat(args.date) if args.date
               else datetime.now(timezone.utc).date() - timedelta(days=1))
    except ValueError:
        raise cli.CliError("--date is YYYY-MM-DD") from None
    d = cli.run_db(lambda sm: write_digest(sm, day, cli.cli_actor(), s.audit_key_bytes))
    print(f"digest of {d.day}: {len(d.entries)} call(s), root {d.root}"
          + (f", signed (key {d.key_id})" if d.signature else ", not signed "
             "(no CLOUDCOUNTER_AUDIT_KEY)"))
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cloudcounter.audit.package import export_call
    from cloudcounter.db.journal import DbJournal
    cli = _cli()
    s = cli.settings()
    out = Path(args.out)
    if not out.parent.is_dir():
        raise cli.CliError(f"no directory {out.parent}")

    async def go(sm: Any) -> dict[str, Any]:
        return await export_call(sm, DbJournal(sm), args.call, out, s.at_rest_key_bytes,
                                 s.audit_key_bytes, cli.cli_actor())
    m = cli.run_db(go)
    print(f"{out}: {len(m['files'])} file(s), manifest sha256 {m['sha256']}, "
          + ("signed" if s.audit_key else "NOT signed (no CLOUDCOUNTER_AUDIT_KEY)")
          + ("" if m["chain"]["verified_at_export"] else
             f"; WARNING: {len(m['chain']['breaks_at_export'])} break(s) in the record"))
    return 0


def cmd_audit_export_search(args: argparse.Namespace) -> int:
    """One package per ended call of a search (period, service, agent) into a directory."""
    from pathlib import Path

    from sqlalchemy import select

    from cloudcounter.audit.package import export_call
    from cloudcounter.db.journal import DbJournal
    from cloudcounter.db.models import CallSession, User
    cli = _cli()
    s = cli.settings()
    start = _day(args.date_from, date.today())
    end = _day(args.date_to, start)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    async def go(sm: Any) -> list[tuple[str, str]]:
        lo = datetime.combine(start, datetime.min.time(), timezone.utc)
        hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), timezone.utc)
        stmt = (select(CallSession.id).outerjoin(User, User.id == CallSession.agent_id)
                .where(CallSession.state == "ended", CallSession.requested_at >= lo,
                       CallSession.requested_at < hi).order_by(CallSession.id))
        if args.service:
            stmt = stmt.where(CallSession.service_code == args.service)
        if args.agent:
            stmt = stmt.where(User.username == args.agent)
        async with sm() as session:
            ids = list((await session.scalars(stmt.limit(args.limit))).all())
        journal, done = DbJournal(sm), []
        for cid in ids:
            m = await export_call(sm, journal, cid, out / f"{cid}.zip", s.at_rest_key_bytes,
                                  s.audit_key_bytes, cli.cli_actor())
            done.append((cid, m["sha256"]))
        return done
    done = cli.run_db(go)
    with open(out / "index.txt", "w", encoding="ascii") as f:
        for cid, sha in done:
            f.write(f"{cid}.zip  manifest sha256 {sha}\n")
            print(f"{out / (cid + '.zip')}  manifest sha256 {sha}")
    print(f"{len(done)} package(s) in {out}")
    return 0


def cmd_audit_verify_package(args: argparse.Namespace) -> int:
    """Offline: no database, no hub settings; the key from --key-file or the
    environment (CLOUDCOUNTER_AUDIT_KEY)."""
    import os
    from pathlib import Path

    from cloudcounter.audit.package import verify_package
    cli = _cli()
    key: bytes | None = None
    if args.key_file:
        try:
            key = Path(args.key_file).read_bytes().strip()
        except OSError as exc:
            raise cli.CliError(f"cannot read the key file: {exc}") from None
    elif os.environ.get("CLOUDCOUNTER_AUDIT_KEY"):
        key = os.environ["CLOUDCOUNTER_AUDIT_KEY"].encode()
    if not Path(args.file).is_file():
        raise cli.CliError(f"no file {args.file}")
    rep = verify_package(Path(args.file), key)
    if args.json:
        print(json.dumps({"ok": rep.ok, "call_id": rep.call_id, "signed": rep.signed,
                          "problems": rep.problems}, indent=2))
    else:
        for p in rep.problems:
            print(f"BROKEN {p}")
        sig = {True: "signature valid", False: "signature INVALID",
               None: "signature not checked (no key)"}[rep.signed]
        print(f"{'ok' if rep.ok else 'BROKEN'}: package of {rep.call_id}, {sig}")
    return 0 if rep.ok else 1


def _day(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _cli().CliError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def cmd_audit_sample(args: argparse.Namespace) -> int:
    """Select the ended calls of a period for review (idempotent: run it daily)."""
    from cloudcounter.audit.review import System, run_sampling
    from cloudcounter.db.journal import DbJournal
    cli = _cli()
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    start = _day(args.date_from, yesterday)
    end = _day(args.date_to, start)
    if end < start:
        raise cli.CliError("--to is before --from")
    who = System(f"system:sampling ({cli.cli_actor()})"[:80])

    async def go(sm: Any) -> list[dict[str, Any]]:
        journal = DbJournal(sm)
        tasks = await run_sampling(sm, journal, start, end + timedelta(days=1), who)
        await journal.flush()
        return tasks
    tasks = cli.run_db(go)
    for t in tasks:
        print(f"{t['call_id']}  {t['rule']:<22} v{t['rule_version']}  "
              f"{t['assignee'] or '(unassigned)':<12} due {t['due_at'][:10]}  {t['reason']}")
    print(f"{len(tasks)} call(s) selected from {start} to {end}")
    return 0


def cmd_audit_escalate(args: argparse.Namespace) -> int:
    from cloudcounter.audit.review import System, escalate_overdue
    from cloudcounter.db.journal import DbJournal
    cli = _cli()

    async def go(sm: Any) -> list[int]:
        journal = DbJournal(sm)
        ids = await escalate_overdue(sm, journal, System(cli.cli_actor()))
        await journal.flush()
        return ids
    ids = cli.run_db(go)
    print(f"{len(ids)} overdue finding(s) escalated" + (f": {ids}" if ids else ""))
    return 0


def cmd_audit_retention(args: argparse.Namespace) -> int:
    from cloudcounter.audit import retention
    cli = _cli()
    s = cli.settings()
    if args.retention == "set":
        r = cli.run_db(lambda sm: retention.set_rule(sm, args.service, args.days,
                                                     cli.cli_actor()))
        print(f"{r['service']}: recordings and evidence kept {r['days']} days")
    else:
        for r in cli.run_db(lambda sm: retention.rules(sm, s.retention_default_days)):
            print(f"{r['service']:<20} {r['days'] or 'kept':>6}  ({r['source']})")
    return 0


def cmd_audit_hold(args: argparse.Namespace) -> int:
    from cloudcounter.audit import retention
    from cloudcounter.db.journal import DbJournal
    cli = _cli()
    actor = cli.cli_actor()

    async def go(sm: Any) -> Any:
        journal = DbJournal(sm)
        if args.hold == "add":
            h = await retention.add_hold(sm, args.call, args.reason, actor)
            journal.event(args.call, actor, "retention.hold_added",
                          {"hold_id": h["id"], "reason": args.reason})
        elif args.hold == "release":
            h = await retention.release_hold(sm, args.id, actor)
            journal.event(h["call_id"], actor, "retention.hold_released", {"hold_id": h["id"]})
        else:
            return await retention.holds(sm)
        await journal.flush()
        return h
    out = cli.run_db(go)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def cmd_audit_purge(args: argparse.Namespace) -> int:
    from cloudcounter.audit import retention
    from cloudcounter.db.journal import DbJournal
    cli = _cli()
    s = cli.settings()

    async def go(sm: Any) -> Any:
        return await retention.purge(sm, DbJournal(sm), s.retention_default_days,
                                     cli.cli_actor(), dry_run=not args.apply)
    rep = cli.run_db(go)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
        return 0
    verb = "would purge" if rep.dry_run else "purged"
    for p in rep.purged:
        print(f"{verb} {p['call_id']} under {p['rule']}: {len(p['recordings'])} "
              f"recording(s), {len(p['evidence'])} evidence file(s)")
    for k in rep.kept:
        print(f"kept {k['call_id']} ({k['why']}), expired under {k['rule']}")
    print(f"{len(rep.purged)} call(s) {verb}, {len(rep.kept)} kept"
          + (" (dry run: --apply to delete)" if rep.dry_run else ""))
    return 0


def extend(sub: Any) -> None:
    """Add ``cloudcounter audit ...`` to the CLI's parsers."""
    au = sub.add_parser("audit", help="post-event supervision: verify the record, digests, "
                        "evidence packages").add_subparsers(dest="audit", required=True)
    av = au.add_parser("verify", help="verify a call's hash chain and recordings, or all "
                       "calls and the digest log (exit status 1 on a break)")
    av.add_argument("call", nargs="?")
    av.add_argument("--all", action="store_true")
    av.add_argument("--no-files", action="store_true",
                    help="do not hash the recording files (rows and chain only)")
    av.add_argument("--json", action="store_true")
    av.set_defaults(fn=cmd_audit_verify)
    ad = au.add_parser("digest", help="append the daily digest of a day's calls (default: "
                       "yesterday, UTC), signed with CLOUDCOUNTER_AUDIT_KEY when set")
    ad.add_argument("--date", help="YYYY-MM-DD")
    ad.set_defaults(fn=cmd_audit_digest)
    ae = au.add_parser("export", help="write a call's evidence package (zip: recordings, "
                       "timeline, check evidence, review, signed manifest of SHA-256)")
    ae.add_argument("call")
    ae.add_argument("--out", required=True, help="the zip file to write")
    ae.set_defaults(fn=cmd_audit_export)
    xs = au.add_parser("export-search", help="one evidence package per ended call of a "
                       "search (period, service, agent) into a directory")
    xs.add_argument("--from", dest="date_from", help="YYYY-MM-DD (default: today)")
    xs.add_argument("--to", dest="date_to", help="YYYY-MM-DD (inclusive)")
    xs.add_argument("--service")
    xs.add_argument("--agent", help="the agent's username")
    xs.add_argument("--limit", type=int, default=500)
    xs.add_argument("--out", required=True, help="the directory to write into")
    xs.set_defaults(fn=cmd_audit_export_search)
    ap = au.add_parser("verify-package", help="check an evidence package offline (exit "
                       "status 1 when it is not intact)")
    ap.add_argument("file")
    ap.add_argument("--key-file", help="the audit key (default: CLOUDCOUNTER_AUDIT_KEY)")
    ap.add_argument("--json", action="store_true")
    ap.set_defaults(fn=cmd_audit_verify_package)
    sa = au.add_parser("sample", help="select ended calls for review by the sampling rules "
                       "(default: yesterday, UTC; idempotent)")
    sa.add_argument("--from", dest="date_from", help="YYYY-MM-DD")
    sa.add_argument("--to", dest="date_to", help="YYYY-MM-DD (inclusive)")
    sa.set_defaults(fn=cmd_audit_sample)
    es = au.add_parser("escalate", help="escalate findings past their due date")
    es.set_defaults(fn=cmd_audit_escalate)
    rt = au.add_parser("retention", help="retention periods per service").add_subparsers(
        dest="retention", required=True)
    rt.add_parser("list", help="each service's period").set_defaults(fn=cmd_audit_retention)
    rs = rt.add_parser("set", help="keep a service's recordings and evidence this many days")
    rs.add_argument("service")
    rs.add_argument("days", type=int)
    rs.set_defaults(fn=cmd_audit_retention)
    ho = au.add_parser("hold", help="legal holds (never purged while held)").add_subparsers(
        dest="hold", required=True)
    ho.add_parser("list", help="active holds").set_defaults(fn=cmd_audit_hold)
    ha = ho.add_parser("add", help="put a call under legal hold")
    ha.add_argument("call")
    ha.add_argument("--reason", required=True)
    ha.set_defaults(fn=cmd_audit_hold)
    hr = ho.add_parser("release", help="release a hold")
    hr.add_argument("id", type=int)
    hr.set_defaults(fn=cmd_audit_hold)
    pu = au.add_parser("purge", help="delete expired recordings and evidence (a dry run "
                       "unless --apply); the timeline and hashes stay")
    pu.add_argument("--apply", action="store_true")
    pu.add_argument("--json", action="store_true")
    pu.set_defaults(fn=cmd_audit_purge)
