"""The reference credit service: a small loan-origination system speaking the credit-system
contract (docs/credit-system.md), with its own SQLite file.

A bank replaces it by pointing ``CLOUDCOUNTER_CREDIT_URL`` at its own system. It is what
``make run`` starts beside the hub, and what the tests talk to over real HTTP.

* ``GET  /v1/customers/{customer_id}/applications``: the customer's applications;
* ``GET  /v1/applications/{application_id}``: one application in full;
* ``POST /v1/applications/{application_id}/interview-results`` (header
  ``Idempotency-Key``): records an interview result **once per key**: the same key with the
  same body answers the first record again (``duplicate: true``, 200); the same key with
  another body is refused (409 ``idempotency_conflict``);
* ``GET  /v1/applications/{application_id}/interview-results``: what was recorded;
* ``GET  /healthz``.

With a token (``--token`` or ``CLOUDCOUNTER_CREDIT_SERVICE_TOKEN``) every ``/v1`` request
needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiosqlite
from aiohttp import web
from pydantic import ValidationError

from cloudcounter.credit.contract import (
    API_PREFIX, IDEMPOTENCY_HEADER, InterviewResult, error_body,
)

DB: web.AppKey["CreditStore"] = web.AppKey("credit_db")
SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_applications_customer ON applications (customer_id);
CREATE TABLE IF NOT EXISTS interview_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    application_id TEXT NOT NULL REFERENCES applications (id),
    idempotency_key TEXT NOT NULL UNIQUE,
    body_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL
);
"""
MAX_BODY = 256 * 1024


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class CreditStore:
    """The service's SQLite file (one connection; aiosqlite runs it in its own thread)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = await aiosqlite.connect(self.path, timeout=30)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.executescript(SCHEMA)
        await self.db.commit()

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

    @property
    def conn(self) -> aiosqlite.Connection:
        assert self.db is not None
        return self.db

    async def put_application(self, app: dict[str, Any]) -> bool:
        """Insert an application unless its id exists; True when inserted."""
        cur = await self.conn.execute(
            "INSERT OR IGNORE INTO applications (id, customer_id, status, body, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (app["id"], app["customer_id"], app["status"], json.dumps(app),
             app.get("created_at") or now_iso()))
        await self.conn.commit()
        return cur.rowcount == 1

    async def applications_of(self, customer_id: str) -> list[dict[str, Any]]:
        async with self.conn.execute(
                "SELECT body FROM applications WHERE customer_id = ? ORDER BY created_at, id",
                (customer_id,)) as cur:
            rows = await cur.fetchall()
        out = []
        for (body,) in rows:
            a = json.loads(body)
            out.append({k: a.get(k) for k in ("id", "status", "product", "loan_amount",
                                               "currency", "created_at")})
        return out

    async def application(self, app_id: str) -> dict[str, Any] | None:
        async with self.conn.execute("SELECT body FROM applications WHERE id = ?",
                                     (app_id,)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else None

    async def record_result(self, app_id: str, key: str, body: dict[str, Any]
                            ) -> tuple[dict[str, Any], bool]:
        """(the record, whether it was there already); raises ValueError on a key reused
        with another body."""
        text = canonical(body)
        digest = hashlib.sha256(text.encode()).hexdigest()
        existing = await self._by_key(key)
        if existing is None:
            public_id = "res_" + hashlib.sha256(key.encode()).hexdigest()[:16]
            try:
                await self.conn.execute(
                    "INSERT INTO interview_results (public_id, application_id, "
                    "idempotency_key, body_sha256, body, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (public_id, app_id, key, digest, text, now_iso()))
                await self.conn.commit()
            except sqlite3.IntegrityError:  # the same key at the same moment
                await self.conn.rollback()
            else:
                existing = await self._by_key(key)
                assert existing is not None
                return existing, False
            existing = await self._by_key(key)
            assert existing is not None
        if existing["body_sha256"] != digest or existing["application_id"] != app_id:
            raise ValueError("idempotency key reused with another body")
        return existing, True

    async def _by_key(self, key: str) -> dict[str, Any] | None:
        async with self.conn.execute(
                "SELECT public_id, application_id, body_sha256, received_at, body "
                "FROM interview_results WHERE idempotency_key = ?", (key,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return {"result_id": row[0], "application_id": row[1], "body_sha256": row[2],
                "received_at": row[3], "body": row[4]}

    async def results(self, app_id: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT public_id, application_id, idempotency_key, received_at, body "
               "FROM interview_results")
        args: tuple[Any, ...] = ()
        if app_id is not None:
            sql += " WHERE application_id = ?"
            args = (app_id,)
        async with self.conn.execute(sql + " ORDER BY id", args) as cur:
            rows = await cur.fetchall()
        return [{"result_id": r[0], "application_id": r[1], "idempotency_key": r[2],
                 "received_at": r[3], **json.loads(r[4])} for r in rows]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(error_body(code, message), status=status)


def create_credit_app(db_path: str, token: str = "", seed: bool = True,
                      middlewares: Iterable[Any] = ()) -> web.Application:
    """The reference credit service. ``middlewares`` come first (tests inject faults)."""
    store = CreditStore(db_path)

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if token and request.path.startswith(API_PREFIX + "/"):
            got = request.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
                return _error(401, "unauthenticated", "a valid bearer token is required")
        return await handler(request)

    app = web.Application(client_max_size=MAX_BODY, middlewares=[*middlewares, auth])
    app[DB] = store

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await store.open()
        if seed:
            from cloudcounter.credit.seed import DEMO_APPLICATIONS
            for a in DEMO_APPLICATIONS:
                await store.put_application(a)
        yield
        await store.close()

    app.cleanup_ctx.append(lifecycle)
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get(API_PREFIX + "/customers/{customer_id}/applications", list_applications)
    r.add_get(API_PREFIX + "/applications/{application_id}", get_application)
    r.add_post(API_PREFIX + "/applications/{application_id}/interview-results", post_result)
    r.add_get(API_PREFIX + "/applications/{application_id}/interview-results", get_results)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_applications(request: web.Request) -> web.Response:
    apps = await request.app[DB].applications_of(request.match_info["customer_id"])
    return web.json_response({"applications": apps})


async def get_application(request: web.Request) -> web.Response:
    a = await request.app[DB].application(request.match_info["application_id"])
    if a is None:
        return _error(404, "not_found", "no such application")
    return web.json_response(a)


async def post_result(request: web.Request) -> web.Response:
    app_id = request.match_info["application_id"]
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if not 8 <= len(key) <= 128 or not all(c.isalnum() or c in "_.:-" for c in key):
        return _error(400, "idempotency_key_required",
                      f"a {IDEMPOTENCY_HEADER} header of 8-128 characters [A-Za-z0-9_.:-]")
    try:
        raw = await request.json()
        result = InterviewResult.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        return _error(400, "invalid_result", str(exc).split("\n")[0][:300])
    if result.application_id != app_id:
        return _error(400, "invalid_result", "application_id differs from the path")
    store = request.app[DB]
    application = await store.application(app_id)
    if application is None:
        return _error(404, "not_found", "no such application")
    if application.get("customer_id") != result.customer_id:
        return _error(400, "customer_mismatch", "the application is another customer's")
    try:
        rec, duplicate = await store.record_result(app_id, key, result.model_dump())
    except ValueError as exc:
        return _error(409, "idempotency_conflict", str(exc))
    return web.json_response({"result_id": rec["result_id"], "received_at": rec["received_at"],
                              "duplicate": duplicate}, status=200 if duplicate else 201)


async def get_results(request: web.Request) -> web.Response:
    return web.json_response(
        {"results": await request.app[DB].results(request.match_info["application_id"])})
