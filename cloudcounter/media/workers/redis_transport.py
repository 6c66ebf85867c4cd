"""The same protocol over Redis, for workers on other machines
(``cloudcounter media-worker --redis URL``).

The worker registers as a member of kind ``media`` (:mod:`cloudcounter.cluster.registry`),
its lease renewed with its load as ``info`` (capacity, calls, CPU, packets), and answers
requests on the address ``media:<worker id>`` (:mod:`cloudcounter.cluster.requests`): the
same methods as over the socket. Its events go back as requests (method ``ev``) to the
address of the hub that opened the call, ``hub:<hub id>`` (given with ``open``). A hub with
``media_worker_redis`` lists the live members, links each new one into its pool, and treats
one whose lease lapsed as lost (its calls end ``worker_lost``). Decoded tap frames travel
base64-encoded and lossy (at most a few in flight): analysis over Redis is best effort.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import signal
import time
from typing import Any, Callable

from cloudcounter.cluster.redis_client import make_redis
from cloudcounter.cluster.registry import LeaseKeeper, RedisRegistry
from cloudcounter.cluster.requests import RedisRequests

from .host import WorkerHost
from .protocol import WorkerGone
from .remote import WorkerLink

log = logging.getLogger(__name__)
KIND = "media"
EVENT_TIMEOUT_S = 5.0
MAX_IN_FLIGHT, MAX_LOSSY_IN_FLIGHT = 256, 8


class _Sender:
    """Events as requests, each in a task owned here; bounded."""

    def __init__(self, requests: RedisRequests) -> None:
        self.requests = requests
        self.tasks: set[asyncio.Task[Any]] = set()
        self.lossy = 0
        self.dropped = 0

    def send(self, address: str, event: str, args: dict[str, Any], payload: bytes,
             lossy: bool) -> bool:
        if len(self.tasks) >= MAX_IN_FLIGHT or (lossy and self.lossy >= MAX_LOSSY_IN_FLIGHT):
            self.dropped += 1
            return False
        body = {"e": event, "a": args}
        if payload:
            body["b"] = base64.b64encode(payload).decode()
        task = asyncio.get_running_loop().create_task(self._send(address, body, lossy))
        self.tasks.add(task)
        if lossy:
            self.lossy += 1
        task.add_done_callback(self.tasks.discard)
        return True

    async def _send(self, address: str, body: dict[str, Any], lossy: bool) -> None:
        try:
            await self.requests.request(address, "ev", body, EVENT_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the hub is away: its lease view decides
            log.debug("event %s to %s not delivered: %s", body["e"], address, exc)
        finally:
            if lossy:
                self.lossy -= 1

    async def stop(self) -> None:
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class WorkerSide:
    """What :class:`~.host.WorkerHost` sees as its channel, over Redis."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender
        self.hub_of: dict[str, str] = {}  # media id -> the address of the hub that opened it
        self.closed = False

    def notify(self, event: str, args: dict[str, Any], payload: bytes = b"", *,
               lossy: bool = False) -> bool:
        if event == "load":
            return True  # the lease carries the load
        if event == "flows":
            by_hub: dict[str, dict[str, Any]] = {}
            for media_id, report in args.get("calls", {}).items():
                hub = self.hub_of.get(media_id)
                if hub is not None:
                    by_hub.setdefault(hub, {})[media_id] = report
            for hub, calls in by_hub.items():
                self.sender.send(hub, "flows", {"calls": calls}, b"", True)
            return True
        hub = self.hub_of.get(str(args.get("media")))
        return hub is not None and self.sender.send(hub, event, args, payload, lossy)


async def serve_redis(url: str, worker_id: str, capacity: int, lease_s: float) -> int:
    redis = make_redis(url)
    registry = RedisRegistry(redis)
    requests = RedisRequests(redis, me=f"media-{worker_id}")
    sender = _Sender(requests)
    done = asyncio.Event()
    host = WorkerHost(worker_id, capacity, on_idle=done.set)
    side = WorkerSide(sender)
    host.channel = side  # type: ignore[assignment]

    async def handle(method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method == "ev":
            host.on_event(str(payload.get("e")), payload.get("a") or {}, b"")
            return {}
        if method == "open":
            hub = payload.get("hub")
            if not isinstance(hub, str):
                from cloudcounter.errors import InvalidMessage
                raise InvalidMessage("open needs the hub's address", code="invalid_message")
            reply = await host.handle(method, payload)
            side.hub_of[str(payload["media"])] = hub
            return reply
        reply = await host.handle(method, payload)
        if method == "close":
            side.hub_of.pop(str(payload.get("media")), None)
        return reply

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, host.drain)
    loop.add_signal_handler(signal.SIGINT, host.drain)
    lease = LeaseKeeper(registry, KIND, worker_id, host.load, lease_s)
    await requests.serve(f"media:{worker_id}", handle)
    host.start()
    await lease.start()
    log.info("media worker %s registered on %s", worker_id, url.split("@")[-1])
    try:
        await done.wait()
    finally:
        await lease.stop()
        await host.stop()
        await sender.stop()
        await requests.close()
        with contextlib.suppress(Exception):
            await redis.aclose()
    return 0


