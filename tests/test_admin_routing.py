"""Routing rules in the service catalogue and agents' preferred skills, through the admin
API (issue 15): strict validation with clear error codes and nothing half-written, every
change on the admin audit log, the stored settings reach the hub's catalogue and the
dispatcher."""

from __future__ import annotations

from typing import Any

import pytest

from cloudcounter.db import repo
from cloudcounter.queue.routing import ServiceRules
from cloudcounter.sim.client import Connection
from tests.conftest import wait_until
from tests.test_admin_api import Admin, snapshot

pytestmark = pytest.mark.integration

NO_RULES = {"widen_after_s": None, "fallback_skills": [], "overflow_after_s": None,
            "overflow_skills": [], "max_consecutive_offers": None}
VISA = {"code": "visa", "name": "Visa", "required_skill": "cards"}
# method, path, body, status, code: each must be refused and change nothing
INVALID: list[tuple[str, str, Any, int, str]] = [
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"fallback_skills": ["juggling"]}},
     400, "unknown_skill"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"overflow_skills": ["nope"]}},
     400, "unknown_skill"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"fallback_skills": ["cards"]}},
     400, "invalid_routing"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"overflow_skills": ["cards"]}},
     400, "invalid_routing"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"widen_after_s": -1}}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"widen_after_s": 3601}}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"overflow_after_s": "60"}}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"overflow_after_s": True}}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"max_consecutive_offers": 0}},
     400, "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"max_consecutive_offers": 101}},
     400, "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"max_consecutive_offers": 2.5}},
     400, "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"widen_after": 30}}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"fallback_skills": "accounts"}},
     400, "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss",
     {"routing": {"fallback_skills": ["accounts", "accounts"]}}, 400, "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": {"fallback_skills": ["Accounts"]}},
     400, "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"routing": []}, 400, "invalid_message"),
    # a valid change together with invalid rules writes nothing
    ("PATCH", "/api/admin/services/card_loss",
     {"priority": 1, "routing": {"fallback_skills": ["juggling"]}}, 400, "unknown_skill"),
    ("POST", "/api/admin/services", {**VISA, "routing": {"fallback_skills": ["juggling"]}},
     400, "unknown_skill"),
    ("POST", "/api/admin/services", {**VISA, "routing": {"overflow_skills": ["cards"]}}, 400,
     "invalid_routing"),
    ("POST", "/api/admin/services", {**VISA, "routing": {"extra": 1}}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/users/alice", {"preferred_skills": ["loans"]}, 400,
     "invalid_preferred_skill"),
    ("PATCH", "/api/admin/users/alice", {"skills": ["cards"], "preferred_skills": ["security"]},
     400, "invalid_preferred_skill"),
    ("PATCH", "/api/admin/users/alice", {"preferred_skills": ["cards", "cards"]}, 400,
     "invalid_message"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "agent", "skills": ["cards"],
                                  "preferred_skills": ["loans"]}, 400,
     "invalid_preferred_skill"),
]


@pytest.fixture
async def admin(hub_factory: Any) -> Admin:
    hub = await hub_factory(vision_workers=0)
    return Admin(hub, await hub.agent_token("admin"))


async def test_invalid_rules_and_preferred_skills_are_refused_and_change_nothing(
        admin: Admin) -> None:
    await admin.call("PATCH", "/api/admin/services/contact_change",
                     {"routing": {"fallback_skills": ["security"]}})
    before = await snapshot(admin.hub)
    for method, path, body, status, code in INVALID:
        got, reply = await admin.call(method, path, body)
        assert (got, reply["error"]["code"]) == (status, code), (method, path, body, reply)
        assert reply["error"]["message"], (path, body)
    # a new required skill that the rules already name as a fallback
    got, reply = await admin.call("PATCH", "/api/admin/services/contact_change",
                                  {"required_skill": "security"})
    assert (got, reply["error"]["code"]) == (400, "invalid_routing")
    assert await snapshot(admin.hub) == before


