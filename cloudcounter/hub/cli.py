"""The ``cloudcounter`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Sequence

from cloudcounter.errors import CloudCounterError
from cloudcounter.hub.settings import Settings, SettingsError


class CliError(Exception):
    """Printed as ``error: ...`` with exit status 2."""


def settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def run_db(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``fn(sessionmaker)`` against the configured database."""
    from cloudcounter.db.engine import make_engine, make_sessionmaker

    async def go() -> Any:
        engine = make_engine(settings().database_url)
        try:
            return await fn(make_sessionmaker(engine))
        finally:
            await engine.dispose()
    return asyncio.run(go())


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from cloudcounter.db.migrate import upgrade
    from cloudcounter.hub.app import create_app
    from cloudcounter.hub.demo import credentials_text

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port),
                                   ("tls_cert", args.tls_cert), ("tls_key", args.tls_key)) if v}
    if args.media_workers is not None:
        overrides["media_workers"] = args.media_workers
    try:
        s = Settings.from_env(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    ssl_context = tls_context(s)
    from cloudcounter.logs import configure
    configure(s.log_level, s.log_format, s.node_id,
              [s.secret_key, s.customer_token_secret, s.at_rest_key, s.metrics_token])
    if s.demo:
        upgrade(s.database_url)
    base = f"{'https' if ssl_context else 'http'}://{s.host}:{s.port}"
    print(f"cloudcounter hub on {base}  (database {s.database_url.split('@')[-1]}, "
          f"demo mode {'on' if s.demo else 'off'})", flush=True)
    if s.demo:
        print(credentials_text(base), flush=True)
    web.run_app(create_app(s), host=s.host, port=s.port, print=None, access_log=None,
                loop=new_event_loop(s.event_loop), ssl_context=ssl_context,
                keepalive_timeout=s.keepalive_timeout_s)
    return 0


def cmd_media_worker(args: argparse.Namespace) -> int:
    from cloudcounter.media.workers.process import run

    if args.fd is None and not args.redis and not os.environ.get("CLOUDCOUNTER_REDIS_URL"):
        raise CliError("a media worker needs --redis URL (the hub starts local ones itself)")
    kind = os.environ.get("CLOUDCOUNTER_EVENT_LOOP", "uvloop")
    return run(args, loop_factory=lambda: new_event_loop(kind))


def tls_context(s: Settings) -> Any:
    """TLS for deployments without a terminating proxy (TLS 1.2 or newer)."""
    if not s.tls_cert:
        return None
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(s.tls_cert, s.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise CliError(f"cannot load the TLS certificate and key: {exc}") from None
    return ctx


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """uvloop where available: it halves the event loop's cost per media datagram."""
    if kind == "uvloop":
        try:
            import uvloop
            return uvloop.new_event_loop()
        except ImportError:
            logging.getLogger(__name__).warning("uvloop is not installed; using asyncio's loop")
    return asyncio.new_event_loop()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from cloudcounter.db.migrate import upgrade
    s = settings()
    upgrade(s.database_url, args.revision)
    print(f"database at {args.revision}: {s.database_url.split('@')[-1]}")
    return 0


def cmd_demo_seed(args: argparse.Namespace) -> int:
    from cloudcounter.hub.demo import seed
    s = settings()
    if not s.demo:
        raise CliError("demo seed creates accounts with published passwords: it runs only in "
                       "demo mode (CLOUDCOUNTER_DEMO=1), never on a production database")
    created = run_db(lambda sm: seed(sm, Path(s.faces_dir)))
    print("\n".join(created) if created else "demo data already present")
    return 0


def cli_actor() -> str:
    import getpass
    try:
        return f"cli:{getpass.getuser()}"[:80]
    except (KeyError, OSError):
        return "cli"


def _ask_password() -> str:
    import getpass
    first = getpass.getpass("new password: ")
    if first != getpass.getpass("again: "):
        raise CliError("the passwords differ")
    return first


def cmd_journal(args: argparse.Namespace) -> int:
    from cloudcounter.db import journal

    if args.journal == "replay":
        written, refused = run_db(journal.replay_dead_letters)
        print(f"{written} operation(s) written, {refused} refused again")
        return 0 if not refused else 1
    rows = run_db(lambda sm: journal.dead_letters(sm, include_replayed=args.all))
    for r in rows:
        print(f"{r['id']:>6} {r['at']} {r['op']:7} {r['call_id']} "
              f"{'replayed ' + r['replayed_at'] if r['replayed_at'] else ''} {r['error']}")
    if not rows:
        print("no dead letters")
    return 0


def cmd_security_events(args: argparse.Namespace) -> int:
    from cloudcounter.db.security_log import query

    rows = run_db(lambda sm: query(sm, kind=args.kind, actor=args.actor, limit=args.limit))
    for r in reversed(rows):
        print(f"{r['at']} {r['kind']:22} {r['outcome']:8} {r['actor']:24} "
              f"{r['source']:15} {r['target']} {r['details']}")
    return 0


def cmd_customer_change(args: argparse.Namespace) -> int:
    """Record a change to a customer's account with its date (a risk signal)."""
    from datetime import datetime, timezone

    from cloudcounter.business.store import BusinessStore, checked_kind
    from cloudcounter.db import repo
    try:
        at = datetime.fromisoformat(args.at) if args.at else datetime.now(timezone.utc)
    except ValueError:
        raise CliError("--at takes an ISO date or date-time, e.g. 2026-11-20") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    kind = checked_kind(args.kind)

    async def go(sm: Any) -> None:
        await repo.get_customer(sm, args.customer_id)
        await BusinessStore(sm).add_account_change(args.customer_id, kind, at.timestamp(),
                                                   args.channel, detail=args.detail)
    run_db(go)
    print(f"account change {kind} of {args.customer_id} recorded at {at.isoformat()}")
    return 0


def read_yaml(path: str) -> Any:
    import yaml
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from None


def write_yaml(path: str, data: Any, header: str) -> None:
    import yaml
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    if path == "-":
        print(text, end="")
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc}") from None


def cmd_script_export(args: argparse.Namespace) -> int:
    from cloudcounter.business.store import BusinessStore
    script = run_db(lambda sm: BusinessStore(sm).script(args.code, args.version))
    write_yaml(args.file, script.to_dict(),
               f"# {args.code} script version {script.version} (sha256 {script.sha256})\n")
    if args.file != "-":
        print(f"{args.code} script version {script.version} written to {args.file}")
    return 0


def cmd_script_import(args: argparse.Namespace) -> int:
    import getpass

    from cloudcounter.business.store import BusinessStore
    data = read_yaml(args.file)
    actor = f"cli:{getpass.getuser()}"
    script = run_db(lambda sm: BusinessStore(sm).import_script(args.code, data, actor,
                                                               args.note))
    print(f"{args.code} script version {script.version} is current "
          f"({len(script.steps)} steps, sha256 {script.sha256[:12]})")
    return 0


def cmd_script_list(args: argparse.Namespace) -> int:
    from cloudcounter.business.store import BusinessStore
    rows = run_db(lambda sm: BusinessStore(sm).versions(args.code))
    if not rows:
        print(f"{args.code} has no script")
    for r in rows:
        print(f"v{r['version']}  {r['created_at'][:19]}  {r['created_by']:<20} "
              f"{r['steps']:>2} steps  {r['title']}" + (f"  ({r['note']})" if r["note"] else ""))
    return 0


def cmd_rules_export(args: argparse.Namespace) -> int:
    from cloudcounter.business.store import BusinessStore
    rules = run_db(lambda sm: BusinessStore(sm).rules(args.version))
    write_yaml(args.file, rules.to_dict(),
               f"# risk rules version {rules.version} (sha256 {rules.sha256})\n")
    if args.file != "-":
        print(f"risk rules version {rules.version} written to {args.file}")
    return 0


def cmd_rules_import(args: argparse.Namespace) -> int:
    import getpass

    from cloudcounter.business.store import BusinessStore
    data = read_yaml(args.file)
    rules = run_db(lambda sm: BusinessStore(sm).import_rules(data, f"cli:{getpass.getuser()}",
                                                             args.note))
    print(f"risk rules version {rules.version} are current ({len(rules.rules)} rules)")
    return 0


def cmd_token_customer(args: argparse.Namespace) -> int:
    from cloudcounter.db import repo
    from cloudcounter.hub.auth import mint_customer_token
    s = settings()
    run_db(lambda sm: repo.get_customer(sm, args.customer_id))
    services = [x for x in args.services.split(",") if x] if args.services else None
    if args.ttl and args.ttl > s.customer_token_max_ttl_s:
        raise CliError(f"--ttl is at most CLOUDCOUNTER_CUSTOMER_TOKEN_MAX_TTL_S "
                       f"({s.customer_token_max_ttl_s} s): the hub refuses longer-lived tokens")
    subject = None
    if args.subject:
        import json

        from cloudcounter.business.subject import parse_subject
        try:
            subject = parse_subject(json.loads(args.subject))
        except ValueError as exc:
            raise CliError(f"--subject: {exc}") from None
    print(mint_customer_token(s.customer_token_secret, args.customer_id,
                              args.ttl or s.customer_token_ttl_s, services, args.priority,
                              subject=subject))
    return 0


def run_sim(args: argparse.Namespace,
            fn: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> int:
    import aiohttp

    from cloudcounter.sim.client import SimError
    try:
        return asyncio.run(fn(args))
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach the hub at {args.url}: {exc}") from None
    except SimError as exc:
        raise CliError(str(exc)) from None


def cmd_sim_customer(args: argparse.Namespace) -> int:
    from cloudcounter.sim.customer import run_customer_cli
    return run_sim(args, run_customer_cli)


def cmd_sim_agent(args: argparse.Namespace) -> int:
    from cloudcounter.sim.agent import run_agent_cli
    return run_sim(args, run_agent_cli)


def cmd_sim_lead(args: argparse.Namespace) -> int:
    from cloudcounter.sim.lead import run_lead_cli
    return run_sim(args, run_lead_cli)


def cmd_vision_eval(args: argparse.Namespace) -> int:
    from cloudcounter.vision.evaluate import main as eval_main
    return eval_main([*([args.dir] if args.dir else []), *args.rest])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudcounter", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("serve", help="run the hub")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS directly")
    sp.add_argument("--tls-key", help="PEM private key of --tls-cert")
    sp.add_argument("--media-workers", type=int, metavar="N",
                    help="media worker processes (0: media in the hub process)")
    sp.set_defaults(fn=cmd_serve)

    mw = sub.add_parser("media-worker", help="a media worker process (docs/media.md)")
    mw.add_argument("--redis", help="register on this Redis and take calls from its hubs")
    mw.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # the supervisor's socket
    mw.add_argument("--id", default="", help="the worker's id (default: host-pid)")
    mw.add_argument("--capacity", type=int, default=0, help="calls it takes at most")
    mw.set_defaults(fn=cmd_media_worker)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db", required=True)
    up = db.add_parser("upgrade", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(fn=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo", required=True)
    demo.add_parser("seed", help="create demo users, customers and services").set_defaults(
        fn=cmd_demo_seed)

    user = sub.add_parser("user", help="staff accounts").add_subparsers(dest="user", required=True)
    ua = user.add_parser("add", help="add an agent, team lead, auditor or admin")
    ua.add_argument("--role", required=True, choices=["agent", "lead", "auditor", "admin"])
    ua.add_argument("--username", required=True)
    ua.add_argument("--password", help="(generated and printed once when omitted)")
    ua.add_argument("--name", help="display name")
    ua.add_argument("--skills", help="comma-separated skills (agents only)")
    ua.set_defaults(fn=cmd_user_add)
    for action, text in (("disable", "disable an account and end its sessions"),
                         ("enable", "enable a disabled account"),
                         ("end-sessions", "sign a user out everywhere")):
        up = user.add_parser(action, help=text)
        up.add_argument("username")
        up.set_defaults(fn=cmd_user_state)
    upw = user.add_parser("password", help="set a user's password (ends their sessions)")
    upw.add_argument("username")
    upw.add_argument("--password", help="(asked for when omitted)")
    upw.add_argument("--generate", action="store_true", help="generate one; printed once")
    upw.set_defaults(fn=cmd_user_password)
    ur = user.add_parser("role", help="change a user's role (takes effect at once)")
    ur.add_argument("username")
    ur.add_argument("role", choices=["agent", "auditor", "admin", "lead"])
    ur.set_defaults(fn=cmd_user_role)
    ut = user.add_parser("totp", help="enrol a TOTP second factor; prints the secret")
    ut.add_argument("username")
    ut.set_defaults(fn=cmd_user_totp)

    jn = sub.add_parser("journal", help="the call journal").add_subparsers(dest="journal",
                                                                          required=True)
    jd = jn.add_parser("dead-letters", help="operations the database refused")
    jd.add_argument("--all", action="store_true", help="also those already replayed")
    jd.set_defaults(fn=cmd_journal)
    jn.add_parser("replay", help="write the dead letters again (after fixing the cause)"
                  ).set_defaults(fn=cmd_journal)

    sec = sub.add_parser("security", help="the security event log").add_subparsers(
        dest="security", required=True)
    se = sec.add_parser("events", help="recent security events, oldest first")
    se.add_argument("--kind", help="e.g. login.failed, admin.*")
    se.add_argument("--actor")
    se.add_argument("--limit", type=int, default=50)
    se.set_defaults(fn=cmd_security_events)

    cu = sub.add_parser("customer", help="customers").add_subparsers(dest="customer",
                                                                      required=True)
    ca = cu.add_parser("add", help="add a customer; prints the new id")
    ca.add_argument("--id", help="the bank's customer number (default: generated)")
    ca.add_argument("--name", required=True)
    ca.add_argument("--photo", help="reference photo (the ID photo on file)")
    ca.add_argument("--phone")
    ca.add_argument("--id-number", help="ID number (stored masked)")
    ca.add_argument("--risk", default="low", choices=["low", "medium", "high"])
    ca.add_argument("--card-last4", help="last four digits of the customer's card")
    ca.set_defaults(fn=cmd_customer_add)
    cc = cu.add_parser("change", help="record a change to a customer's account, with its date")
    cc.add_argument("customer_id")
    cc.add_argument("--kind", required=True,
                    help="contact_details, phone, email, address, ... (a short code)")
    cc.add_argument("--at", help="when (ISO date or date-time, UTC; default now)")
    cc.add_argument("--channel", default="branch", help="where it was changed")
    cc.add_argument("--detail", help="free text (at most 256 characters)")
    cc.set_defaults(fn=cmd_customer_change)

    svc = sub.add_parser("service", help="service types").add_subparsers(dest="service",
                                                                          required=True)
    scr = svc.add_parser("script", help="service scripts (YAML)").add_subparsers(
        dest="script", required=True)
    se = scr.add_parser("export", help="write a service's script (the current version) as YAML")
    se.add_argument("code")
    se.add_argument("file", help="a path, or - for standard output")
    se.add_argument("--version", type=int, help="an earlier version")
    se.set_defaults(fn=cmd_script_export)
    si = scr.add_parser("import", help="validate a YAML script and store it as the next "
                        "version (all or nothing)")
    si.add_argument("code")
    si.add_argument("file")
    si.add_argument("--note", help="why (kept with the version)")
    si.set_defaults(fn=cmd_script_import)
    sl = scr.add_parser("list", help="a service's script versions")
    sl.add_argument("code")
    sl.set_defaults(fn=cmd_script_list)

    risk = sub.add_parser("risk", help="the fraud-risk engine").add_subparsers(dest="risk",
                                                                              required=True)
    rr = risk.add_parser("rules", help="risk rules and weights (YAML)").add_subparsers(
        dest="rules", required=True)
    re_ = rr.add_parser("export", help="write the current rules as YAML")
    re_.add_argument("file", help="a path, or - for standard output")
    re_.add_argument("--version", type=int, help="an earlier version")
    re_.set_defaults(fn=cmd_rules_export)
    ri = rr.add_parser("import", help="validate YAML rules and store them as the next version")
    ri.add_argument("file")
    ri.add_argument("--note", help="why (kept with the version)")
    ri.set_defaults(fn=cmd_rules_import)

    tok = sub.add_parser("token", help="mint tokens").add_subparsers(dest="token", required=True)
    tc = tok.add_parser("customer", help="a customer token, as the bank's app backend would")
    tc.add_argument("customer_id")
    tc.add_argument("--services", help="comma-separated service codes allowed (default: any)")
    tc.add_argument("--ttl", type=int, help="seconds (default CLOUDCOUNTER_CUSTOMER_TOKEN_TTL_S)")
    tc.add_argument("--priority", type=int, default=0, choices=range(10))
    tc.add_argument("--subject", help="what the call is about, as JSON: "
                    '{"reference", "amount", "currency", "payee", "purpose"}')
    tc.set_defaults(fn=cmd_token_customer)

    sim = sub.add_parser("sim", help="simulated clients").add_subparsers(dest="sim", required=True)
    sc = sim.add_parser("customer", help="a simulated customer")
    sc.add_argument("--url", default="http://127.0.0.1:8080")
    who = sc.add_mutually_exclusive_group(required=True)
    who.add_argument("--token")
    who.add_argument("--customer", help="demo mode: get a token for this demo customer id")
    sc.add_argument("--service", required=True)
    sc.add_argument("--seconds", type=float, default=5.0, help="time to stay in the call")
    sc.add_argument("--max-wait", type=float, default=120.0, help="give up after waiting this long")
    sc.add_argument("--video", help="video file to send (pre-encoded where possible)")
    sc.add_argument("--no-media", action="store_true", help="signalling only")
    sc.add_argument("--confirm", choices=["yes", "no", "silent"], default="yes",
                    help="answer statements shown on screen: confirm, decline, or never "
                    "answer (like a protocol 1.0 app)")
    sc.set_defaults(fn=cmd_sim_customer)
    sa = sim.add_parser("agent", help="a simulated agent")
    sa.add_argument("--url", default="http://127.0.0.1:8080")
    sa.add_argument("--username", required=True)
    sa.add_argument("--password", required=True)
    sa.add_argument("--calls", type=int, default=1, help="exit after this many calls")
    sa.add_argument("--accept-delay", type=float, default=0.5)
    sa.add_argument("--hangup-after", type=float, help="end each call after S seconds "
                    "(default: let the customer end it)")
    sa.add_argument("--video", help="video file to send")
    sa.add_argument("--no-media", action="store_true", help="signalling only")
    sa.add_argument("--timeout", type=float, default=600.0)
    sa.add_argument("--steps", choices=["all", "skip-required", "none"], default="all",
                    help="work through the service script: every step, none of the required "
                    "ones (the wrap-up then gives a skip reason), or none at all")
    sa.add_argument("--concern", help="raise \"I have concerns\" with this note in each call")
    sa.add_argument("--approval-wait", type=float, default=60.0,
                    help="at risk level high, ask a team lead and wait this long")
    sa.add_argument("--outcome", choices=["pass", "refer", "decline"], default="pass",
                    help="car-loan interviews: answer the questions and record this outcome")
    sa.set_defaults(fn=cmd_sim_agent)
    sl_ = sim.add_parser("lead", help="a simulated team lead deciding approval requests")
    sl_.add_argument("--url", default="http://127.0.0.1:8080")
    sl_.add_argument("--username", required=True)
    sl_.add_argument("--password", required=True)
    sl_.add_argument("--decision", choices=["approve", "refuse"], default="approve")
    sl_.add_argument("--count", type=int, default=1, help="exit after this many decisions")
    sl_.add_argument("--timeout", type=float, default=600.0)
    sl_.set_defaults(fn=cmd_sim_lead)

    extend_admin(sub, user, cu, svc)
    from cloudcounter.credit.cli import extend as extend_credit, extend_roster
    extend_credit(sub)
    extend_roster(sub)
    extend_audit(sub)

    vis = sub.add_parser("vision", help="face analysis").add_subparsers(dest="vision",
                                                                         required=True)
    ve = vis.add_parser("eval", help="measure identity, liveness and presentation-attack "
                        "detection on the labelled face data sets (docs/vision.md)")
    ve.add_argument("dir", nargs="?", help="the faces data set (default: the setting)")
    ve.add_argument("rest", nargs=argparse.REMAINDER)
    ve.set_defaults(fn=cmd_vision_eval)
    return p


from cloudcounter.hub.cli_admin import (  # noqa: E402 - the administration commands
    cmd_customer_add, cmd_user_add, cmd_user_password, cmd_user_role, cmd_user_state,
    cmd_user_totp, extend as extend_admin,
)
from cloudcounter.hub.cli_audit import extend as extend_audit  # noqa: E402 - supervision


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (CliError, CloudCounterError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
