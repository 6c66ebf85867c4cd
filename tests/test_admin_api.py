"""The administrators' API (the admin console uses nothing else): users, services,
customers; every invalid value gets a clear error and changes nothing; every change is an
``admin.*`` event of the admin audit log."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text

from cloudcounter.db.models import Customer
from tests.conftest import Hub

pytestmark = pytest.mark.integration
TABLES = ("users", "agent_skills", "service_types", "customers", "webhook_subscriptions",
          "staff_sessions")


class Admin:
    def __init__(self, hub: Hub, token: str) -> None:
        self.hub, self.token = hub, token

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   content_type: str = "application/json", token: str | None = None
                   ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            kwargs: dict[str, Any] = {}
            if raw is not None:
                kwargs = {"data": io.BytesIO(raw), "headers": {"Content-Type": content_type}}
            elif body is not None:
                kwargs = {"json": body}
            async with http.request(method, self.hub.url + path, **kwargs) as r:
                return r.status, await r.json()


async def snapshot(hub: Hub) -> dict[str, list[Any]]:
    """Every row of the tables administrators change."""
    await hub.ctx.security.log.flush()
    out = {}
    async with hub.ctx.sm() as s:
        for table in TABLES:
            rows = (await s.execute(text(f"SELECT * FROM {table} ORDER BY 1"))).all()
            out[table] = [tuple(r) for r in rows]
        out["admin_events"] = [tuple(r) for r in (await s.execute(text(
            "SELECT kind, target FROM security_events WHERE kind LIKE 'admin.%' "
            "AND kind != 'admin.security_events_read' ORDER BY id"))).all()]
    return out


@pytest.fixture
async def admin(hub_factory: Any) -> Admin:
    hub = await hub_factory(vision_workers=0)
    return Admin(hub, await hub.agent_token("admin"))


LONG = "x" * 300
# method, path, body, status, code: each must be refused and change nothing
INVALID: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/api/admin/users", {"username": "ana", "role": "wizard"}, 400, "invalid_message"),
    ("POST", "/api/admin/users", {"username": "a b", "role": "agent"}, 400, "invalid_message"),
    ("POST", "/api/admin/users", {"username": "", "role": "agent"}, 400, "invalid_message"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "agent", "extra": 1}, 400,
     "invalid_message"),
    ("POST", "/api/admin/users", {"username": "ana\u0000", "role": "agent"}, 400,
     "invalid_message"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "agent", "display_name": LONG},
     400, "invalid_message"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "agent", "password": "short"},
     400, "weak_password"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "agent",
                                  "password": "password123456"}, 400, "weak_password"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "agent", "skills": ["juggling"]},
     400, "unknown_skill"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "agent",
                                  "skills": ["cards", "cards"]}, 400, "invalid_message"),
    ("POST", "/api/admin/users", {"username": "ana", "role": "lead", "skills": ["cards"]},
     400, "invalid_skill"),
    ("POST", "/api/admin/users", {"username": "alice", "role": "agent"}, 409,
     "duplicate_username"),
    ("PATCH", "/api/admin/users/alice", {"skills": ["nope"]}, 400, "unknown_skill"),
    ("PATCH", "/api/admin/users/alice", {"role": "auditor", "skills": ["cards"]}, 400,
     "invalid_skill"),
    ("PATCH", "/api/admin/users/alice", {"role": "king"}, 400, "invalid_message"),
    ("PATCH", "/api/admin/users/nobody", {"display_name": "N"}, 404, "unknown_user"),
    ("PATCH", "/api/admin/users/admin", {"role": "agent"}, 409, "cannot_change_self"),
    ("POST", "/api/admin/users/admin/disable", None, 409, "cannot_disable_self"),
    ("POST", "/api/admin/users/nobody/disable", None, 404, "unknown_user"),
    ("POST", "/api/admin/users/alice/password", {"password": "alice"}, 400, "weak_password"),
    ("POST", "/api/admin/users/alice/password", {"password": 12}, 400, "invalid_message"),
    ("POST", "/api/admin/users/alice/role", {"role": ""}, 400, "invalid_message"),
    ("POST", "/api/admin/services", {"code": "Card Loss", "name": "x", "required_skill": "cards"},
     400, "invalid_message"),
    ("POST", "/api/admin/services", {"code": "card_loss", "name": "Again",
                                     "required_skill": "cards"}, 409, "duplicate_service"),
    ("POST", "/api/admin/services", {"code": "visa", "name": "Visa", "required_skill": "cards",
                                     "target_answer_s": 0}, 400, "invalid_message"),
    ("POST", "/api/admin/services", {"code": "visa", "name": "Visa", "required_skill": "cards",
                                     "auto_checks": ["retina"]}, 400, "invalid_message"),
    ("POST", "/api/admin/services", {"code": "visa", "name": "Visa", "required_skill": "cards",
                                     "priority": 10}, 400, "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"target_answer_s": 99999}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"auto_checks": ["identity", "identity"]}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/services/card_loss", {"name": " "}, 400, "invalid_message"),
    ("PATCH", "/api/admin/services/nothing", {"priority": 1}, 404, "unknown_service"),
    ("PATCH", "/api/admin/services/BAD-CODE", {"priority": 1}, 404, "unknown_service"),
    ("POST", "/api/admin/customers", {"name": ""}, 400, "invalid_message"),
    ("POST", "/api/admin/customers", {"name": "Ann", "card_last4": "12a4"}, 400,
     "invalid_message"),
    ("POST", "/api/admin/customers", {"name": "Ann", "phone": "call me"}, 400,
     "invalid_message"),
    ("POST", "/api/admin/customers", {"name": "Ann", "risk_level": "extreme"}, 400,
     "invalid_message"),
    ("POST", "/api/admin/customers", {"name": "Ann", "id": "bad id!"}, 400, "invalid_message"),
    ("POST", "/api/admin/customers", {"name": "Ann", "id": "cus_demo_joe"}, 409,
     "duplicate_customer"),
    ("PATCH", "/api/admin/customers/cus_demo_joe", {"name": None}, 400, "invalid_message"),
    ("PATCH", "/api/admin/customers/cus_demo_joe", {"risk_level": "block"}, 400,
     "invalid_message"),
    ("PATCH", "/api/admin/customers/cus_nobody", {"name": "N"}, 404, "unknown_customer"),
    ("GET", "/api/admin/customers?limit=5000", None, 400, "invalid_query"),
    ("GET", "/api/admin/security-events?kind=DROP", None, 400, "invalid_query"),
]


async def test_invalid_values_are_refused_clearly_and_change_nothing(admin: Admin) -> None:
    before = await snapshot(admin.hub)
    for method, path, body, status, code in INVALID:
        got, reply = await admin.call(method, path, body)
        assert (got, reply["error"]["code"]) == (status, code), (method, path, body, reply)
        assert reply["error"]["message"], (path, body)
    # malformed bodies: not JSON, not an object, the wrong content type
    for raw, ctype, want in ((b"{", "application/json", "invalid_message"),
                             (b"[]", "application/json", "invalid_message"),
                             (b"username=x", "application/x-www-form-urlencoded",
                              "json_required")):
        got, reply = await admin.call("POST", "/api/admin/users", raw=raw, content_type=ctype)
        assert got in (400, 415) and reply["error"]["code"] == want
    assert await snapshot(admin.hub) == before


async def test_users_created_edited_reset_disabled_and_signed_out(admin: Admin) -> None:
    hub = admin.hub
    status, reply = await admin.call("POST", "/api/admin/users", {
        "username": "dora", "role": "agent", "display_name": "Dora Diaz",
        "skills": ["cards", "senior"]})
    assert status == 201 and reply["user"]["skills"] == ["cards", "senior"]
    password = reply["password"]  # generated, shown once
    from cloudcounter.sim.client import login
    token = await login(hub.url, "dora", password)
    status, me = await admin.call("GET", "/api/me", token=token)
    assert me["skills"] == ["cards", "senior"]

    # skills and role take effect at once (the session re-reads them)
    status, reply = await admin.call("PATCH", "/api/admin/users/dora",
                                     {"skills": ["payments"]})
    assert status == 200 and reply["user"]["skills"] == ["payments"]
    status, me = await admin.call("GET", "/api/me", token=token)
    assert me["skills"] == ["payments"]
    status, reply = await admin.call("PATCH", "/api/admin/users/dora", {"role": "lead"})
    assert status == 200 and reply["user"] == {**reply["user"], "role": "lead", "skills": []}

    # a reset password ends the sessions; the new one works
    status, reply = await admin.call("POST", "/api/admin/users/dora/password",
                                     {"password": "a-new-long-phrase-7"})
    assert status == 200 and reply["sessions_ended"] == 1 and "password" not in reply
    assert (await admin.call("GET", "/api/me", token=token))[0] == 401
    token = await login(hub.url, "dora", "a-new-long-phrase-7")
    status, reply = await admin.call("POST", "/api/admin/users/dora/end-sessions")
    assert reply["sessions_ended"] == 1
    assert (await admin.call("GET", "/api/me", token=token))[0] == 401
    status, reply = await admin.call("POST", "/api/admin/users/dora/disable")
    assert reply["disabled"] is True
    with pytest.raises(Exception):
        await login(hub.url, "dora", "a-new-long-phrase-7")
    assert (await admin.call("POST", "/api/admin/users/dora/enable"))[1]["disabled"] is False
    status, reply = await admin.call("POST", "/api/admin/users/dora/totp")
    assert status == 200 and reply["uri"].startswith("otpauth://") and reply["secret"]
    status, listing = await admin.call("GET", "/api/admin/users")
    dora = next(u for u in listing["users"] if u["username"] == "dora")
    assert dora["totp_enrolled"] and dora["last_sign_in_at"] and dora["live_sessions"] == 0

    # the admin audit log has every action, by whom and from where
    status, log = await admin.call("GET", "/api/admin/security-events?kind=admin.*&limit=50")
    kinds = [(e["kind"], e["target"]) for e in reversed(log["events"])
             if e["kind"] != "admin.security_events_read"]
    assert kinds == [("admin.user_created", "dora"), ("admin.user_updated", "dora"),
                     ("admin.user_updated", "dora"), ("admin.password_set", "dora"),
                     ("admin.end_sessions", "dora"), ("admin.disable", "dora"),
                     ("admin.enable", "dora"), ("admin.totp_enrolled", "dora")]
    first = log["events"][-1]
    assert first["actor"] == "admin:admin" and first["source"] == "127.0.0.1"
    assert "password" not in json.dumps(first["details"]).replace('"password": "generated"', "")


async def test_the_last_administrator_stays(admin: Admin) -> None:
    status, reply = await admin.call("POST", "/api/admin/users", {
        "username": "root2", "role": "admin", "password": "second-admin-phrase-9"})
    assert status == 201
    from cloudcounter.sim.client import login
    other = await login(admin.hub.url, "root2", "second-admin-phrase-9")
    # root2 demotes the demo admin: allowed while root2 remains
    status, reply = await admin.call("POST", "/api/admin/users/admin/role", {"role": "auditor"},
                                     token=other)
    assert status == 200 and reply["role"] == "auditor"
    before = await snapshot(admin.hub)
    status, reply = await admin.call("POST", "/api/admin/users/root2/disable", token=other)
    assert status == 409 and reply["error"]["code"] == "cannot_disable_self"
    assert await snapshot(admin.hub) == before
    # and the last administrator cannot be demoted another way either (the CLI)
    from cloudcounter.db.models import Role
    from cloudcounter.hub.admin import users
    from cloudcounter.hub.admin.audit import Actor, NoSessionControl
    from cloudcounter.hub.admin.schemas import UserUpdate
    with pytest.raises(Exception) as err:
        await users.update_user(admin.hub.ctx.sm, Actor("cli:root"), "root2",
                                UserUpdate(role=Role.AGENT), NoSessionControl())
    assert getattr(err.value, "code", "") == "last_admin"
    assert await snapshot(admin.hub) == before


async def test_services_and_their_target_answer_time(admin: Admin) -> None:
    status, reply = await admin.call("POST", "/api/admin/services", {
        "code": "visa_dispute", "name": "Card dispute", "required_skill": "cards",
        "priority": 2, "auto_checks": ["identity"], "target_answer_s": 45})
    assert status == 201 and reply["service"]["target_answer_s"] == 45
    status, reply = await admin.call("PATCH", "/api/admin/services/card_loss",
                                     {"target_answer_s": 20, "priority": 7,
                                      "auto_checks": []})
    assert status == 200 and reply["service"] == {**reply["service"], "target_answer_s": 20,
                                                  "priority": 7, "auto_checks": []}
    # the running hub uses the new catalogue at once
    assert admin.hub.ctx.services["card_loss"].target_answer_s == 20
    async with aiohttp.ClientSession() as http:
        async with http.get(admin.hub.url + "/api/services") as r:
            public = {s["code"]: s for s in (await r.json())["services"]}
    assert "visa_dispute" in public and public["card_loss"]["auto_checks"] == []
    assert "target_answer_s" not in public["card_loss"]  # the public catalogue is unchanged
    status, listing = await admin.call("GET", "/api/admin/services")
    assert {s["code"]: s["target_answer_s"] for s in listing["services"]}["contact_change"] == 60


async def test_customers_created_edited_and_listed(admin: Admin) -> None:
    status, reply = await admin.call("POST", "/api/admin/customers", {
        "id": "BANK-000123", "name": "Ada Lovelace", "phone": "+44 20 7946 0000",
        "id_number": "AB123456C", "risk_level": "medium", "card_last4": "1815"})
    assert status == 201
    c = reply["customer"]
    assert c["id"] == "BANK-000123" and c["id_number_masked"] == "*****456C"
    assert not c["has_reference_photo"] and "0000" not in c["phone_masked"][3:-2]
    status, reply = await admin.call("PATCH", "/api/admin/customers/BANK-000123",
                                     {"risk_level": "high", "card_last4": None})
    assert reply["customer"]["risk_level"] == "high" and reply["customer"]["card_last4"] is None
    status, reply = await admin.call("GET", "/api/admin/customers?q=lovel")
    assert [c["id"] for c in reply["customers"]] == ["BANK-000123"] and reply["total"] == 1
    status, reply = await admin.call("GET", "/api/admin/customers?q=%25")  # no LIKE injection
    assert reply["total"] == 0
    # a customer token for the bank's own number works at once
    assert admin.hub.customer_token("BANK-000123")


async def test_photo_uploads_refused_before_the_face_check(admin: Admin) -> None:
    """Refusals that need no face model (the rest: test_admin_photos)."""
    before = await snapshot(admin.hub)
    path = "/api/admin/customers/cus_demo_grace/photo"
    status, reply = await admin.call("PUT", path, raw=b"GIF89a....", content_type="image/gif")
    assert (status, reply["error"]["code"]) == (400, "bad_photo")
    status, reply = await admin.call("PUT", path, raw=b"not really a jpeg",
                                     content_type="image/jpeg")
    assert (status, reply["error"]["code"]) == (400, "bad_image")
    assert "not a readable image" in reply["error"]["message"]
    status, reply = await admin.call("PUT", "/api/admin/customers/cus_nobody/photo",
                                     raw=b"\xff\xd8\xff" + b"0" * 100, content_type="image/jpeg")
    assert (status, reply["error"]["code"]) == (404, "unknown_customer")
    big = b"\xff\xd8\xff" + b"0" * (admin.hub.settings.max_photo_bytes + 10)
    status, reply = await admin.call("PUT", path, raw=big, content_type="image/jpeg")
    assert (status, reply["error"]["code"]) == (413, "message_too_large")
    assert await snapshot(admin.hub) == before


@pytest.mark.vision
async def test_admin_photos_enrolled_replaced_or_refused(admin: Admin, faces: Path,
                                                         tmp_path: Path) -> None:
    import cv2
    import numpy as np
    path = "/api/admin/customers/cus_demo_grace/photo"
    before = await snapshot(admin.hub)
    ok, blank = cv2.imencode(".png", np.full((240, 320, 3), 200, np.uint8))
    status, reply = await admin.call("PUT", path, raw=blank.tobytes(), content_type="image/png")
    assert (status, reply["error"]["code"]) == (400, "no_face")
    assert "shows no face" in reply["error"]["message"]
    status, reply = await admin.call("PUT", path, raw=(faces / "photos/two_people.jpg")
                                     .read_bytes(), content_type="image/jpeg")
    assert (status, reply["error"]["code"]) == (400, "multiple_faces")
    assert "more than one face" in reply["error"]["message"]
    assert await snapshot(admin.hub) == before
    assert not list((tmp_path / "photos").glob("*")) if (tmp_path / "photos").exists() else True

    status, reply = await admin.call("PUT", path, raw=(faces / "photos/obama.jpg").read_bytes(),
                                     content_type="image/jpeg")
    assert status == 200 and reply["customer"]["has_reference_photo"], reply
    async with admin.hub.ctx.sm() as s:
        first = (await s.scalars(select(Customer.photo_path)
                                 .where(Customer.id == "cus_demo_grace"))).one()
    assert first and Path(first).is_file()
    status, reply = await admin.call("PUT", path, raw=(faces / "photos/biden.jpg").read_bytes(),
                                     content_type="image/jpeg")
    assert status == 200
    async with admin.hub.ctx.sm() as s:
        second = (await s.scalars(select(Customer.photo_path)
                                  .where(Customer.id == "cus_demo_grace"))).one()
    assert second != first and Path(second).is_file() and not Path(first).exists()
    profile = await admin.hub.ctx.customer_profile("cus_demo_grace")
    assert profile["has_reference_photo"]
