"""Socket.IO across hub nodes: python-socketio's ``AsyncRedisManager``, kept JSON-only.

With ``CLOUDCOUNTER_SOCKETIO_MANAGER=redis`` every hub node publishes its emits on one Redis
channel and delivers the others' to its own clients, so a node can reach any customer, agent
or lead whichever node holds the connection (rooms are per customer and per agent:
``signaling.namespaces.customer_room``).

Two changes to the stock manager, both on its internals (python-socketio 5.18, pinned):

* **JSON only.** The stock ``emit`` walks every payload looking for binary data
  (``Packet.data_is_binary``) before publishing it: the very scan the hub's
  :class:`~cloudcounter.signaling.server.JsonPacket` avoids for local emits (about 10 % of the
  hub's CPU under load). The hub's protocol carries no binary data, so :meth:`emit` builds
  the message without the scan; emits with a callback (none in the hub) keep the stock path.
* **A pool that waits.** The stock manager opens ``redis.asyncio.Redis.from_url(url,
  **redis_options)``, whose pool refuses the caller past ``max_connections`` ("Too many
  connections": the emit is dropped). :meth:`_redis_connect` builds the same client on a
  ``BlockingConnectionPool`` of ``redis_options["max_connections"]`` connections with
  timeouts, so a burst of emits waits for a free connection instead.

What Redis carries here is short-lived: an emit published while Redis is down is lost (the
stock manager retries once, then logs), which is why every client re-reads its state on
reconnect (``call:state``, ``queue:snapshot``, ``wallboard:snapshot``). The listener
reconnects by itself with a capped back-off (1 s doubling to 60 s).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio

log = logging.getLogger(__name__)

#: timeouts on every Redis call of the manager (seconds)
REDIS_TIMEOUT_S = 5.0


def redis_options(max_connections: int) -> dict[str, Any]:
    """What the hub passes to the manager (the pool size goes through ``redis_options``)."""
    return {"max_connections": max_connections, "socket_timeout": None,
            "socket_connect_timeout": REDIS_TIMEOUT_S, "health_check_interval": 15}


class HubRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """``AsyncRedisManager`` without the per-emit binary scan, on a waiting pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis: Any = None
        self.pubsub: Any = None
        self._closing: set[asyncio.Task[Any]] = set()

    async def emit(self, event: str, data: Any, namespace: str | None = None,
                   room: Any = None, skip_sid: Any = None, callback: Any = None,
                   to: Any = None, **kwargs: Any) -> None:
        if kwargs.get("ignore_queue") or callback is not None:
            await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                               callback=callback, to=to, **kwargs)
            return
        message = {"method": "emit", "event": event,
                   "data": list(data) if isinstance(data, tuple) else [data],
                   "binary": False, "namespace": namespace or "/", "room": to or room,
                   "skip_sid": skip_sid, "callback": None, "host_id": self.host_id}
        await self._handle_emit(message)  # this node's clients
        await self._publish(message)  # the other nodes'

    async def _publish(self, data: Any) -> Any:
        """The stock publish (one retry), bounded in time: a Redis that hangs must not hold
        the hub's notifications."""
        try:
            return await asyncio.wait_for(super()._publish(data), 2 * REDIS_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.connected = False  # the next publish opens a fresh client
            log.warning("Socket.IO fan-out: Redis did not take an emit in time; dropped")
            return None

    def _redis_connect(self) -> None:
        """Called by the stock manager at start and after every Redis error: one client
        (its pool reconnects by itself), a fresh subscription each time; the old
        subscription's connection is closed, not left to the garbage collector."""
        import redis.asyncio as aredis

        if getattr(self, "redis", None) is None:
            options = dict(self.redis_options)
            max_connections = int(options.pop("max_connections", 64))
            pool = aredis.BlockingConnectionPool.from_url(
                self.redis_url, max_connections=max_connections, timeout=REDIS_TIMEOUT_S,
                **options)
            self.redis = aredis.Redis.from_pool(pool)
        old = getattr(self, "pubsub", None)
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True

    async def close(self) -> None:
        """The hub's shutdown (after the listener task was cancelled)."""
        await asyncio.gather(*self._closing, return_exceptions=True)
        if getattr(self, "pubsub", None) is not None:
            await self.pubsub.aclose()
        if getattr(self, "redis", None) is not None:
            await self.redis.aclose()


def make_manager(url: str, max_connections: int, channel: str) -> HubRedisManager:
    return HubRedisManager(url, channel=channel, logger=False,
                           redis_options=redis_options(max_connections))
