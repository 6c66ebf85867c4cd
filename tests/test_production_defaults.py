"""Safe production defaults (issue 13): refused settings, demo data only in demo mode,
capped customer tokens, security headers, and HTTPS served by the hub itself."""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from cloudcounter.errors import Unauthenticated
from cloudcounter.hub.auth import mint_customer_token, verify_customer_token
from cloudcounter.hub.demo import DEMO_USERS
from cloudcounter.hub.settings import Settings, SettingsError
from tests.conftest import ROOT, Hub
from tests.test_security import refused

SECRETS = {"CLOUDCOUNTER_SECRET_KEY": "k" * 40, "CLOUDCOUNTER_CUSTOMER_TOKEN_SECRET": "c" * 40}


@pytest.mark.parametrize("env,message", [
    ({"CLOUDCOUNTER_CUSTOMER_TOKEN_SECRET": "k" * 40}, "must differ"),
    ({"CLOUDCOUNTER_DEMO": "1", "CLOUDCOUNTER_HOST": "0.0.0.0"}, "loopback"),
    ({"CLOUDCOUNTER_DEMO": "1", "CLOUDCOUNTER_HOST": "192.168.1.20"}, "loopback"),
    ({"CLOUDCOUNTER_CUSTOMER_TOKEN_TTL_S": "7200"}, "CUSTOMER_TOKEN_MAX_TTL_S"),
    ({"CLOUDCOUNTER_STAFF_TOKEN_TTL_S": "99999"}, "STAFF_SESSION_TTL_S"),
    ({"CLOUDCOUNTER_AT_REST_KEY": "not base64 at all"}, "AT_REST_KEY"),
    ({"CLOUDCOUNTER_AT_REST_KEY": "c2hvcnQ="}, "AT_REST_KEY"),
    ({"CLOUDCOUNTER_TLS_CERT": "/nonexistent.pem"}, "TLS_KEY go together"),
    ({"CLOUDCOUNTER_TRUSTED_PROXIES": "the proxy"}, "TRUSTED_PROXIES"),
    ({"CLOUDCOUNTER_TOTP_REQUIRED_ROLES": "auditor,wizard"}, "wizard"),
])
def test_unsafe_settings_stop_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**SECRETS, **env})


def test_demo_mode_on_loopback_is_fine() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert Settings.from_env({"CLOUDCOUNTER_DEMO": "1", "CLOUDCOUNTER_HOST": host}).demo


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    full["CLOUDCOUNTER_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/p.db"
    full.update(env)
    return subprocess.run([sys.executable, "-m", "cloudcounter", *args], env=full,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.integration
def test_demo_seed_is_refused_outside_demo_mode(tmp_path: Path) -> None:
    assert cli(tmp_path, "db", "upgrade", **SECRETS).returncode == 0
    r = cli(tmp_path, "demo", "seed", **SECRETS)
    assert r.returncode == 2 and "only in demo mode" in r.stderr
    import sqlite3
    with sqlite3.connect(tmp_path / "p.db") as db:
        assert db.execute("select count(*) from users").fetchone() == (0,)
    ok = cli(tmp_path, "demo", "seed", CLOUDCOUNTER_DEMO="1")
    assert ok.returncode == 0 and "user admin (admin)" in ok.stdout


def test_customer_tokens_claiming_a_long_life_are_refused() -> None:
    secret = "s" * 40
    now = time.time()
    years = jwt.encode({"sub": "cus_1", "aud": "cloudcounter-customer", "iat": int(now),
                        "exp": int(now + 5 * 365 * 86400)}, secret, algorithm="HS256")
    with pytest.raises(Unauthenticated) as info:
        verify_customer_token(secret, years, max_ttl_s=3600)
    assert info.value.code == "token_lifetime_exceeded"
    no_iat = jwt.encode({"sub": "cus_1", "aud": "cloudcounter-customer",
                         "exp": int(now + 7200)}, secret, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verify_customer_token(secret, no_iat, max_ttl_s=3600)
    future = jwt.encode({"sub": "cus_1", "aud": "cloudcounter-customer", "iat": int(now + 999),
                         "exp": int(now + 1200)}, secret, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verify_customer_token(secret, future, max_ttl_s=3600)
    ok = mint_customer_token(secret, "cus_1", 3600)
    assert verify_customer_token(secret, ok, max_ttl_s=3600).customer_id == "cus_1"


@pytest.mark.integration
async def test_the_hub_refuses_a_customer_token_for_years(hub: Hub) -> None:
    token = mint_customer_token(hub.settings.customer_token_secret, "cus_demo_barack",
                                3 * 365 * 86400)
    data = await refused(hub, "/customer", {"token": token})
    assert data["code"] == "token_lifetime_exceeded"


@pytest.mark.integration
async def test_security_headers_on_pages_and_the_api(hub: Hub) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/agent", "/customer", "/audit", "/api/services", "/healthz",
                     "/static/common.js", "/api/nowhere"):
            async with http.get(hub.url + path) as r:
                h = r.headers
                assert h["X-Content-Type-Options"] == "nosniff", path
                assert h["Referrer-Policy"] == "no-referrer", path
                csp = h["Content-Security-Policy"]
                assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
                assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
                assert "Strict-Transport-Security" not in h  # plain HTTP
        async with http.get(hub.url + "/api/nowhere") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.integration
async def test_serve_with_tls_sets_secure_cookies_and_hsts(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert cli(tmp_path, "db", "upgrade", CLOUDCOUNTER_DEMO="1").returncode == 0
    assert cli(tmp_path, "demo", "seed", CLOUDCOUNTER_DEMO="1",
               CLOUDCOUNTER_FACES_DIR=str(tmp_path)).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    env.update(CLOUDCOUNTER_DEMO="1", CLOUDCOUNTER_VISION_WORKERS="0",
               CLOUDCOUNTER_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/p.db")
    proc = subprocess.Popen([sys.executable, "-m", "cloudcounter", "serve", "--port", str(port),
                             "--tls-cert", str(cert), "--tls-key", str(key)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    url = f"https://localhost:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            for _ in range(300):
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                await asyncio.sleep(0.1)
            async with http.get(url + "/healthz") as r:
                assert r.status == 200
                assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
            password = next(p for u, p, *_ in DEMO_USERS if u == "audrey")
            async with http.post(url + "/api/login", json={"username": "audrey",
                                                           "password": password}) as r:
                assert r.status == 200
                assert r.cookies["cc_session"]["secure"] and r.cookies["cc_refresh"]["secure"]
        plain: Any = None
        try:  # plain HTTP on the TLS port is not served
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as plain:
                    assert plain.status != 200
        except aiohttp.ClientError:
            pass
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
