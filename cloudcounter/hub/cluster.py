"""This hub node among others (``CLOUDCOUNTER_SOCKETIO_MANAGER=redis``): its lease, the
others' lapses, and presence (docs/scaling.md).

The node registers itself as a member of kind ``node`` (cloudcounter.cluster.registry) with
its address and connection counts, renewing a lease of ``CLOUDCOUNTER_NODE_LEASE_S``. Every
node watches the others: a node whose lease lapses (killed, frozen, cut off) is claimed by
exactly one survivor, which logs it, counts it on ``/metrics`` and removes its presence
entries. What happens to that node's calls is the shared queue's business (not built yet):
nothing here ends a call.

On one node (the default) :func:`start` returns a :class:`NodeCluster` with local presence
and no Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloudcounter.cluster.presence import LocalPresence, Presence, RedisPresence
from cloudcounter.cluster.redis_client import make_redis
from cloudcounter.cluster.registry import LapseWatcher, LeaseKeeper, RedisRegistry

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

log = logging.getLogger(__name__)
NODE = "node"


@dataclass
class NodeCluster:
    presence: Presence
    lapsed: list[str] = field(default_factory=list)  # nodes this node saw lapse
    redis: Any = None
    registry: RedisRegistry | None = None
    keeper: LeaseKeeper | None = None
    watcher: LapseWatcher | None = None
    restorer: "asyncio.Task[None] | None" = None  # writes back presence Redis lost

    async def alive_nodes(self) -> list[str]:
        if self.registry is None:
            return []
        return sorted(m.member_id for m in await self.registry.alive(NODE))

    async def stop(self) -> None:
        if self.restorer is not None:
            self.restorer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.restorer
        if self.watcher is not None:
            await self.watcher.stop()
        if self.keeper is not None:
            await self.keeper.stop(leave=True)  # a clean stop is not a lapse
        if self.redis is not None:
            await self.redis.aclose()


async def start(ctx: "HubContext") -> NodeCluster:
    s = ctx.settings
    if s.socketio_manager != "redis":
        return NodeCluster(LocalPresence(s.node_id))
    redis = make_redis(s.redis_url, s.redis_max_connections)
    registry = RedisRegistry(redis)
    cluster = NodeCluster(RedisPresence(redis, s.node_id), redis=redis, registry=registry)

    def info() -> dict[str, Any]:
        sockets = {ns: len(h.conns) for ns, h in ctx.sio.namespace_handlers.items()
                   if hasattr(h, "conns")}
        return {"host": s.host, "port": s.port, "sockets": sockets}

    async def on_lapsed(node_id: str) -> None:
        removed = await cluster.presence.drop_node(node_id)
        cluster.lapsed.append(node_id)
        del cluster.lapsed[:-100]
        if ctx.metrics is not None:
            ctx.metrics.node_lapses.inc()
        log.warning("hub node %s lapsed (no heartbeat for %.0f s): %d presence entries "
                    "removed", node_id, s.node_lease_s, removed)

    cluster.keeper = LeaseKeeper(registry, NODE, s.node_id, info, s.node_lease_s)
    await cluster.keeper.start()
    cluster.watcher = LapseWatcher(registry, NODE, s.node_id, on_lapsed,
                                   interval_s=max(0.2, s.node_lease_s / 4))
    cluster.watcher.start()
    cluster.restorer = asyncio.create_task(_restore_presence(cluster, s.node_lease_s),
                                           name="presence-restore")
    return cluster


async def _restore_presence(cluster: NodeCluster, every_s: float) -> None:
    """Every lease period: this node's presence entries that Redis lost (restarted, or
    removed while this node was lapsed) are written back."""
    presence = cluster.presence
    assert isinstance(presence, RedisPresence)
    while True:
        await asyncio.sleep(every_s)
        try:
            restored = await presence.restore()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis down: next period
            log.debug("presence not restored: %s", exc)
            continue
        if restored:
            log.warning("%d presence entries of this node written back", restored)
