"""What signalling asks of the media layer. The hub installs the real gateway; without one
every media request gets the ``media_unavailable`` error."""

from __future__ import annotations

from typing import Protocol

from cloudcounter.errors import CloudCounterError


class MediaUnavailable(CloudCounterError):
    code = "media_unavailable"
    http_status = 503


class MediaGateway(Protocol):
    async def answer(self, call_id: str, role: str, offer_sdp: str) -> str: ...

    async def close_leg(self, call_id: str, role: str) -> None: ...

    async def close_call(self, call_id: str, reason: str) -> None: ...

    async def add_monitor(self, call_id: str, watcher: str, role: str,
                          offer_sdp: str) -> str: ...

    async def stop_monitors(self, watcher: str, call_id: str | None = None) -> int: ...


class NoMedia:
    async def answer(self, call_id: str, role: str, offer_sdp: str) -> str:
        raise MediaUnavailable("this hub does not carry media")

    async def close_leg(self, call_id: str, role: str) -> None:
        return None

    async def close_call(self, call_id: str, reason: str) -> None:
        return None

    async def add_monitor(self, call_id: str, watcher: str, role: str,
                          offer_sdp: str) -> str:
        raise MediaUnavailable("this hub does not carry media")

    async def stop_monitors(self, watcher: str, call_id: str | None = None) -> int:
        return 0
