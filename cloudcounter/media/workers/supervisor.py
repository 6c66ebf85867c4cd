"""The hub's pool of media workers: local processes it starts and restarts, and (with
Redis) workers on other machines that registered themselves.

:class:`WorkerPool` holds one :class:`~.remote.WorkerLink` per worker and places new calls
(:mod:`.placement`) on those whose lease is live: a worker renews its lease with each load
report (once a second), into a :class:`~cloudcounter.cluster.registry.MemoryRegistry` for
local workers or Redis for remote ones. :class:`Supervisor` owns the local processes: each
slot runs one worker at a time over a Unix socket pair and starts it again when it exits,
at once after a clean exit (a drained worker: rolling upgrades), with a doubling backoff
after a crash. A link whose channel closes is *lost*: ``on_lost(link)`` ends its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudcounter.cluster.registry import MemoryRegistry, Registry

from .placement import WorkerView, choose
from .protocol import Channel
from .remote import WorkerLink

log = logging.getLogger(__name__)
KIND = "media"
BACKOFF_BASE_S, BACKOFF_MAX_S, STABLE_S = 0.5, 30.0, 60.0


FROZEN_LEASES = 3


def frozen(last_report_at: float, now: float, lease_s: float) -> bool:
    """Pure: a worker silent this long is killed (see :meth:`Supervisor._watchdog`)."""
    return now - last_report_at > FROZEN_LEASES * lease_s


def next_backoff(previous: float, ran_s: float, clean: bool) -> float:
    """Pure: the wait before a slot's next start."""
    if clean or ran_s >= STABLE_S:
        return 0.0
    return min(BACKOFF_MAX_S, max(BACKOFF_BASE_S, previous * 2))


class WorkerPool:
    def __init__(self, capacity: int, lease_s: float, registry: Registry | None = None,
                 on_lost: Callable[[WorkerLink], None] | None = None) -> None:
        self.capacity, self.lease_s = capacity, lease_s
        self.registry = registry or MemoryRegistry()
        self.links: dict[str, WorkerLink] = {}
        self.on_lost = on_lost
        self.stopping = False
        self.lost_total = 0
        self._beats: set[asyncio.Task[Any]] = set()

    def add(self, link: WorkerLink) -> None:
        link.on_lost = self._lost
        link.on_load = self._loaded
        self.links[link.worker_id] = link

    def _loaded(self, link: WorkerLink) -> None:
        if isinstance(self.registry, MemoryRegistry):  # local: we keep its lease
            task = asyncio.get_running_loop().create_task(self.registry.heartbeat(
                KIND, link.worker_id, dict(link.load), self.lease_s))
            self._beats.add(task)
            task.add_done_callback(self._beats.discard)

    def _lost(self, link: WorkerLink) -> None:
        if self.links.get(link.worker_id) is link:
            del self.links[link.worker_id]
        if self.stopping or (link.draining and not link.medias):
            return  # the hub stops, or a drained worker left after its last call
        self.lost_total += 1
        log.error("media worker %s lost with %d call(s)", link.worker_id, len(link.medias))
        if self.on_lost is not None:
            self.on_lost(link)

    async def views(self) -> list[WorkerView]:
        alive = {m.member_id: m for m in await self.registry.alive(KIND)}
        out = []
        for wid, link in list(self.links.items()):
            member = alive.get(wid)
            info = member.info if member is not None and not link.remote else link.load
            leased = link.lease_ok if link.remote else member is not None
            out.append(WorkerView(
                worker_id=wid, alive=leased and link.alive,
                draining=link.draining or bool(info.get("draining")),
                calls=max(len(link.medias), int(info.get("calls", 0))),
                capacity=int(info.get("capacity", self.capacity)),
                cpu=float(info.get("cpu", 0.0))))
        return out

    async def place(self) -> WorkerLink | None:
        chosen = choose(await self.views())
        return self.links.get(chosen) if chosen is not None else None

    async def drain(self, worker_id: str) -> int:
        link = self.links.get(worker_id)
        if link is None:
            from cloudcounter.errors import NotFound
            raise NotFound("no such media worker", code="unknown_worker")
        link.draining = True
        reply = await link.request("drain", {}, 5.0)
        return int(reply.get("calls", 0))

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"worker": wid, "pid": link.pid, "calls": len(link.medias),
                 "draining": link.draining, "alive": link.alive,
                 "cpu": link.load.get("cpu"), "packets_in": link.load.get("packets_in", 0),
                 "packets_out": link.load.get("packets_out", 0),
                 "lost": link.load.get("lost", 0),
                 "process_cpu_s": link.load.get("process_cpu_s", 0.0),
                 "tap_dropped": link.channel.dropped}
                for wid, link in sorted(self.links.items())]

    async def stop(self) -> None:
        self.stopping = True
        for link in list(self.links.values()):
            await link.channel.close()
        tasks = list(self._beats)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Slot:
    index: int
    generation: int = 0
    proc: asyncio.subprocess.Process | None = None
    worker_id: str = ""
    restarts: int = 0


