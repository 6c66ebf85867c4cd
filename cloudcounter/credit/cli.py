"""``cloudcounter credit-service serve``: the reference credit service (docs/credit-system.md)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from cloudcounter.credit.service import create_credit_app
    from cloudcounter.hub.cli import CliError
    from cloudcounter.hub.settings import is_loopback

    if not args.no_demo_data and not is_loopback(args.host):
        raise CliError("the demo applications are served on a loopback address only: use "
                       "--host 127.0.0.1, or --no-demo-data")
    token = os.environ.get("CLOUDCOUNTER_CREDIT_SERVICE_TOKEN", "")
    app = create_credit_app(args.db, token=token, seed=not args.no_demo_data)
    print(f"reference credit service on http://{args.host}:{args.port}  (database {args.db}"
          f"{', bearer token required' if token else ''})", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


def extend(sub: Any) -> None:
    cs = sub.add_parser("credit-service", help="the reference credit service").add_subparsers(
        dest="credit_service", required=True)
    sv = cs.add_parser("serve", help="serve the reference credit service (a bank points "
                       "CLOUDCOUNTER_CREDIT_URL at its own system instead)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8090)
    sv.add_argument("--db", default="var/credit-service.db", help="its SQLite file")
    sv.add_argument("--no-demo-data", action="store_true",
                    help="do not seed the demo applications of the demo customers")
    sv.set_defaults(fn=cmd_serve)


def cmd_roster(args: argparse.Namespace) -> int:
    """The roster of loan agents (appointment capacity): set, clear, show."""
    from datetime import datetime, timezone

    from cloudcounter.business.appointments import AppointmentBook, parse_day, parse_hhmm
    from cloudcounter.hub.cli import run_db

    day = parse_day(args.day) if args.day else datetime.now(timezone.utc).date()

    async def go(sm: Any) -> Any:
        book = AppointmentBook(sm)
        if args.roster == "set":
            return [await book.set_shift(args.username, day, parse_hhmm(args.start),
                                         parse_hhmm(args.end))]
        if args.roster == "clear":
            return await book.clear_shift(args.username, day)
        return await book.roster(day, args.days)

    out = run_db(go)
    if args.roster == "clear":
        print(f"{out} shift(s) of {args.username} on {day} removed")
    else:
        for r in out:
            print(f"{r['day']}  {r['from']}-{r['to']} UTC  {r['username']}")
    return 0


def extend_roster(sub: Any) -> None:
    ro = sub.add_parser("roster", help="the roster of loan agents (interview appointments)"
                        ).add_subparsers(dest="roster", required=True)
    rs = ro.add_parser("set", help="roster an agent with the loans skill on a day (UTC)")
    rs.add_argument("username")
    rs.add_argument("day", help="YYYY-MM-DD")
    rs.add_argument("start", help="HH:MM (UTC)")
    rs.add_argument("end", help="HH:MM (UTC), 24:00 for the end of the day")
    rc = ro.add_parser("clear", help="remove an agent's shift on a day")
    rc.add_argument("username")
    rc.add_argument("day")
    sh = ro.add_parser("show", help="the roster from a day")
    sh.add_argument("--day", help="YYYY-MM-DD (default: today, UTC)")
    sh.add_argument("--days", type=int, default=7)
    for p in (rs, rc, sh):
        p.set_defaults(fn=cmd_roster)
