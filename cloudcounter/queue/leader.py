"""One router at a time: leader election with a PostgreSQL advisory lock, fenced by an epoch.

The router holds ``pg_try_advisory_lock(LOCK_KEY)`` on a connection of its own for as long as
it leads; winning it increments ``queue_leader.epoch`` and the router's writes carry that
epoch (:attr:`PostgresTransitions.epoch`): each checks it against the row under ``FOR
SHARE``, so once a newer router is elected a paused old one's transaction fails (``fenced``).
The lock dies with the connection (a dead node's session ends), the epoch never goes back.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

LOCK_KEY = 0x6363_7175  # "ccqu"


def node_id() -> str:
    """``CLOUDCOUNTER_NODE_ID``, or host name and process id."""
    return os.environ.get("CLOUDCOUNTER_NODE_ID") or f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    def __init__(self, engine: AsyncEngine, node: str | None = None) -> None:
        self.engine = engine
        self.node = node or node_id()
        self.epoch: int | None = None
        self._conn: AsyncConnection | None = None

    async def try_acquire(self) -> int | None:
        """The new epoch if this node now leads, None if another does."""
        if self.epoch is not None:
            return self.epoch
        conn = await self.engine.connect()
        try:
            won = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                      {"k": LOCK_KEY})).scalar_one()
            await conn.commit()
            if not won:
                await conn.close()
                return None
            async with self.engine.begin() as tx:
                epoch = (await tx.execute(text(
                    "UPDATE queue_leader SET epoch = epoch + 1, node = :n, since = now() "
                    "WHERE id = 1 RETURNING epoch"), {"n": self.node})).scalar_one()
        except BaseException:
            await conn.close()
            raise
        self._conn, self.epoch = conn, int(epoch)
        return self.epoch

    async def release(self) -> None:
        conn, self._conn, self.epoch = self._conn, None, None
        if conn is not None:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                await conn.commit()
            finally:
                await conn.close()
