"""Which hub node holds which connection: presence, on Redis, for several nodes.

Two Redis hashes per centre (``{prefix}:presence:agent`` and ``{prefix}:presence:customer``):
field = the agent's user id or the customer's id, value = the node that holds the connection.
A node writes its own entries on connect and removes them on disconnect, only if they are
still its own (a newer connection on another node wins); when a node's lease lapses, the
survivor that claims it removes every entry that names it (:meth:`RedisPresence.drop_node`).

:class:`LocalPresence` is the single-node default: nothing to share, nothing written.
Presence only *reports* (``where``): no call is ever ended from one node's local view.

Redis holds nothing durable: a restart empties the hashes, and a node that lapsed and came
back (frozen, then thawed) finds its entries removed. Each node therefore keeps its own
entries in memory too and :meth:`RedisPresence.restore` writes back those missing
(``HSETNX``: an entry another node wrote since is left alone); the hub calls it every
lease period (hub.cluster).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

KINDS = ("agent", "customer")
TIMEOUT_S = 5.0

# remove a field only if it still names this node
_DEL_IF_MINE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class Presence(Protocol):
    async def connected(self, kind: str, ident: str) -> None: ...

    async def disconnected(self, kind: str, ident: str) -> None: ...

    async def where(self, kind: str, ident: str) -> str | None: ...

    async def drop_node(self, node_id: str) -> int: ...

    async def entries_of(self, node_id: str) -> dict[str, list[str]]: ...


class LocalPresence:
    """One node: every connection is here."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._held: dict[str, set[str]] = {k: set() for k in KINDS}

    async def connected(self, kind: str, ident: str) -> None:
        self._held[kind].add(ident)

    async def disconnected(self, kind: str, ident: str) -> None:
        self._held[kind].discard(ident)

    async def where(self, kind: str, ident: str) -> str | None:
        return self.node_id if ident in self._held[kind] else None

    async def drop_node(self, node_id: str) -> int:
        return 0

    async def entries_of(self, node_id: str) -> dict[str, list[str]]:
        """One node knows only its own connections."""
        if node_id != self.node_id:
            return {k: [] for k in KINDS}
        return {k: sorted(v) for k, v in self._held.items()}


class RedisPresence:
    def __init__(self, redis: Any, node_id: str, prefix: str = "cc") -> None:
        self.redis, self.node_id, self.prefix = redis, node_id, prefix
        self._del_if_mine = redis.register_script(_DEL_IF_MINE)
        self._held: dict[str, set[str]] = {k: set() for k in KINDS}  # this node's own

    def _key(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown presence kind {kind!r}")
        return f"{self.prefix}:presence:{kind}"

    async def connected(self, kind: str, ident: str) -> None:
        key = self._key(kind)
        self._held[kind].add(ident)  # first: restored later if Redis is down now
        await asyncio.wait_for(self.redis.hset(key, ident, self.node_id), TIMEOUT_S)

    async def disconnected(self, kind: str, ident: str) -> None:
        key = self._key(kind)
        self._held[kind].discard(ident)
        await asyncio.wait_for(self._del_if_mine(keys=[key], args=[ident, self.node_id]),
                               TIMEOUT_S)

    async def restore(self) -> int:
        """Write back this node's entries that Redis lost (a restart, a lapse); how many."""
        restored = 0
        for kind in KINDS:
            idents = sorted(self._held[kind])
            for start in range(0, len(idents), 1000):  # bounded pipelines
                pipe = self.redis.pipeline(transaction=False)
                for ident in idents[start:start + 1000]:
                    pipe.hsetnx(self._key(kind), ident, self.node_id)
                done = await asyncio.wait_for(pipe.execute(), TIMEOUT_S)
                restored += sum(int(bool(x)) for x in done)
        return restored

    async def where(self, kind: str, ident: str) -> str | None:
        value = await asyncio.wait_for(self.redis.hget(self._key(kind), ident), TIMEOUT_S)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def entries_of(self, node_id: str) -> dict[str, list[str]]:
        """Per kind, the ids whose entry names ``node_id`` (what a lapsed node held)."""
        out: dict[str, list[str]] = {}
        for kind in KINDS:
            found: list[str] = []
            async for fld, value in self.redis.hscan_iter(self._key(kind)):
                node = value.decode() if isinstance(value, bytes) else str(value)
                if node == node_id:
                    found.append(fld.decode() if isinstance(fld, bytes) else str(fld))
            out[kind] = sorted(found)
        return out

    async def drop_node(self, node_id: str) -> int:
        """Remove every entry naming ``node_id`` (a lapsed node); how many were removed."""
        removed = 0
        for kind in KINDS:
            key = self._key(kind)
            async for field, value in self.redis.hscan_iter(key):
                node = value.decode() if isinstance(value, bytes) else str(value)
                if node == node_id:
                    removed += int(await self._del_if_mine(keys=[key], args=[field, node_id]))
        return removed