class Supervisor:
    """``count`` local worker processes for ``pool``; ``node`` names them in ids."""

    def __init__(self, pool: WorkerPool, count: int, node: str, capacity: int,
                 command: list[str] | None = None) -> None:
        self.pool, self.count, self.node, self.capacity = pool, count, node, capacity
        self.command = command or [sys.executable, "-m", "cloudcounter", "media-worker"]
        self.slots = [Slot(i) for i in range(count)]
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(count)}
        self._stopping = False

    async def start(self, wait_s: float = 30.0) -> None:
        self._tasks = [asyncio.create_task(self._run(slot), name=f"media-worker-{slot.index}")
                       for slot in self.slots]
        if self.slots:
            self._tasks.append(asyncio.create_task(self._watchdog(), name="media-watchdog"))
        with contextlib.suppress(TimeoutError):  # the hub starts anyway; calls wait
            async with asyncio.timeout(wait_s):
                for event in self._ready.values():
                    await event.wait()

    async def _run(self, slot: Slot) -> None:
        backoff = 0.0
        while not self._stopping:
            if backoff:
                await asyncio.sleep(backoff)
            started = time.monotonic()
            code = await self._once(slot)
            if self._stopping:
                return
            clean = code == 0
            backoff = next_backoff(backoff, time.monotonic() - started, clean)
            slot.restarts += 1
            (log.info if clean else log.error)(
                "media worker %s exited (%s); starting it again in %.1f s", slot.worker_id,
                code, backoff)

    async def _watchdog(self) -> None:
        """A local worker whose lease lapsed (no load report for ``lease_s``) takes no new
        call (placement); one silent for ``FROZEN_LEASES`` leases is frozen or wedged: it
        is killed, so that its calls end ``worker_lost`` and its slot starts afresh."""
        lease = self.pool.lease_s
        while True:
            await asyncio.sleep(lease / 2)
            now = time.monotonic()
            for slot in self.slots:
                link = self.pool.links.get(slot.worker_id)
                proc = slot.proc
                if link is None or proc is None or proc.returncode is not None \
                        or link.load_at is None:
                    continue
                if frozen(link.load_at, now, lease):
                    log.error("media worker %s silent for %.1f s: killing it", slot.worker_id,
                              now - link.load_at)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()

    async def _once(self, slot: Slot) -> int:
        slot.generation += 1
        slot.worker_id = f"{self.node}/w{slot.index}.{slot.generation}"
        hub_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command, "--fd", str(worker_end.fileno()), "--id", slot.worker_id,
                "--capacity", str(self.capacity), pass_fds=(worker_end.fileno(),),
                stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            hub_end.close()
            raise
        finally:
            worker_end.close()
        slot.proc = proc
        reader, writer = await asyncio.open_unix_connection(sock=hub_end)
        channel = Channel(reader, writer, name=f"media worker {slot.worker_id}")
        link = WorkerLink(slot.worker_id, channel, pid=proc.pid)
        self.pool.add(link)
        reading = asyncio.create_task(channel.run(), name=f"channel-{slot.worker_id}")
        try:
            with contextlib.suppress(Exception):  # its first load report is its lease
                link.load = await channel.request("ping", {}, 30.0)
                link.load_at = time.monotonic()
                self.pool._loaded(link)
            self._ready[slot.index].set()
            await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled (the hub stops): the stop kills it
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            await channel.close()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        return int(proc.returncode or 0)

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self.pool.stopping = True
        procs = [s.proc for s in self.slots if s.proc is not None and s.proc.returncode is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)  # a worker without calls exits at once
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(p.wait() for p in procs))
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None
                and s.proc.returncode is None]


def default_workers() -> int:
    return os.cpu_count() or 1
