"""A PostgreSQL database of the tests' own on the machine's server (127.0.0.1:5432, or
``CLOUDCOUNTER_TEST_PG_URL``): created with a random name, optionally migrated, dropped
afterwards. Not reachable: the test fails under ``CI=true`` and is skipped otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import CI

PG_ADMIN_URL = os.environ.get("CLOUDCOUNTER_TEST_PG_URL",
                              "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def admin_sql(sql: str) -> None:
    """Run one statement on the admin database (blocking; not inside a running loop)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql+asyncpg://",
                                                          "postgresql://"), timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    asyncio.run(run())


def unreachable(exc: BaseException) -> None:
    """Fail (CI) or skip: PostgreSQL is not there."""
    if CI:
        pytest.fail(f"PostgreSQL is required in CI ({PG_ADMIN_URL}): {exc}")
    pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")


def url_of(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop(name: str) -> None:
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def private_database(prefix: str, migrate: bool = False) -> Iterator[str]:
    """The URL of a new database named ``prefix`` + random hex, dropped on exit."""
    import asyncpg

    name = prefix + secrets.token_hex(4)
    try:
        admin_sql(f"CREATE DATABASE {name}")
    except (OSError, asyncpg.PostgresError) as exc:
        unreachable(exc)
    url = url_of(name)
    try:
        if migrate:
            from cloudcounter.db.engine import make_engine
            from cloudcounter.db.migrate import upgrade_engine

            async def upgrade() -> None:
                engine = make_engine(url)
                try:
                    await upgrade_engine(engine)
                finally:
                    await engine.dispose()
            asyncio.run(upgrade())
        yield url
    finally:
        drop(name)
