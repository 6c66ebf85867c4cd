"""The administration commands of the ``cloudcounter`` CLI: the same operations and the
same validation as the admin console and its API (:mod:`cloudcounter.hub.admin`), acting
as ``cli:<user>``; every change is an ``admin.*`` security event."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from cloudcounter.hub.admin.audit import Actor, NoSessionControl


def _cli() -> Any:
    from cloudcounter.hub import cli
    return cli


def actor() -> Actor:
    return Actor(_cli().cli_actor())


def model(cls: type[Any], **fields: Any) -> Any:
    """The admin API's schema, built from command-line arguments (same refusals)."""
    try:
        return cls.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False)[:5])
        raise _cli().CliError(problems) from None


def skills(value: str | None) -> list[str] | None:
    return None if value is None else [k.strip() for k in value.split(",") if k.strip()]


def run(fn: Callable[[Any], Any]) -> Any:
    return _cli().run_db(fn)


def show(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# -- users --------------------------------------------------------------------------------
def cmd_user_add(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import users
    from cloudcounter.hub.admin.schemas import UserCreate
    req = model(UserCreate, username=args.username, role=args.role, display_name=args.name,
                skills=skills(args.skills) or [], password=args.password,
                preferred_skills=skills(getattr(args, "preferred", None)) or [])
    user, generated = run(lambda sm: users.create_user(sm, actor(), req))
    print(f"user {user['username']} ({user['role']}) created")
    if generated:
        print(f"password: {generated}  (shown once: hand it over out of band)")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import users
    for u in run(users.list_users):
        flags = ("disabled " if u["disabled"] else "") + ("totp " if u["totp_enrolled"] else "")
        print(f"{u['username']:<20} {u['role']:<8} {','.join(u['skills']):<40} "
              f"{u['live_sessions']} session(s) {flags}")
    return 0


def cmd_user_edit(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import users
    from cloudcounter.hub.admin.schemas import UserUpdate
    req = model(UserUpdate, display_name=args.name, role=args.role, skills=skills(args.skills),
                preferred_skills=skills(args.preferred))
    user = run(lambda sm: users.update_user(sm, actor(), args.username, req,
                                            NoSessionControl()))
    print(f"user {user['username']}: {user['role']}, skills {','.join(user['skills']) or '-'}"
          f", preferred {','.join(user['preferred_skills']) or '-'}")
    return 0


def cmd_user_state(args: argparse.Namespace) -> int:
    """user disable|enable|end-sessions USERNAME: the hub notices within a few seconds
    (CLOUDCOUNTER_SESSION_CACHE_S for requests, _SESSION_CHECK_INTERVAL_S for sockets)."""
    from cloudcounter.hub.admin import users
    action, control = args.user, NoSessionControl()
    if action == "end-sessions":
        user, ended = run(lambda sm: users.end_sessions(sm, actor(), args.username, control))
    else:
        user, ended = run(lambda sm: users.set_disabled(sm, actor(), args.username,
                                                        action == "disable", control))
    state = "disabled" if user["disabled"] else "enabled"
    print(f"user {user['username']} {state}; {ended} session(s) ended")
    return 0


def cmd_user_password(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import users
    from cloudcounter.hub.admin.schemas import PasswordSet
    password = None if args.generate else (args.password or _cli()._ask_password())
    req = model(PasswordSet, password=password)
    user, generated, ended = run(lambda sm: users.set_password(
        sm, actor(), args.username, req.password, NoSessionControl()))
    print(f"password of {user['username']} changed; {ended} session(s) ended")
    if generated:
        print(f"password: {generated}  (shown once: hand it over out of band)")
    return 0


def cmd_user_role(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import users
    from cloudcounter.hub.admin.schemas import UserUpdate
    user = run(lambda sm: users.update_user(sm, actor(), args.username,
                                            model(UserUpdate, role=args.role),
                                            NoSessionControl(), kind="admin.role"))
    print(f"user {user['username']} is now {user['role']}")
    return 0


def cmd_user_totp(args: argparse.Namespace) -> int:
    """Enrol (or re-enrol) the account's TOTP second factor; prints the secret and an
    otpauth:// URI for the authenticator app. Hand it over out of band."""
    from cloudcounter.hub.admin import users
    user, secret, uri = run(lambda sm: users.enrol_totp(sm, actor(), args.username))
    print(f"TOTP enrolled for {user['username']}\nsecret: {secret}\nuri:    {uri}")
    return 0


# -- services -----------------------------------------------------------------------------
def cmd_service_list(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import services
    for s in run(services.list_services):
        print(f"{s['code']:<16} {s['name']:<32} skill {s['required_skill']:<10} "
              f"priority {s['priority']}  target {s['target_answer_s']} s  "
              f"checks {','.join(s['auto_checks']) or '-'}  routing {_routing_text(s['routing'])}")
    return 0


def _routing_text(r: dict[str, Any]) -> str:
    parts = [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in r.items()
             if v not in (None, [])]
    return " ".join(parts) or "-"


ROUTING_FLAGS = (("fallback", "fallback_skills"), ("widen_after", "widen_after_s"),
                 ("overflow", "overflow_skills"), ("overflow_after", "overflow_after_s"),
                 ("max_offers", "max_consecutive_offers"))


def _routing(args: argparse.Namespace, current: dict[str, Any] | None) -> Any:
    """The routing rules the flags give, over ``current`` (None when no flag is given).
    Times and the limit take ``none`` for no value; skill lists ``''`` for none."""
    given = {key: getattr(args, flag) for flag, key in ROUTING_FLAGS
             if getattr(args, flag) is not None}
    if not given:
        return None
    rules = dict(current or {})
    for key, raw in given.items():
        if key.endswith("_skills"):
            rules[key] = skills(raw)
        elif raw.strip().lower() in ("", "none"):
            rules[key] = None
        else:
            try:
                rules[key] = int(raw) if key == "max_consecutive_offers" else float(raw)
            except ValueError:
                raise _cli().CliError(f"routing.{key}: {raw!r} is not a number") from None
    return rules


def _checks(value: str | None) -> list[str] | None:
    return None if value is None else [c.strip() for c in value.split(",") if c.strip()]


def cmd_service_add(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import services
    from cloudcounter.hub.admin.schemas import ServiceCreate
    req = model(ServiceCreate, code=args.code, name=args.name, kind=args.kind,
                required_skill=args.skill, priority=args.priority,
                auto_checks=_checks(args.checks), target_answer_s=args.target,
                routing=_routing(args, None))
    s = run(lambda sm: services.create_service(sm, actor(), req))
    print(f"service {s['code']} created (restart the hub or edit it from the console for "
          "running hubs to see it)")
    return 0


def cmd_service_edit(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import services
    from cloudcounter.hub.admin.schemas import ServiceUpdate
    routing = None
    if any(getattr(args, flag) is not None for flag, _ in ROUTING_FLAGS):
        listed = {x["code"]: x for x in run(services.list_services)}
        if args.code not in listed:
            raise _cli().CliError(f"no service {args.code!r}")
        routing = _routing(args, listed[args.code]["routing"])
    req = model(ServiceUpdate, name=args.name, kind=args.kind, required_skill=args.skill,
                priority=args.priority, auto_checks=_checks(args.checks),
                target_answer_s=args.target, routing=routing)
    s = run(lambda sm: services.update_service(sm, actor(), args.code, req))
    print(f"service {s['code']}: skill {s['required_skill']}, priority {s['priority']}, "
          f"target {s['target_answer_s']} s, routing {_routing_text(s['routing'])}")
    return 0


# -- customers ----------------------------------------------------------------------------
def _photo(path: str) -> tuple[bytes, str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise _cli().CliError(f"photo {path!r} does not exist")
    kind = "image/png" if p.suffix.lower() == ".png" else "image/jpeg"
    return p.read_bytes(), kind


async def _enrolled(data: bytes, kind: str) -> Any:
    from cloudcounter.hub.admin.customers import prepare_photo
    from cloudcounter.hub.customers import Enroller
    enroller = Enroller()
    try:
        return await prepare_photo(data, kind, enroller)
    finally:
        await enroller.stop()


def cmd_customer_add(args: argparse.Namespace) -> int:
    """The photo is checked first: a refused photo adds no customer."""
    from cloudcounter.hub.admin import customers
    from cloudcounter.hub.admin.schemas import CustomerCreate
    req = model(CustomerCreate, id=args.id, name=args.name, phone=args.phone,
                id_number=args.id_number, risk_level=args.risk, card_last4=args.card_last4)
    photo = _photo(args.photo) if args.photo else None
    settings = _cli().settings()

    async def go(sm: Any) -> str:
        prepared = await _enrolled(*photo) if photo else None
        c = await customers.create_customer(sm, actor(), req)
        if prepared is not None:
            await customers.store_photo(sm, actor(), c["id"], prepared,
                                        Path(settings.customer_photos_dir),
                                        settings.at_rest_key_bytes)
        return str(c["id"])
    print(run(go))
    return 0


def cmd_customer_photo(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import customers
    from cloudcounter.db import repo
    data, kind = _photo(args.photo)
    settings = _cli().settings()

    async def go(sm: Any) -> dict[str, Any]:
        await repo.get_customer(sm, args.customer_id)
        prepared = await _enrolled(data, kind)
        return await customers.store_photo(sm, actor(), args.customer_id, prepared,
                                           Path(settings.customer_photos_dir),
                                           settings.at_rest_key_bytes)
    c = run(go)
    print(f"reference photo of {c['id']} enrolled")
    return 0


def cmd_customer_edit(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import customers
    from cloudcounter.hub.admin.schemas import CustomerUpdate
    req = model(CustomerUpdate, name=args.name, phone=args.phone, id_number=args.id_number,
                risk_level=args.risk, card_last4=args.card_last4)
    c = run(lambda sm: customers.update_customer(sm, actor(), args.customer_id, req))
    print(f"customer {c['id']} updated")
    return 0


# -- webhooks -----------------------------------------------------------------------------
def cmd_webhook(args: argparse.Namespace) -> int:
    from cloudcounter.hub.admin import webhooks
    from cloudcounter.hub.admin.schemas import WebhookCreate, WebhookUpdate
    from cloudcounter.webhooks import subscriptions
    allow_http = _cli().settings().webhook_allow_http
    action = args.webhook
    if action == "list":
        show(run(subscriptions.listing))
    elif action == "add":
        req = model(WebhookCreate, name=args.name, url=args.url,
                    event_types=_checks(args.events))
        hook, secret = run(lambda sm: webhooks.create(sm, actor(), req, allow_http))
        print(f"webhook {hook['id']} created\nsecret: {secret}  (shown once: give it to "
              "the receiver to check signatures)")
    elif action == "edit":
        active = {"on": True, "off": False}.get(args.active or "")
        req = model(WebhookUpdate, name=args.name, url=args.url,
                    event_types=_checks(args.events), active=active)
        show(run(lambda sm: webhooks.update(sm, actor(), args.id, req, allow_http)))
    elif action == "delete":
        n = run(lambda sm: webhooks.delete(sm, actor(), args.id))
        print(f"webhook {args.id} deleted; {n} pending deliveries cancelled")
    elif action == "rotate-secret":
        print(f"secret: {run(lambda sm: webhooks.rotate_secret(sm, actor(), args.id))}  "
              "(the previous one also signs for 24 hours)")
    elif action == "test":
        print(f"test event {run(lambda sm: webhooks.send_test(sm, actor(), args.id, None))} "
              "queued (a running hub sends it within a second)")
    elif action == "deliveries":
        show(run(lambda sm: subscriptions.deliveries(sm, args.id, state=args.state,
                                                     limit=args.limit)))
    elif action == "redeliver":
        show(run(lambda sm: webhooks.redeliver(sm, actor(), args.id, None)))
    return 0


def extend(sub: Any, user: Any, customer: Any, service: Any) -> None:
    """Add the administration commands to the CLI's parsers."""
    ul = user.add_parser("list", help="staff accounts")
    ul.set_defaults(fn=cmd_user_list)
    ue = user.add_parser("edit", help="change a user's display name, role or skills")
    ue.add_argument("username")
    ue.add_argument("--name", help="display name")
    ue.add_argument("--role", choices=["agent", "lead", "auditor", "admin"])
    ue.add_argument("--skills", help="comma-separated skills (agents only; '' for none)")
    ue.add_argument("--preferred", help="comma-separated preferred skills: calls needing "
                    "them come first (some of the skills; '' for none)")
    ue.set_defaults(fn=cmd_user_edit)
    user.choices["add"].add_argument(
        "--preferred", help="comma-separated preferred skills (some of --skills)")

    sl = service.add_parser("list", help="the service catalogue")
    sl.set_defaults(fn=cmd_service_list)
    for name, fn in (("add", cmd_service_add), ("edit", cmd_service_edit)):
        sp = service.add_parser(name, help=f"{name} a service type")
        sp.add_argument("code")
        sp.add_argument("--name", required=name == "add")
        sp.add_argument("--skill", required=name == "add", help="the skill it requires")
        sp.add_argument("--kind", choices=["counter_service", "loan_interview"])
        sp.add_argument("--priority", type=int, help="0-9 (higher first)")
        sp.add_argument("--checks", help="automatic checks: identity,liveness ('' for none)")
        sp.add_argument("--target", type=int, help="target answer time in seconds")
        # routing rules (docs/api.md, Routing rules); edit changes only the rules given
        sp.add_argument("--fallback", help="fallback skills: their agents may take a call "
                        "that has waited --widen-after ('' for none)")
        sp.add_argument("--widen-after", help="seconds (0-3600; none: the target time; "
                        "0: no widening)")
        sp.add_argument("--overflow", help="overflow skills: a second group of agents "
                        "('' for none)")
        sp.add_argument("--overflow-after", help="seconds (0-3600; none: no overflow)")
        sp.add_argument("--max-offers", help="calls of this service in a row for one agent "
                        "(1-100; none: no limit)")
        sp.set_defaults(fn=fn)

    cp = customer.add_parser("photo", help="enrol or replace a customer's reference photo")
    cp.add_argument("customer_id")
    cp.add_argument("photo", help="JPEG or PNG showing exactly one face")
    cp.set_defaults(fn=cmd_customer_photo)
    ce = customer.add_parser("edit", help="change a customer's details")
    ce.add_argument("customer_id")
    ce.add_argument("--name")
    ce.add_argument("--phone")
    ce.add_argument("--id-number")
    ce.add_argument("--risk", choices=["low", "medium", "high"])
    ce.add_argument("--card-last4")
    ce.set_defaults(fn=cmd_customer_edit)

    wh = sub.add_parser("webhook", help="webhook subscriptions (docs/operations.md)"
                        ).add_subparsers(dest="webhook", required=True)
    wh.add_parser("list", help="subscriptions and their health").set_defaults(fn=cmd_webhook)
    wa = wh.add_parser("add", help="subscribe a URL to events; prints the signing secret")
    wa.add_argument("--name", required=True)
    wa.add_argument("--url", required=True)
    wa.add_argument("--events", required=True, help="comma-separated: call.ended,check.* or *")
    wa.set_defaults(fn=cmd_webhook)
    we = wh.add_parser("edit", help="change a subscription")
    we.add_argument("id", type=int)
    we.add_argument("--name")
    we.add_argument("--url")
    we.add_argument("--events")
    we.add_argument("--active", choices=["on", "off"])
    we.set_defaults(fn=cmd_webhook)
    for name, text in (("delete", "delete a subscription (its pending deliveries are "
                                  "cancelled)"),
                       ("rotate-secret", "a new signing secret (the old one signs 24 h more)"),
                       ("test", "send a webhook.test event")):
        w = wh.add_parser(name, help=text)
        w.add_argument("id", type=int)
        w.set_defaults(fn=cmd_webhook)
    wd = wh.add_parser("deliveries", help="the delivery log of a subscription")
    wd.add_argument("id", type=int)
    wd.add_argument("--state", choices=["pending", "delivered", "failed", "cancelled"])
    wd.add_argument("--limit", type=int, default=20)
    wd.set_defaults(fn=cmd_webhook)
    wr = wh.add_parser("redeliver", help="send a delivery again (given up, or lost by the "
                       "receiver)")
    wr.add_argument("id", type=int, help="the delivery id")
    wr.set_defaults(fn=cmd_webhook)
