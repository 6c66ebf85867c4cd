"""Members with leases: hub nodes and media workers say they are alive, and the others see
when one stops saying it.

A member (``kind`` "node" or "media", an id, and a small JSON ``info``: address, capacity,
load) holds a lease it renews by heartbeat. A member whose lease lapses without a
``leave`` is *lapsed*: it died, froze or lost its network. Every survivor's
:class:`LapseWatcher` sees it; :meth:`Registry.claim_lapsed` lets exactly one of them act
on it (end or hold its calls), and :meth:`Registry.forget` removes it once that is done,
so a crash between the two is picked up again by the next pass.

Two backends behind one interface (``tests/test_cluster_registry.py`` runs one contract
suite against both):

* :class:`MemoryRegistry`: one process (``make run``; media workers on one machine without
  Redis, whose supervisor is the registry's only writer).
* :class:`RedisRegistry`: several processes and machines. Leases are Redis keys with a
  time to live, so they lapse on Redis's clock, never on a frozen member's.

Keys (``prefix`` defaults to ``cc``): ``{prefix}:{kind}:members`` (hash: id -> info JSON),
``{prefix}:{kind}:lease:{id}`` (the lease, expiring), ``{prefix}:{kind}:claim:{id}``
(who handles a lapse, expiring).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)
Info = dict[str, Any]


@dataclass(frozen=True)
class Member:
    kind: str
    member_id: str
    info: Info = field(default_factory=dict)
    alive: bool = True  # False: its lease lapsed and nobody has forgotten it yet


class Registry(abc.ABC):
    """Members of each kind with their leases; every method is one atomic step."""

    @abc.abstractmethod
    async def heartbeat(self, kind: str, member_id: str, info: Info, lease_s: float) -> None:
        """Join, or renew the lease, with the member's current ``info``."""

    @abc.abstractmethod
    async def leave(self, kind: str, member_id: str) -> None:
        """A clean exit: the member is gone at once and never counted as lapsed."""

    @abc.abstractmethod
    async def members(self, kind: str) -> list[Member]:
        """Every member of ``kind``, alive or lapsed (not yet forgotten), by id."""

    @abc.abstractmethod
    async def claim_lapsed(self, kind: str, member_id: str, claimant: str,
                           hold_s: float) -> bool:
        """True for exactly one claimant while ``member_id`` is lapsed (the claim lasts
        ``hold_s``, after which another may claim it: the first claimant died meanwhile)."""

    @abc.abstractmethod
    async def forget(self, kind: str, member_id: str) -> None:
        """Remove a lapsed member once its lapse is handled (a live one is kept)."""

    async def alive(self, kind: str) -> list[Member]:
        return [m for m in await self.members(kind) if m.alive]

    async def close(self) -> None:
        return None


class MemoryRegistry(Registry):
    """One process; ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._members: dict[tuple[str, str], tuple[Info, float]] = {}  # -> (info, lease end)
        self._claims: dict[tuple[str, str], tuple[str, float]] = {}

    async def heartbeat(self, kind: str, member_id: str, info: Info, lease_s: float) -> None:
        self._members[(kind, member_id)] = (dict(info), self.clock() + lease_s)
        self._claims.pop((kind, member_id), None)

    async def leave(self, kind: str, member_id: str) -> None:
        self._members.pop((kind, member_id), None)
        self._claims.pop((kind, member_id), None)

    async def members(self, kind: str) -> list[Member]:
        now = self.clock()
        return [Member(k, m, dict(info), until > now)
                for (k, m), (info, until) in sorted(self._members.items()) if k == kind]

    async def claim_lapsed(self, kind: str, member_id: str, claimant: str,
                           hold_s: float) -> bool:
        key, now = (kind, member_id), self.clock()
        entry = self._members.get(key)
        if entry is None or entry[1] > now:
            return False
        holder = self._claims.get(key)
        if holder is not None and holder[1] > now and holder[0] != claimant:
            return False
        self._claims[key] = (claimant, now + hold_s)
        return True

    async def forget(self, kind: str, member_id: str) -> None:
        entry = self._members.get((kind, member_id))
        if entry is not None and entry[1] <= self.clock():
            del self._members[(kind, member_id)]
            self._claims.pop((kind, member_id), None)


# KEYS: members hash, lease key, claim key. ARGV: member id, info JSON, lease ms.
_HEARTBEAT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
redis.call('DEL', KEYS[3])
return 1
"""
# KEYS: members hash, lease key, claim key. ARGV: member id, claimant, hold ms.
_CLAIM = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS: members hash, lease key, claim key. ARGV: member id.
_FORGET = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""


