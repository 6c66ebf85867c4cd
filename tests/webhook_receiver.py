"""A real HTTP receiver of webhooks for the tests (aiohttp on a free loopback port) that can
answer, fail, be slow, refuse one event or be down; it checks every signature and keeps
what it got, deduplicated by event id as a real receiver would."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cloudcounter.webhooks import signing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    event_id: str
    type: str
    body: dict[str, Any]
    headers: dict[str, str]
    signed: bool


@dataclass
class Receiver:
    secret: str = ""
    port: int = field(default_factory=free_port)
    mode: str = "ok"  # ok | fail | slow
    slow_s: float = 2.0
    refuse: set[str] = field(default_factory=set)  # event ids answered 400
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def events(self) -> dict[str, Received]:
        """What the receiver keeps: each event once (first delivery wins)."""
        out: dict[str, Received] = {}
        for r in self.requests:
            if r.signed and r.event_id not in self.refuse:
                out.setdefault(r.event_id, r)
        return out

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        signed = bool(self.secret) and signing.verify(
            self.secret, request.headers.get(signing.HEADER, ""), raw)
        self.requests.append(Received(body["id"], body["type"], body, dict(request.headers),
                                      signed))
        if self.mode == "fail":
            return web.Response(status=503, text="down for maintenance")
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)
        if body["id"] in self.refuse:
            return web.Response(status=400, text="unknown payload")
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
