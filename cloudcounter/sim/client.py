"""What both simulators share: HTTP log-in, demo tokens, a Socket.IO connection with acks."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import socketio

from cloudcounter.signaling.schemas import PROTOCOL_TEXT


#: put in a connection's event queue when the hub closes it (or dies)
GONE = "__disconnected__"


class SimError(Exception):
    pass


async def login(url: str, username: str, password: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/login",
                             json={"username": username, "password": password}) as r:
            data = await r.json()
            if r.status != 200:
                raise SimError(f"login failed: {data.get('error', data)}")
            return str(data["token"])


async def demo_customer_token(url: str, customer_id: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/demo/customer-token",
                             json={"customer_id": customer_id}) as r:
            data = await r.json()
            if r.status != 200:
                raise SimError(f"cannot get a demo token: {data.get('error', data)}")
            return str(data["token"])


class Connection:
    """One Socket.IO connection to a namespace, with typed-ish helpers."""

    def __init__(self, url: str, namespace: str, token: str,
                 protocol: int | str = PROTOCOL_TEXT,
                 http: aiohttp.ClientSession | None = None) -> None:
        self.url = url
        self.namespace = namespace
        self.token = token
        self.protocol = protocol
        self.sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False,
                                        http_session=http)
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        async def catch_all(event: str, data: Any = None) -> None:
            await self.events.put((event, data if isinstance(data, dict) else {}))
        self.sio.on("*", catch_all, namespace=namespace)
        self.closing = False

        async def gone(*_: Any) -> None:  # the hub closed the connection, or died
            if not self.closing:
                await self.events.put((GONE, {}))
        self.sio.on("disconnect", gone, namespace=namespace)

    async def connect(self) -> None:
        await self.sio.connect(self.url, namespaces=[self.namespace], transports=["websocket"],
                               auth={"token": self.token, "protocol": self.protocol},
                               wait_timeout=10)

    async def call(self, event: str, data: dict[str, Any] | None = None,
                   timeout: float = 10.0) -> dict[str, Any]:
        reply = await self.sio.call(event, data or {}, namespace=self.namespace, timeout=timeout)
        if not isinstance(reply, dict):
            raise SimError(f"{event}: unexpected reply {reply!r}")
        return reply

    async def expect(self, *names: str, timeout: float) -> tuple[str, dict[str, Any]]:
        """Wait for the next event among ``names`` (others are dropped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"no {'/'.join(names)} within {timeout}s")
            event, data = await asyncio.wait_for(self.events.get(), remaining)
            if event == GONE:  # nothing more will come: fail now, not at the timeout
                await self.events.put((GONE, {}))
                raise SimError(f"the hub closed the connection (waiting for {'/'.join(names)})")
            if event in names:
                return event, data

    async def close(self) -> None:
        self.closing = True
        await self.sio.disconnect()
