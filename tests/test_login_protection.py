"""Login protection (issue 13): an atomic throttle without lock-out, bounded argon2, the
password policy, TOTP, login CSRF, and bodies that cannot crash the login."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pyotp
import pytest
from sqlalchemy import select

from cloudcounter.agents import accounts
from cloudcounter.agents.passwords import MIN_LENGTH, password_problem, totp_step
from cloudcounter.db.models import Role
from cloudcounter.db.security_models import SecurityEvent
from cloudcounter.errors import InvalidMessage, RateLimited
from cloudcounter.hub.api import GATE, THROTTLE
from cloudcounter.hub.demo import DEMO_USERS
from cloudcounter.hub.http_auth import LoginThrottle
from tests.conftest import Hub
from tests.test_db import pg_url  # noqa: F401  (the PostgreSQL fixture)

PASSWORDS = {u: p for u, p, *_ in DEMO_USERS}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the throttle, pure ------------------------------------------------------------------
def test_three_free_failures_then_growing_delays_never_a_lock() -> None:
    clock = Clock()
    t = LoginThrottle(clock)
    for _ in range(3):
        t.begin("bob", "10.0.0.1").failed()
    with pytest.raises(RateLimited) as info:
        t.begin("bob", "10.0.0.1")
    assert info.value.code == "login_throttled" and info.value.details["retry_after_s"] == 1
    clock.now += 1.0  # the delay has passed: one fresh attempt
    t.begin("bob", "10.0.0.1").failed()
    with pytest.raises(RateLimited) as info:
        t.begin("bob", "10.0.0.1")
    assert info.value.details["retry_after_s"] == 2  # doubled
    clock.now += 2.0
    t.begin("bob", "10.0.0.1").succeeded()  # the real user gets in, and the slate is clean
    for _ in range(3):
        t.begin("bob", "10.0.0.1").failed()


def test_concurrent_attempts_cannot_race_past_the_limit() -> None:
    t = LoginThrottle(Clock())
    admitted, refused = [], 0
    for _ in range(40):  # 40 at once: none settled yet
        try:
            admitted.append(t.begin("bob", "10.0.0.1"))
        except RateLimited:
            refused += 1
    assert len(admitted) == 3 and refused == 37


def test_an_attacker_cannot_lock_the_real_user_out() -> None:
    clock = Clock()
    t = LoginThrottle(clock)
    for i in range(200):  # a distributed attack on bob from many addresses
        try:
            t.begin("bob", f"203.0.113.{i % 50}").failed()
        except RateLimited:
            pass
    t.begin("bob", "198.51.100.9").succeeded()  # the real user, from a clean address
    for _ in range(30):  # the attacker's own address is slowed down, capped, never locked
        clock.now += 901.0
        t.begin("bob", "203.0.113.1").failed()


def test_password_spraying_from_one_address_is_slowed() -> None:
    t = LoginThrottle(Clock())
    failures = 0
    with pytest.raises(RateLimited):
        for i in range(100):
            t.begin(f"user{i}", "10.9.9.9").failed()
            failures += 1
    assert failures == 20


# -- the throttle and the argon2 bound, through the hub -------------------------------------
async def attempt(http: aiohttp.ClientSession, hub: Hub, username: str, password: str,
                  **headers: str) -> tuple[int, str]:
    async with http.post(hub.url + "/api/login", json={"username": username,
                                                       "password": password},
                         headers=headers) as r:
        body = await r.json()
        return r.status, (body.get("error") or {}).get("code", "ok")


@pytest.mark.integration
async def test_forty_concurrent_guesses_are_not_all_evaluated(hub: Hub) -> None:
    clock = Clock()
    hub.app[THROTTLE].clock = clock
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(attempt(http, hub, "bob", f"guess-{i:02d}-xxxxxx")
                                         for i in range(40)))
        evaluated = [r for r in results if r == (401, "bad_credentials")]
        assert len(evaluated) <= 3, results
        assert results.count((429, "login_throttled")) == 40 - len(evaluated)
        # the right password right now waits its turn...
        assert await attempt(http, hub, "bob", PASSWORDS["bob"]) == (429, "login_throttled")
        clock.now += 301.0  # ...and after the delay is let in: no lock-out
        assert await attempt(http, hub, "bob", PASSWORDS["bob"]) == (200, "ok")
    assert hub.app[GATE].peak <= hub.settings.login_concurrency
    await hub.ctx.security.log.flush()
    async with hub.ctx.sm() as s:
        kinds = [e.kind for e in (await s.scalars(select(SecurityEvent))).all()]
    assert kinds.count("login.throttled") == 40 - len(evaluated) + 1
    assert kinds.count("login.failed") == len(evaluated) and "login.succeeded" in kinds


@pytest.mark.integration
async def test_concurrent_password_checks_are_bounded(hub_factory: Any) -> None:
    """Twenty people signing in at once, each from their own address: argon2 (64 MiB
    each) runs at most CLOUDCOUNTER_LOGIN_CONCURRENCY at a time; everyone gets in."""
    hub = await hub_factory(trusted_proxies=["127.0.0.1"], login_concurrency=2)
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(
            attempt(http, hub, "carol", PASSWORDS["carol"], **{
                "X-Forwarded-For": f"192.0.2.{i + 1}"}) for i in range(20)))
    assert results == [(200, "ok")] * 20
    assert hub.app[GATE].peak == 2


@pytest.mark.integration
async def test_a_full_login_queue_answers_busy(hub_factory: Any) -> None:
    hub = await hub_factory(trusted_proxies=["127.0.0.1"], login_concurrency=1, login_queue=1)
    async with aiohttp.ClientSession() as http:
        results = await asyncio.gather(*(
            attempt(http, hub, "carol", PASSWORDS["carol"], **{
                "X-Forwarded-For": f"192.0.2.{i + 1}"}) for i in range(12)))
    assert (200, "ok") in results and (429, "login_busy") in results
    assert set(results) <= {(200, "ok"), (429, "login_busy")}


# -- password policy ------------------------------------------------------------------------
@pytest.mark.parametrize("username,password,problem", [
    ("ana", "short-pw-1", f"at least {MIN_LENGTH}"),
    ("ana", "x" * 257, "at most"),
    ("alexander123", "Alexander123", "username"),
    ("alexander", "alexander2024!!!", "username"),
    ("alexander", "rednaxela!2024", "username"),
    ("ana", "password1234", "too common"),
    ("ana", "!!qwertyuiop!!", "too common"),
    ("ana", "1234567890123", "only digits"),
    ("ana", "aaaabbbbaaaa", "different characters"),
])
def test_weak_passwords_are_refused(username: str, password: str, problem: str) -> None:
    found = password_problem(username, password)
    assert found is not None and problem in found, found


def test_the_demo_passwords_satisfy_the_policy() -> None:
    for username, password, *_ in DEMO_USERS:
        assert password_problem(username, password) is None, (username, password)


@pytest.mark.integration
async def test_accounts_refuse_weak_passwords(hub: Hub) -> None:
    with pytest.raises(InvalidMessage) as info:
        await accounts.create(hub.ctx.sm, username="dora", password="Dora2024!!!!!",
                              role=Role.AGENT)
    assert info.value.code == "weak_password"
    user = await accounts.create(hub.ctx.sm, username="dora", password="tulip-harbour-42",
                                 role=Role.LEAD)
    assert user.role == "lead"


# -- TOTP ---------------------------------------------------------------------------------
def test_totp_codes_are_checked_and_used_once() -> None:
    secret = pyotp.random_base32()
    now = 1_800_000_000.0
    code = pyotp.TOTP(secret).at(now)
    step = totp_step(secret, code, None, now)
    assert step == int(now // 30)
    assert totp_step(secret, code, step, now) is None  # replayed
    assert totp_step(secret, code, None, now + 31) == step  # one step of drift is fine
    assert totp_step(secret, code, None, now + 91) is None
    assert totp_step(secret, "12345", None, now) is None
    assert totp_step(secret, "abcdef", None, now) is None


@pytest.mark.integration
async def test_totp_second_factor_for_auditors_and_admins(hub_factory: Any) -> None:
    hub = await hub_factory(totp_required_roles=["auditor", "admin"])
    async with aiohttp.ClientSession() as http:
        # required, not enrolled: refused with a code that says what to do
        status, code = await attempt(http, hub, "audrey", PASSWORDS["audrey"])
        assert (status, code) == (403, "totp_enrolment_required")
        _, secret = await accounts.enrol_totp(hub.ctx.sm, "audrey")
        assert await attempt(http, hub, "audrey", PASSWORDS["audrey"]) == (401, "otp_required")

        async def with_otp(otp: str) -> tuple[int, str]:
            async with http.post(hub.url + "/api/login", json={
                    "username": "audrey", "password": PASSWORDS["audrey"], "otp": otp}) as r:
                return r.status, ((await r.json()).get("error") or {}).get("code", "ok")
        assert await with_otp("000000" if pyotp.TOTP(secret).now() != "000000"
                              else "111111") == (401, "bad_otp")
        code = pyotp.TOTP(secret).now()
        assert await with_otp(code) == (200, "ok")
        assert await with_otp(code) == (401, "bad_otp")  # a code works once
        # agents are not asked
        assert await attempt(http, hub, "alice", PASSWORDS["alice"]) == (200, "ok")


# -- CSRF and hostile bodies ---------------------------------------------------------------
@pytest.mark.integration
async def test_login_csrf_is_refused(hub: Hub) -> None:
    body = '{"username": "audrey", "password": "%s"}' % PASSWORDS["audrey"]
    async with aiohttp.ClientSession() as http:
        # the cross-site form a browser sends without asking: text/plain
        async with http.post(hub.url + "/api/login", data=body,
                             headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415 and (await r.json())["error"]["code"] == "json_required"
            assert "cc_session" not in r.cookies
        async with http.post(hub.url + "/api/login", data=body, headers={
                "Content-Type": "application/json", "Origin": "https://evil.example"}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "bad_origin"
            assert "cc_session" not in r.cookies
        async with http.post(hub.url + "/api/login", data=body, headers={
                "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 403
        async with http.post(hub.url + "/api/login", data=body, headers={
                "Content-Type": "application/json", "Origin": hub.url}) as r:
            assert r.status == 200 and "cc_session" in r.cookies


@pytest.mark.integration
@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"username": ' * 5_000 + b"1" + b"}" * 5_000,
    b'{"username": "a", "password": ' + b"9" * 5_000 + b"}",
    b'{"username": "a", "password": NaN}',
    b'{"username": "a\xff", "password": "b"}',
    b'{"username": ["a"], "password": "b"}',
    b'{"username": "a\\u0000b", "password": "bbbbbbbbbbbbb"}',
    b'{"username": "a\\ud800", "password": "bbbbbbbbbbbbb"}',
    b'"just a string"',
    b"",
])
async def test_malformed_login_bodies_get_400_with_a_code(hub: Hub, raw: bytes) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(hub.url + "/api/login", data=raw,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400, await r.text()
            assert (await r.json())["error"]["code"] == "invalid_message"
        async with http.get(hub.url + "/healthz") as r:
            assert r.status == 200


@pytest.mark.integration
@pytest.mark.postgres
async def test_a_nul_in_a_username_is_a_400_on_postgresql(pg_url: str, hub_factory: Any) -> None:  # noqa: F811
    from sqlalchemy import text

    from cloudcounter.db.engine import make_engine

    engine = make_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    hub = await hub_factory(database_url=pg_url)
    async with aiohttp.ClientSession() as http:
        for username in ("alice\u0000", "\u0000", "al\x1bice"):
            async with http.post(hub.url + "/api/login", json={
                    "username": username, "password": "whatever-password"}) as r:
                assert r.status == 400, await r.text()
        async with http.get(hub.url + "/api/calls/call_0000000000000000%00",
                            headers={"Authorization": "Bearer " + await hub.agent_token(
                                "audrey")}) as r:
            assert r.status == 404
        async with http.get(hub.url + "/api/calls?q=%00", headers={
                "Authorization": "Bearer " + await hub.agent_token("audrey")}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_query"
