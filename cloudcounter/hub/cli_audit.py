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
