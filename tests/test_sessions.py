"""Staff sessions: revocable, re-checked on every request and socket event (issue 13)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from cloudcounter.db.models import User
from cloudcounter.db.security_models import SecurityEvent, StaffSession
from cloudcounter.hub.auth import StaffIdentity, mint_staff_token, verify_staff_token
from cloudcounter.hub.demo import DEMO_USERS
from cloudcounter.sim.client import Connection
from tests.conftest import Hub

pytestmark = pytest.mark.integration
PASSWORDS = {u: p for u, p, *_ in DEMO_USERS}


async def login(hub: Hub, username: str, **extra: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(hub.url + "/api/login", json={
                "username": username, "password": PASSWORDS[username], **extra}) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())


async def get(hub: Hub, path: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(hub.url + path) as r:
            return r.status, await (r.json() if r.content_type == "application/json"
                                    else r.read())


async def post(hub: Hub, path: str, token: str | None = None,
               json: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(hub.url + path, json=json) as r:
            return r.status, await r.json()


def code(body: Any) -> str:
    return str(body["error"]["code"])


async def test_logout_ends_the_bearer_token_too(hub: Hub) -> None:
    token = (await login(hub, "audrey"))["token"]
    assert (await get(hub, "/api/calls", token))[0] == 200
    assert (await post(hub, "/api/logout", token))[0] == 200
    status, body = await get(hub, "/api/calls", token)
    assert status == 401 and code(body) == "session_revoked"


async def test_a_disabled_account_stops_at_once_and_can_be_enabled(hub: Hub) -> None:
    auditor = (await login(hub, "audrey"))["token"]
    admin = (await login(hub, "admin"))["token"]
    status, body = await post(hub, "/api/admin/users/audrey/disable", admin)
    assert status == 200 and body["disabled"] and body["sessions_ended"] == 1
    for path in ("/api/calls", "/api/me"):
        status, body = await get(hub, path, auditor)
        assert status == 401 and code(body) == "session_revoked", (path, body)
    async with aiohttp.ClientSession() as http:  # and no new session
        async with http.post(hub.url + "/api/login", json={
                "username": "audrey", "password": PASSWORDS["audrey"]}) as r:
            assert r.status == 401
    # an administrator cannot lock themselves out
    status, body = await post(hub, "/api/admin/users/admin/disable", admin)
    assert status == 409 and code(body) == "cannot_disable_self"
    assert (await post(hub, "/api/admin/users/audrey/enable", admin))[0] == 200
    assert (await get(hub, "/api/calls", (await login(hub, "audrey"))["token"]))[0] == 200


async def test_account_disabled_in_the_database_is_reported_as_such(hub_factory: Any) -> None:
    """Disabled elsewhere (another node, SQL): the next request says account_disabled."""
    hub = await hub_factory(session_cache_s=0.0)
    token = (await login(hub, "audrey"))["token"]
    async with hub.ctx.sm() as s, s.begin():
        await s.execute(update(User).where(User.username == "audrey").values(disabled=True))
    status, body = await get(hub, "/api/calls", token)
    assert status == 403 and code(body) == "account_disabled"


async def test_a_demoted_auditor_no_longer_lists_calls(hub: Hub) -> None:
    auditor = (await login(hub, "audrey"))["token"]
    admin = (await login(hub, "admin"))["token"]
    status, body = await post(hub, "/api/admin/users/audrey/role", admin, {"role": "agent"})
    assert status == 200 and body["role"] == "agent"
    status, body = await get(hub, "/api/calls", auditor)
    assert status == 403 and code(body) == "forbidden"
    assert (await get(hub, "/api/me", auditor))[1]["role"] == "agent"


async def test_a_signed_token_without_a_live_session_is_refused(hub: Hub) -> None:
    secret = hub.settings.secret_key
    ghost = mint_staff_token(secret, StaffIdentity(9999, "ghost", "admin"), 60)
    status, body = await get(hub, "/api/calls", ghost)
    assert status == 401 and code(body) == "session_revoked"
    # a real session id presented for another user id
    audrey = (await login(hub, "audrey"))["token"]
    async with hub.ctx.sm() as s:
        sid = (await s.scalars(select(StaffSession.id))).one()  # the auditor's session
    forged = mint_staff_token(secret, StaffIdentity(1, "alice", "admin", session_id=sid), 60)
    status, body = await get(hub, "/api/calls", forged)
    assert status == 401 and code(body) == "session_revoked"
    assert (await get(hub, "/api/calls", audrey))[0] == 200
    await hub.ctx.security.log.flush()
    async with hub.ctx.sm() as s:
        refused = (await s.scalars(select(SecurityEvent).where(
            SecurityEvent.kind == "token.refused"))).all()
    assert len(refused) >= 2 and all(e.source == "127.0.0.1" for e in refused)


async def test_access_tokens_are_short_and_refreshed_with_rotation(hub: Hub) -> None:
    grant = await login(hub, "audrey")
    assert grant["expires_in_s"] == hub.settings.staff_token_ttl_s <= 900
    ident = StaffIdentity(0, "", "")
    expired = mint_staff_token(hub.settings.secret_key, ident, 60, now=time.time() - 3600)
    status, body = await get(hub, "/api/calls", expired)
    assert status == 401 and code(body) == "token_expired"
    status, fresh = await post(hub, "/api/session/refresh",
                               json={"refresh_token": grant["refresh_token"]})
    assert status == 200 and fresh["refresh_token"] != grant["refresh_token"], fresh
    assert (await get(hub, "/api/calls", fresh["token"]))[0] == 200
    # the first refresh token replayed after the grace period: stolen, the session ends
    sessions = hub.ctx.security.sessions
    sessions.clock = lambda: time.time() + 60
    status, body = await post(hub, "/api/session/refresh",
                              json={"refresh_token": grant["refresh_token"]})
    assert status == 401 and code(body) == "session_revoked"
    status, body = await get(hub, "/api/calls", fresh["token"])
    assert status == 401 and code(body) == "session_revoked"


async def test_a_browser_session_renews_its_cookie_and_logout_clears_it(hub: Hub) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(hub.url + "/api/login", json={
                "username": "audrey", "password": PASSWORDS["audrey"]}) as r:
            assert r.status == 200
            cookies = {c.key: c for c in r.cookies.values()}
        assert cookies["cc_session"]["httponly"] and cookies["cc_session"]["samesite"] == "Strict"
        assert cookies["cc_refresh"]["path"] == "/api/session"
        assert not cookies["cc_session"]["secure"]  # plain HTTP on loopback
        async with http.post(hub.url + "/api/session/refresh") as r:  # cookie only
            assert r.status == 200
        async with http.get(hub.url + "/api/me") as r:
            assert r.status == 200
        async with http.post(hub.url + "/api/logout") as r:
            assert r.status == 200
        async with http.get(hub.url + "/api/me") as r:
            assert r.status == 401


async def agent_socket(hub: Hub, username: str = "alice") -> tuple[Connection, str]:
    token = (await login(hub, username))["token"]
    conn = Connection(hub.url, "/agent", token)
    await conn.connect()
    await conn.expect("agent:state", timeout=5)
    return conn, token


async def test_a_revoked_session_is_told_and_disconnected(hub: Hub) -> None:
    alice, _ = await agent_socket(hub)
    admin = (await login(hub, "admin"))["token"]
    status, body = await post(hub, "/api/admin/users/alice/end-sessions", admin)
    assert status == 200 and body["sessions_ended"] == 1
    _, ended = await alice.expect("session:ended", timeout=10)
    assert ended["code"] == "session_revoked"
    for _ in range(100):
        if not alice.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not alice.sio.connected
    await alice.close()


async def test_socket_events_recheck_the_account(hub_factory: Any) -> None:
    """Disabled in the database (no notification reaches this hub): the next event is
    refused with account_disabled and the socket is ended."""
    hub = await hub_factory(session_cache_s=0.0, session_check_interval_s=3600.0)
    alice, _ = await agent_socket(hub)
    assert (await alice.call("agent:status", {"status": "available"}))["ok"]
    async with hub.ctx.sm() as s, s.begin():
        await s.execute(update(User).where(User.username == "alice").values(disabled=True))
    reply = await alice.call("agent:status", {"status": "away"})
    assert reply["error"]["code"] == "account_disabled"
    _, ended = await alice.expect("session:ended", timeout=5)
    assert ended["code"] == "account_disabled"
    await alice.close()


async def test_cli_disable_reaches_an_idle_socket(hub_factory: Any) -> None:
    """`cloudcounter user disable` in another process: the hub's session watcher ends the
    socket of the disabled agent without any event from it."""
    hub = await hub_factory(session_check_interval_s=0.2)
    alice, _ = await agent_socket(hub)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    env.update(CLOUDCOUNTER_DEMO="1", CLOUDCOUNTER_DATABASE_URL=hub.settings.database_url)
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "cloudcounter", "user",
                                                 "disable", "alice"],
                                env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 session(s) ended" in r.stdout, r.stderr
    _, ended = await alice.expect("session:ended", timeout=10)
    assert ended["code"] in ("session_revoked", "account_disabled")
    await alice.close()
    async with hub.ctx.sm() as s:
        events = (await s.scalars(select(SecurityEvent).where(
            SecurityEvent.kind == "admin.disable"))).all()
    assert len(events) == 1 and events[0].actor.startswith("cli") and events[0].target == "alice"
    again = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "cloudcounter", "user",
                                                     "enable", "nobody"],
                                    env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "no user 'nobody'" in again.stderr


async def test_secure_cookies_behind_a_trusted_proxy_only(hub_factory: Any) -> None:
    hub = await hub_factory(trusted_proxies=["127.0.0.1"])
    async with aiohttp.ClientSession() as http:
        async with http.post(hub.url + "/api/login", json={
                "username": "audrey", "password": PASSWORDS["audrey"]},
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7",
                         "Origin": "https://" + hub.url.split("//")[1]}) as r:
            assert r.status == 200, await r.text()
            assert r.cookies["cc_session"]["secure"] and r.cookies["cc_refresh"]["secure"]
            assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    await hub.ctx.security.log.flush()
    async with hub.ctx.sm() as s:
        ev = (await s.scalars(select(SecurityEvent).where(
            SecurityEvent.kind == "login.succeeded"))).one()
    assert ev.source == "203.0.113.7"  # the client, not the proxy
    plain = await hub_factory()  # no trusted proxy: the header is not believed
    async with aiohttp.ClientSession() as http:
        async with http.post(plain.url + "/api/login", json={
                "username": "audrey", "password": PASSWORDS["audrey"]},
                headers={"X-Forwarded-Proto": "https"}) as r:
            assert r.status == 200 and not r.cookies["cc_session"]["secure"]
            assert "Strict-Transport-Security" not in r.headers


async def test_logout_with_an_expired_token_still_ends_its_session(hub: Hub) -> None:
    grant = await login(hub, "audrey")
    claimed = verify_staff_token(hub.settings.secret_key, grant["token"])
    old = mint_staff_token(hub.settings.secret_key, claimed, 60, now=time.time() - 3600)
    assert (await post(hub, "/api/logout", old))[0] == 200
    status, body = await post(hub, "/api/session/refresh",
                              json={"refresh_token": grant["refresh_token"]})
    assert status == 401 and code(body) == "session_revoked"


async def test_an_active_browser_gets_a_fresh_access_cookie(hub_factory: Any) -> None:
    hub = await hub_factory(staff_token_ttl_s=4)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(hub.url + "/api/login", json={
                "username": "audrey", "password": PASSWORDS["audrey"]}) as r:
            first = r.cookies["cc_session"].value
        await asyncio.sleep(2.2)  # past half its life
        async with http.get(hub.url + "/api/me") as r:
            assert r.status == 200 and r.cookies["cc_session"].value != first