async def test_rules_are_stored_audited_and_reach_the_catalogue(admin: Admin) -> None:
    hub = admin.hub
    status, listing = await admin.call("GET", "/api/admin/services")
    listed = {s["code"]: s for s in listing["services"]}
    assert status == 200 and listed["car_loan"]["routing"] == NO_RULES
    # the demo seed's rules
    assert listed["card_loss"]["routing"] == {**NO_RULES, "fallback_skills": ["accounts"]}
    rules = {"widen_after_s": 45, "fallback_skills": ["accounts", "security"],
             "overflow_after_s": 120.5, "overflow_skills": ["payments"],
             "max_consecutive_offers": 3}
    status, reply = await admin.call("PATCH", "/api/admin/services/card_loss",
                                     {"routing": rules})
    assert status == 200, reply
    assert reply["service"]["routing"] == {**rules, "widen_after_s": 45.0}
    want = ServiceRules(45.0, frozenset({"accounts", "security"}), 120.5,
                        frozenset({"payments"}), 3)
    assert hub.ctx.services["card_loss"].routing == want  # the running hub's catalogue
    stored = {s.code: s for s in await repo.list_services(hub.ctx.sm)}  # the database
    assert stored["card_loss"].routing == want
    # other edits keep the rules; {} clears them; the same value again changes nothing
    status, reply = await admin.call("PATCH", "/api/admin/services/card_loss",
                                     {"priority": 6})
    assert reply["service"]["routing"]["fallback_skills"] == ["accounts", "security"]
    status, reply = await admin.call("PATCH", "/api/admin/services/card_loss",
                                     {"routing": {}})
    assert status == 200 and reply["service"]["routing"] == NO_RULES
    assert hub.ctx.services["card_loss"].routing == ServiceRules()
    status, reply = await admin.call("POST", "/api/admin/services", {
        **VISA, "routing": {"widen_after_s": 0, "overflow_skills": ["payments"],
                            "overflow_after_s": 300}})
    assert status == 201 and reply["service"]["routing"]["overflow_skills"] == ["payments"]
    assert hub.ctx.services["visa"].routing.widen_after_s == 0.0

    status, log = await admin.call("GET", "/api/admin/security-events?kind=admin.service*")
    events = [e for e in reversed(log["events"]) if e["kind"].startswith("admin.service")]
    assert [(e["kind"], e["target"]) for e in events] == [
        ("admin.service_updated", "card_loss"), ("admin.service_updated", "card_loss"),
        ("admin.service_updated", "card_loss"), ("admin.service_created", "visa")]
    assert events[0]["details"]["changes"]["routing"] == {
        "from": listed["card_loss"]["routing"], "to": {**rules, "widen_after_s": 45.0}}
    assert "routing" not in events[1]["details"]["changes"]
    assert events[2]["details"]["changes"]["routing"]["to"] == NO_RULES
    assert events[3]["details"]["routing"]["widen_after_s"] == 0.0


async def test_preferred_skills_are_stored_and_reach_the_dispatcher(admin: Admin) -> None:
    hub = admin.hub
    status, reply = await admin.call("PATCH", "/api/admin/users/alice",
                                     {"preferred_skills": ["accounts", "security"]})
    assert status == 200 and reply["user"]["preferred_skills"] == ["accounts", "security"]
    assert reply["user"]["skills"] == ["accounts", "cards", "security"]
    # new skills without preferred ones keep those still among the skills
    status, reply = await admin.call("PATCH", "/api/admin/users/alice",
                                     {"skills": ["accounts", "cards"]})
    assert reply["user"]["preferred_skills"] == ["accounts"]
    status, reply = await admin.call("POST", "/api/admin/users", {
        "username": "dina", "role": "agent", "skills": ["cards", "loans"],
        "preferred_skills": ["loans"], "password": "a-long-pass-phrase-9"})
    assert status == 201 and reply["user"]["preferred_skills"] == ["loans"]
    status, listing = await admin.call("GET", "/api/admin/users")
    users = {u["username"]: u for u in listing["users"]}
    assert users["alice"]["preferred_skills"] == ["accounts"]
    assert users["bob"]["preferred_skills"] == []
    status, log = await admin.call("GET", "/api/admin/security-events?kind=admin.user*")
    changes = [e["details"].get("changes") for e in reversed(log["events"])
               if e["kind"] == "admin.user_updated"]
    assert changes == [{"preferred_skills": {"from": [], "to": ["accounts", "security"]}},
                       {"skills": {"from": ["accounts", "cards", "security"],
                                   "to": ["accounts", "cards"]},
                        "preferred_skills": {"from": ["accounts", "security"],
                                             "to": ["accounts"]}}]

    # the agent's identity at connect carries them to the dispatcher
    alice = await repo.get_user(hub.ctx.sm, username="alice")
    assert alice is not None
    conn = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    try:
        await conn.connect()

        async def online() -> bool:
            return await hub.ctx.dispatcher.store.get_agent(alice.id) is not None
        await wait_until(online, 10, "alice online")
        agent = await hub.ctx.dispatcher.store.get_agent(alice.id)
        assert agent is not None and agent.preferred == frozenset({"accounts"})
        assert agent.skills == frozenset({"accounts", "cards"})
    finally:
        await conn.close()