class HubSide:
    """A Redis worker as the hub's :class:`~.remote.WorkerLink` sees its channel."""

    def __init__(self, requests: RedisRequests, sender: _Sender, worker_id: str,
                 hub_address: str) -> None:
        self.requests, self.sender = requests, sender
        self.address, self.hub_address = f"media:{worker_id}", hub_address
        self.closed = False
        self.on_event: Callable[[str, dict[str, Any], bytes], None] | None = None
        self.on_closed: Callable[[], None] | None = None

    @property
    def dropped(self) -> int:
        return self.sender.dropped

    async def request(self, method: str, args: dict[str, Any], timeout_s: float = 15.0
                      ) -> dict[str, Any]:
        if self.closed:
            raise WorkerGone(f"{self.address} is gone")
        if method == "open":
            args = {**args, "hub": self.hub_address}
        return await self.requests.request(self.address, method, args, timeout_s)

    def notify(self, event: str, args: dict[str, Any], payload: bytes = b"", *,
               lossy: bool = False) -> bool:
        return not self.closed and self.sender.send(self.address, event, args, payload, lossy)

    def lapse(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.on_closed is not None:
            self.on_closed()

    async def close(self) -> None:
        self.closed = True


class RedisDiscovery:
    """The hub's view of the Redis-registered workers: links new live members into the
    pool, loses the ones whose lease lapsed; answers their events."""

    def __init__(self, pool: Any, url: str, hub_id: str, lease_s: float) -> None:
        self.pool, self.url, self.hub_id, self.lease_s = pool, url, hub_id, lease_s
        self.redis: Any = None
        self.links: dict[str, WorkerLink] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"hub:{self.hub_id}"

    async def start(self) -> None:
        self.redis = make_redis(self.url)
        self.registry = RedisRegistry(self.redis)
        self.requests = RedisRequests(self.redis, me=f"hub-{self.hub_id}")
        self.sender = _Sender(self.requests)
        await self.requests.serve(self.address, self._event)
        await self.poll()
        self._task = asyncio.create_task(self._run(), name="media-worker-discovery")

    async def _event(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method != "ev":
            from cloudcounter.errors import InvalidMessage
            raise InvalidMessage("hubs take only events here", code="unknown_method")
        name, args = str(payload.get("e")), payload.get("a") or {}
        blob = base64.b64decode(payload["b"]) if isinstance(payload.get("b"), str) else b""
        for link in list(self.links.values()):
            media_ids = list((args.get("calls") or {}).keys()) if name == "flows" \
                else [str(args.get("media"))]
            if any(m in link.medias for m in media_ids):
                link._on_event(name, args, blob)
        return {}

    async def poll(self) -> None:
        members = {m.member_id: m for m in await self.registry.members(KIND)}
        now = time.monotonic()
        for wid, m in members.items():
            link = self.links.get(wid)
            if m.alive and link is None:
                side = HubSide(self.requests, self.sender, wid, self.address)
                link = WorkerLink(wid, side, pid=m.info.get("pid"))  # type: ignore[arg-type]
                link.remote = True
                self.links[wid] = link
                self.pool.add(link)
                log.info("media worker %s (Redis) joined", wid)
            if link is not None and m.alive:
                link.load, link.load_at = dict(m.info), now
                link.lease_ok = True
                link.draining = link.draining or bool(m.info.get("draining"))
        for wid, link in list(self.links.items()):
            gone = members.get(wid)
            if gone is None or not gone.alive:
                link.lease_ok = False
                del self.links[wid]
                log.warning("media worker %s (Redis) %s", wid,
                            "left" if gone is None else "lapsed")
                lost_side: Any = link.channel
                if gone is None:
                    link.draining = True  # it left on purpose: a loss only with calls left
                # lapsed: exactly one hub handles it, then forgets it
                elif await self.registry.claim_lapsed(KIND, wid, self.hub_id, 30.0):
                    await self.registry.forget(KIND, wid)
                lost_side.lapse()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await asyncio.wait_for(self.poll(), self.lease_s * 2)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away: the next pass tries again
                log.exception("listing media workers failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sender.stop()
        await self.requests.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
