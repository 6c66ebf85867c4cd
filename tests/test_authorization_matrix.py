"""The authorization matrix (issue 13): every HTTP endpoint and every socket event, for
every kind of caller, in one table. docs/security.md shows the same table.

Add a row when you add an endpoint or an event; a new role is a new column. Cells are an
HTTP status, an acknowledgement (``ok`` or the error code), or ``connect:<code>`` when
that caller cannot even open the namespace. Within a row the callers act in the order of
:data:`RUN_ORDER` (the call's owners last), so a row that ends the call (hang-up) can sit
at the end of the table.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from cloudcounter.agents import accounts
from cloudcounter.db.models import Role
from cloudcounter.sim.client import Connection
from tests.conftest import Hub
from tests.test_audit_trail import CALL_ID as ENDED, CHECK, recorded_call
from tests.test_sdp_offers import OFFER

pytestmark = pytest.mark.integration

PRINCIPALS = ("none", "customer", "other_customer", "agent", "other_agent", "auditor",
              "admin", "lead")
RUN_ORDER = ("none", "other_customer", "other_agent", "auditor", "admin", "lead", "customer",
             "agent")
LEAD = ("lena", "steady-lantern-47")
STAFF = {"agent": "alice", "other_agent": "bob", "auditor": "audrey", "admin": "admin",
         "lead": "lena"}
CUSTOMERS = {"customer": "cus_demo_joe", "other_customer": "cus_demo_eileen"}
NO = "connect:unauthenticated"
ROLE = "connect:wrong_role"


def row(*cells: Any) -> dict[str, Any]:
    assert len(cells) == len(PRINCIPALS)
    return dict(zip(PRINCIPALS, cells))


EVIDENCE = f"/api/calls/{ENDED}/evidence/{ENDED}-{CHECK}.jpg"
#          none  customer  other_c  agent  other_a  auditor  admin  lead
HTTP: list[tuple[str, str, Any, dict[str, Any]]] = [
    ("GET", "/healthz", None, row(200, 200, 200, 200, 200, 200, 200, 200)),
    ("GET", "/api/services", None, row(200, 200, 200, 200, 200, 200, 200, 200)),
    ("GET", "/api/demo/customers", None, row(200, 200, 200, 200, 200, 200, 200, 200)),
    ("POST", "/api/demo/customer-token", {"customer_id": "cus_demo_grace"},
     row(200, 200, 200, 200, 200, 200, 200, 200)),
    ("GET", "/api/me", None, row(401, 401, 401, 200, 200, 200, 200, 200)),
    ("GET", "/api/queue", None, row(401, 401, 401, 200, 200, 200, 200, 200)),
    ("GET", "/api/calls", None, row(401, 401, 401, 403, 403, 200, 200, 403)),
    ("GET", "/api/calls?q=Obama", None, row(401, 401, 401, 403, 403, 200, 200, 403)),
    ("GET", f"/api/calls/{ENDED}", None, row(401, 401, 401, 403, 403, 200, 200, 403)),
    ("GET", "/api/recordings/{rec}", None, row(401, 401, 401, 403, 403, 200, 200, 403)),
    ("GET", EVIDENCE, None, row(401, 401, 401, 200, 403, 200, 200, 403)),
    ("GET", "/api/admin/users", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("GET", "/api/admin/security-events", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("GET", "/api/admin/journal/dead-letters", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/users/carol/role", {"role": "agent"},
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/users/carol/end-sessions", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/users/carol/disable", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/users/carol/enable", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/session/refresh", None, row(401, 401, 401, 401, 401, 401, 401, 401)),
    # administration (issue 15): only an administrator gets past the role check; 400 and
    # 409 are the admin's body or state refused after it
    ("POST", "/api/admin/users", {"username": "matrix", "role": "auditor",
                                  "password": "matrix-pass-phrase-1"},
     row(401, 401, 401, 403, 403, 403, 201, 403)),
    ("PATCH", "/api/admin/users/carol", {"display_name": "Carol D."},
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/users/carol/password", {"password": "carol-new-pass-phrase-1"},
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/users/carol/totp", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("GET", "/api/admin/services", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/services", {"code": "matrix", "name": "Matrix",
                                     "required_skill": "cards"},
     row(401, 401, 401, 403, 403, 403, 201, 403)),
    ("PATCH", "/api/admin/services/card_loss", {"target_answer_s": 30},
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("GET", "/api/admin/customers", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/customers", {"name": "Matrix Customer"},
     row(401, 401, 401, 403, 403, 403, 201, 403)),
    ("PATCH", "/api/admin/customers/cus_demo_grace", {"risk_level": "medium"},
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("PUT", "/api/admin/customers/cus_demo_grace/photo", {"not": "an image"},
     row(401, 401, 401, 403, 403, 403, 400, 403)),
    ("GET", "/api/admin/webhooks", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/webhooks", {"name": "matrix", "url": "http://127.0.0.1:9/hook",
                                     "event_types": ["call.ended"], "active": False},
     row(401, 401, 401, 403, 403, 403, 201, 403)),
    ("PATCH", "/api/admin/webhooks/1", {"name": "matrix 2"},
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/webhooks/1/test", None, row(401, 401, 401, 403, 403, 403, 202, 403)),
    ("POST", "/api/admin/webhooks/1/rotate-secret", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("GET", "/api/admin/webhooks/1/deliveries", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("GET", "/api/admin/webhooks/deliveries/1", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("POST", "/api/admin/webhooks/deliveries/1/redeliver", None,
     row(401, 401, 401, 403, 403, 403, 409, 403)),
    ("DELETE", "/api/admin/webhooks/1", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    # the roster of loan agents (appointments): administrators only
    ("GET", "/api/admin/roster", None, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("PUT", "/api/admin/roster", {"username": "bob", "day": "2026-12-24", "start": "09:00",
                                  "end": "12:00"}, row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("DELETE", "/api/admin/roster/bob/2026-12-24", None,
     row(401, 401, 401, 403, 403, 403, 200, 403)),
    ("GET", "/metrics", None, row(401, 401, 401, 401, 401, 401, 401, 401)),
]

CALL = {"call_id": "{live}"}
PROMPT_ANSWER = {"call_id": "{live}", "prompt_id": "prm_" + "0" * 16, "step_id": "statement",
                 "sha256": "0" * 64, "answer": "confirm"}
MEDIA = {"call_id": "{live}", "type": "offer", "sdp": OFFER}
#          none  customer  other_c  agent  other_a  auditor  admin  lead
EVENTS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("/customer", "call:request", {"service": "card_loss"},
     row(NO, "already_in_call", "ok", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "media:offer", MEDIA,
     row(NO, "ok", "unknown_call", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "agent:status", {"status": "away"},
     row(NO, "unknown_event", "unknown_event", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "call:note", {"call_id": "{live}", "text": "x"},
     row(NO, "unknown_event", "unknown_event", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/agent", "queue:snapshot", {}, row(NO, ROLE, ROLE, "ok", "ok", ROLE, ROLE, "ok")),
    ("/agent", "agent:status", {"status": "away"},
     row(NO, ROLE, ROLE, "invalid_state", "ok", ROLE, ROLE, "ok")),
    ("/agent", "call:accept", CALL, row(NO, ROLE, ROLE, "offer_expired", "offer_expired",
                                        ROLE, ROLE, "offer_expired")),
    ("/agent", "call:decline", CALL, row(NO, ROLE, ROLE, "offer_expired", "offer_expired",
                                         ROLE, ROLE, "offer_expired")),
    ("/agent", "call:note", {"call_id": "{live}", "text": "checked ID"},
     row(NO, ROLE, ROLE, "ok", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "media:offer", MEDIA,
     row(NO, ROLE, ROLE, "ok", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "check:identity", CALL,
     row(NO, ROLE, ROLE, "vision_unavailable", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "check:liveness", CALL,
     row(NO, ROLE, ROLE, "vision_unavailable", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "call:wrapup", {"call_id": "{live}", "outcome": "resolved"},
     row(NO, ROLE, ROLE, "no_wrap_up", "no_wrap_up", ROLE, ROLE, "no_wrap_up")),
    # service flows (protocol 1.1)
    ("/customer", "call:callback", CALL,
     row(NO, "not_waiting", "forbidden", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "auth:refresh", {},
     row(NO, "ok", "ok", ROLE, ROLE, ROLE, ROLE, ROLE)),  # both have a call by now
    ("/customer", "prompt:answer", PROMPT_ANSWER,
     row(NO, "prompt_not_open", "unknown_call", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/agent", "flow:snapshot", CALL,
     row(NO, ROLE, ROLE, "ok", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "step:complete", {"call_id": "{live}", "step_id": "identity",
                                 "note": "ID card held to the camera"},
     row(NO, ROLE, ROLE, "ok", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "step:prompt", {"call_id": "{live}", "step_id": "identity"},
     row(NO, ROLE, ROLE, "step_not_open", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "risk:concern", {"call_id": "{live}", "note": "hesitant"},
     row(NO, ROLE, ROLE, "ok", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "approval:request", {"call_id": "{live}", "note": "please check"},
     row(NO, ROLE, ROLE, "ok", "unknown_call", ROLE, ROLE, "unknown_call")),
    # appointments (protocol 1.3): a customer sees free slots and only their own bookings;
    # the customer is the token's (no payload names one)
    ("/customer", "appointment:slots", {}, row(NO, "ok", "ok", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "appointment:list", {}, row(NO, "ok", "ok", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "appointment:book", {"starts_at": "2020-01-01T09:00:00Z"},
     row(NO, "slot_in_past", "slot_in_past", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "appointment:move", {"appointment_id": "apt_" + "0" * 16,
                                       "starts_at": "2020-01-01T09:00:00Z"},
     row(NO, "slot_in_past", "slot_in_past", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/customer", "appointment:cancel", {"appointment_id": "apt_" + "0" * 16},
     row(NO, "unknown_appointment", "unknown_appointment", ROLE, ROLE, ROLE, ROLE, ROLE)),
    # the car-loan interview (protocol 1.3): the live call is a card-loss call, so even its
    # own agent reads no application in it (tests/test_credit_interview.py: a loan call)
    ("/agent", "credit:lookup", CALL, row(NO, ROLE, ROLE, "unknown_call", "unknown_call",
                                          ROLE, ROLE, "unknown_call")),
    ("/agent", "credit:view", CALL, row(NO, ROLE, ROLE, "unknown_call", "unknown_call",
                                        ROLE, ROLE, "unknown_call")),
    ("/agent", "credit:answer", {"call_id": "{live}", "question": "purpose", "answer": "x"},
     row(NO, ROLE, ROLE, "unknown_call", "unknown_call", ROLE, ROLE, "unknown_call")),
    ("/agent", "credit:outcome", {"call_id": "{live}", "outcome": "pass"},
     row(NO, ROLE, ROLE, "unknown_call", "unknown_call", ROLE, ROLE, "unknown_call")),
    # a lead takes over a call whose agent dropped (protocol 1.5); alice is still in it
    ("/agent", "call:take_over", CALL, row(NO, ROLE, ROLE, "lead_only", "lead_only",
                                           ROLE, ROLE, "not_dropped")),
    ("/supervisor", "monitor:offer", {"call_id": "{live}", "participant": "customer",
                                      "type": "offer", "sdp": OFFER},
     row(NO, ROLE, ROLE, ROLE, ROLE, ROLE, ROLE, "invalid_offer")),  # a sendrecv offer
    ("/supervisor", "monitor:stop", CALL, row(NO, ROLE, ROLE, ROLE, ROLE, ROLE, ROLE, "ok")),
    ("/supervisor", "wallboard:snapshot", {},
     row(NO, ROLE, ROLE, ROLE, ROLE, ROLE, ROLE, "ok")),
    ("/supervisor", "approvals:list", {}, row(NO, ROLE, ROLE, ROLE, ROLE, ROLE, ROLE, "ok")),
    ("/supervisor", "approval:decide", {"approval_id": 999_999, "decision": "approve"},
     row(NO, ROLE, ROLE, ROLE, ROLE, ROLE, ROLE, "unknown_approval")),
    # last: these end the call (the owners act after the others within a row)
    ("/customer", "call:hangup", CALL, row(NO, "ok", "forbidden", ROLE, ROLE, ROLE, ROLE, ROLE)),
    ("/agent", "call:hangup", CALL, row(NO, ROLE, ROLE, "unknown_call", "unknown_call",
                                        ROLE, ROLE, "unknown_call")),
    ("/agent", "call:wrapup", {"call_id": "{live}", "outcome": "escalated"},
     row(NO, ROLE, ROLE, "ok", "no_wrap_up", ROLE, ROLE, "no_wrap_up")),
]


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids) if "{" in value and not value.startswith("v=") else value
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


async def credentials(hub: Hub) -> dict[str, str | None]:
    await accounts.create(hub.ctx.sm, username=LEAD[0], password=LEAD[1], role=Role.LEAD,
                          display_name="Lena Lead")
    creds: dict[str, str | None] = {"none": None}
    for who, cid in CUSTOMERS.items():
        creds[who] = hub.customer_token(cid)
    async with aiohttp.ClientSession() as http:
        for who, username in STAFF.items():
            from tests.test_sessions import PASSWORDS
            password = LEAD[1] if username == LEAD[0] else PASSWORDS[username]
            async with http.post(hub.url + "/api/login", json={"username": username,
                                                               "password": password}) as r:
                assert r.status == 200, await r.text()
                creds[who] = (await r.json())["token"]
    return creds


async def open_socket(hub: Hub, namespace: str, token: str | None) -> Connection | str:
    """A connection, or ``connect:<code>`` when the hub refuses it."""
    conn = Connection(hub.url, namespace, token or "")
    errors: list[Any] = []
    conn.sio.on("connect_error", lambda data: errors.append(data), namespace=namespace)
    try:
        await conn.connect()
    except socketio.exceptions.ConnectionError:
        await conn.sio.disconnect()
        return f"connect:{errors[0]['data']['code']}" if errors else "connect:?"
    return conn


async def test_the_authorization_matrix(hub_factory: Any, tmp_path: Path) -> None:
    hub = await hub_factory(vision_workers=0, metrics_token="m" * 32)
    rec_id, _ = await recorded_call(hub, tmp_path)
    creds = await credentials(hub)
    sockets = {(ns, who): await open_socket(hub, ns, creds[who])
               for ns in ("/customer", "/agent", "/supervisor") for who in PRINCIPALS}
    alice, joe = sockets[("/agent", "agent")], sockets[("/customer", "customer")]
    assert isinstance(alice, Connection) and isinstance(joe, Connection)
    assert (await alice.call("agent:status", {"status": "available"}))["ok"]
    live = (await joe.call("call:request", {"service": "card_loss"}))["call_id"]
    await alice.expect("call:offer", timeout=10)
    assert (await alice.call("call:accept", {"call_id": live}))["ok"]
    ids = {"live": live, "rec": rec_id}

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for method, path, body, _ in HTTP:
        url = hub.url + fill(path, ids)
        cells: dict[str, Any] = {}
        for who in RUN_ORDER:
            headers = {"Authorization": f"Bearer {creds[who]}"} if creds[who] else {}
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.request(method, url, json=body) as r:
                    cells[who] = r.status
        found[(method, path)] = cells
    for namespace, event, payload, _ in EVENTS:
        cells = {}
        for who in RUN_ORDER:
            conn = sockets[(namespace, who)]
            if isinstance(conn, str):
                cells[who] = conn
                continue
            reply = await conn.call(event, fill(payload, ids))
            cells[who] = "ok" if reply.get("ok") else reply["error"]["code"]
        found[(namespace, event)] = cells

    expected = {(m, p): cells for m, p, _, cells in HTTP}
    expected.update({(ns, e): cells for ns, e, _, cells in EVENTS})
    wrong = {key: {w: (found[key][w], want[w]) for w in PRINCIPALS if found[key][w] != want[w]}
             for key, want in expected.items()}
    wrong = {k: v for k, v in wrong.items() if v}
    assert not wrong, "cells (found, expected): " + repr(wrong)
    for conn in sockets.values():
        if isinstance(conn, Connection):
            await conn.close()
    await asyncio.sleep(0)


LABELS = {"none": "none", "customer": "customer", "other_customer": "other customer",
          "agent": "agent (the call's)", "other_agent": "other agent", "auditor": "auditor",
          "admin": "admin", "lead": "lead"}


def markdown() -> str:
    """The matrix as the table in docs/security.md."""
    def cell(v: Any) -> str:
        return f"✗ {v[8:]}" if isinstance(v, str) and v.startswith("connect:") else str(v)

    def shown(path: str) -> str:
        return path.replace(f"{ENDED}-{CHECK}.jpg", "{file}").replace(ENDED, "{call}")
    lines = ["| endpoint or event | " + " | ".join(LABELS[p] for p in PRINCIPALS) + " |",
             "|---" * (len(PRINCIPALS) + 1) + "|"]
    for method, path, _, cells in HTTP:
        lines.append(f"| `{method} {shown(path)}` | " +
                     " | ".join(cell(cells[p]) for p in PRINCIPALS) + " |")
    for ns, event, _, cells in EVENTS:
        lines.append(f"| `{ns}` `{event}` | " +
                     " | ".join(cell(cells[p]) for p in PRINCIPALS) + " |")
    return "\n".join(lines)


def test_docs_show_the_same_matrix() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs/security.md").read_text()
    assert markdown() in doc, (
        "docs/security.md is out of date; print the table with: .venv/bin/python -c "
        "'from tests.test_authorization_matrix import markdown; print(markdown())'")


if __name__ == "__main__":
    print(markdown())
