"""``cloudcounter credit-service serve``: the reference credit service (docs/credit-system.md)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from cloudcounter.credit.service import create_credit_app

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
