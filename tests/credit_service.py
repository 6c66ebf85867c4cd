"""The reference credit service on a real port, with knobs for faults (tests only):
``faults.mode`` = ``"slow"`` (answer after ``delay_s``), ``"500"``, ``"garbage"`` (200 with
a body that is not JSON), ``"wrong"`` (200 with JSON that is not the contract's),
``"record_then_hang"`` (the request is handled, then the answer waits ``delay_s``);
``faults.times`` = how many requests get the fault (None: all). The service itself is the
real one (its SQLite file, idempotency, seed); ``stop()``/``start()`` take it down and up
on the same port."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from cloudcounter.credit.service import DB, CreditStore, create_credit_app
from tests.webhook_receiver import free_port


@dataclass
class Faults:
    mode: str | None = None
    times: int | None = None
    delay_s: float = 2.0
    only_path: str = ""  # a substring of the path; empty: every path
    seen: list[str] = field(default_factory=list)  # "METHOD path" of every request
    recorded: int = 0  # requests handled by "record_then_hang"
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends the hangs

    def take(self, path: str) -> str | None:
        if self.mode is None or (self.only_path and self.only_path not in path):
            return None
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.mode


class CreditService:
    def __init__(self, tmp: Path, port: int | None = None, token: str = "") -> None:
        self.db_path = str(tmp / "credit.db")
        self.port = port or free_port()
        self.token = token
        self.faults = Faults()
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> CreditStore:
        assert self.app is not None
        return self.app[DB]

    async def start(self) -> "CreditService":
        faults = self.faults

        @web.middleware
        async def inject(request: web.Request, handler: Any) -> web.StreamResponse:
            faults.seen.append(f"{request.method} {request.path}")
            mode = faults.take(request.path)
            if mode == "slow":  # the answer comes after delay_s (or when stopped)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(faults.release.wait(), faults.delay_s)
            elif mode == "500":
                return web.json_response({"error": {"code": "boom", "message": "boom"}},
                                         status=500)
            elif mode == "garbage":
                return web.Response(text="<html>proxy error", content_type="application/json")
            elif mode == "wrong":
                return web.json_response({"unexpected": True})
            elif mode == "record_then_hang":  # recorded, but the answer never comes
                response = await handler(request)
                faults.recorded += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(faults.release.wait(), faults.delay_s)
                return response
            return await handler(request)

        self.app = create_credit_app(self.db_path, token=self.token, middlewares=[inject])
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.faults.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def results(self, app_id: str | None = None) -> list[dict[str, Any]]:
        """What the credit system recorded (read from its file, the service up or down)."""
        store = CreditStore(self.db_path)
        await store.open()
        try:
            return await store.results(app_id)
        finally:
            await store.close()