class RedisRegistry(Registry):
    """Several processes and machines, on a ``redis.asyncio.Redis`` client (which the caller
    owns and closes)."""

    def __init__(self, redis: Any, prefix: str = "cc") -> None:
        self.redis = redis
        self.prefix = prefix
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._claim = redis.register_script(_CLAIM)
        self._forget = redis.register_script(_FORGET)

    def _keys(self, kind: str, member_id: str) -> list[str]:
        p = f"{self.prefix}:{kind}"
        return [f"{p}:members", f"{p}:lease:{member_id}", f"{p}:claim:{member_id}"]

    async def heartbeat(self, kind: str, member_id: str, info: Info, lease_s: float) -> None:
        await self._heartbeat(keys=self._keys(kind, member_id),
                              args=[member_id, json.dumps(info, separators=(",", ":")),
                                    max(1, int(lease_s * 1000))])

    async def leave(self, kind: str, member_id: str) -> None:
        keys = self._keys(kind, member_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys[0], member_id)
            pipe.delete(keys[1], keys[2])
            await pipe.execute()

    async def members(self, kind: str) -> list[Member]:
        raw = await self.redis.hgetall(f"{self.prefix}:{kind}:members")
        if not raw:
            return []
        ids = sorted(_text(k) for k in raw)
        async with self.redis.pipeline(transaction=False) as pipe:
            for member_id in ids:
                pipe.exists(self._keys(kind, member_id)[1])
            leases = await pipe.execute()
        by_id = {_text(k): v for k, v in raw.items()}
        return [Member(kind, member_id, _info(by_id[member_id]), bool(alive))
                for member_id, alive in zip(ids, leases)]

    async def claim_lapsed(self, kind: str, member_id: str, claimant: str,
                           hold_s: float) -> bool:
        return bool(await self._claim(keys=self._keys(kind, member_id),
                                      args=[member_id, claimant, max(1, int(hold_s * 1000))]))

    async def forget(self, kind: str, member_id: str) -> None:
        await self._forget(keys=self._keys(kind, member_id), args=[member_id])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info(value: Any) -> Info:
    try:
        info = json.loads(_text(value))
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


class LeaseKeeper:
    """Owns one member's heartbeat task: renews the lease every ``lease_s / 3`` with
    ``info()`` (current load and capacity); leaves on :meth:`stop`.

    A heartbeat that fails (Redis down) is logged once per outage and retried; the lease
    then lapses on its own, which is the point: a member nobody can see is treated as gone.
    """

    def __init__(self, registry: Registry, kind: str, member_id: str,
                 info: Callable[[], Info], lease_s: float) -> None:
        self.registry, self.kind, self.member_id = registry, kind, member_id
        self.info, self.lease_s = info, lease_s
        self._task: asyncio.Task[None] | None = None
        self.failing = False

    async def start(self) -> None:
        await self.registry.heartbeat(self.kind, self.member_id, self.info(), self.lease_s)
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.kind}-{self.member_id}")

    async def beat(self) -> None:
        """Renew now (after a change of ``info`` that others should see at once)."""
        await self.registry.heartbeat(self.kind, self.member_id, self.info(), self.lease_s)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await asyncio.wait_for(self.beat(), timeout=self.lease_s / 3)
                if self.failing:
                    log.warning("lease of %s %s renewed again", self.kind, self.member_id)
                self.failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or slow: keep trying
                if not self.failing:
                    log.error("lease of %s %s not renewed: %s", self.kind, self.member_id, exc)
                self.failing = True

    async def stop(self, leave: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if leave:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.registry.leave(self.kind, self.member_id), 2.0)


class LapseWatcher:
    """Owns one task that looks every ``interval_s`` for lapsed members of ``kind`` and calls
    ``on_lapsed(member_id)`` for those this process claims; a member is forgotten only after
    ``on_lapsed`` returned (an exception leaves it for the next pass)."""

    def __init__(self, registry: Registry, kind: str, claimant: str,
                 on_lapsed: Callable[[str], Awaitable[None]], interval_s: float,
                 hold_s: float = 30.0) -> None:
        self.registry, self.kind, self.claimant = registry, kind, claimant
        self.on_lapsed, self.interval_s, self.hold_s = on_lapsed, interval_s, hold_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lapses-{self.kind}")

    async def check(self) -> list[str]:
        """One pass; returns the members this process handled."""
        handled = []
        for m in await self.registry.members(self.kind):
            if m.alive or m.member_id == self.claimant:
                continue
            if not await self.registry.claim_lapsed(self.kind, m.member_id, self.claimant,
                                                    self.hold_s):
                continue
            log.warning("%s %s lapsed: handling it", self.kind, m.member_id)
            await self.on_lapsed(m.member_id)
            await self.registry.forget(self.kind, m.member_id)
            handled.append(m.member_id)
        return handled

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.wait_for(self.check(), timeout=max(self.interval_s, 5.0) * 4)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("checking %s leases failed", self.kind)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
