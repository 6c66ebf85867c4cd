"""One way to open a Redis client (redis-py's ``redis.asyncio``; the old ``aioredis`` package
is merged into it): a bounded pool that makes callers wait for a free connection (redis-py's
plain pool refuses the 65th caller instead), timeouts on every call, retries with capped
back-off."""

from __future__ import annotations

from typing import Any


def make_redis(url: str, max_connections: int = 64, timeout_s: float = 5.0) -> Any:
    """A client for ``url``; the caller closes it with ``await client.aclose()``."""
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError

    pool = aredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s, health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, TimeoutError])
    return aredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both
