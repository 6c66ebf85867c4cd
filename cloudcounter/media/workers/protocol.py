"""The internal protocol between the hub and a media worker (docs/media.md, "Media workers").

A frame is ``!II`` (the JSON header's length, the binary payload's length), the header
(UTF-8 JSON object) and the payload (raw bytes, used only for decoded tap frames). Three
kinds of header:

* ``{"t": "req", "id": 7, "m": "answer", "a": {...}}``: a request, answered exactly once;
* ``{"t": "res", "id": 7, "r": {...}}`` or ``{"t": "res", "id": 7, "e": {"code": ...,
  "message": ..., "http_status": ...}}``: its answer or its error (codes carried across);
* ``{"t": "ev", "e": "leg_ended", "a": {...}}``: an event, never answered.

Everything is bounded: a header at most :data:`MAX_HEADER` bytes, a payload at most
:data:`MAX_PAYLOAD`, at most ``max_pending`` requests in flight, *lossy* events (tap
frames) are dropped while the socket's write buffer holds more than ``lossy_limit`` bytes,
and a peer leaving more than :data:`MAX_BUFFERED` bytes unread is closed.
Every request has a timeout. A malformed frame closes the channel (the peer is broken).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from cloudcounter.errors import CloudCounterError

log = logging.getLogger(__name__)
HEADER = struct.Struct("!II")
MAX_HEADER = 1 << 20  # an SDP is a few KiB; a stats reply a few tens
MAX_PAYLOAD = 8 << 20  # one decoded 1080p frame (yuv420p) is 3 MiB
MAX_BUFFERED = 32 << 20  # unread bytes before a peer counts as wedged
KINDS = frozenset({"req", "res", "ev"})

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
EventHandler = Callable[[str, dict[str, Any], bytes], None]


class ProtocolError(CloudCounterError):
    code = "worker_protocol"


class WorkerGone(CloudCounterError):
    """The worker's channel is closed (it exited, crashed or was killed)."""

    code = "media_unavailable"
    http_status = 503
    retryable = True


class WorkerTimeout(CloudCounterError):
    code = "worker_timeout"
    http_status = 504
    retryable = True


class WorkerBusy(CloudCounterError):
    code = "worker_busy"
    http_status = 503
    retryable = True


class RemoteFailure(CloudCounterError):
    """An error the other side raised, with its code, message and HTTP status."""

    def __init__(self, code: str, message: str, http_status: int = 500) -> None:
        super().__init__(message, code=code)
        self.http_status = http_status


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode()
    if len(body) > MAX_HEADER or len(payload) > MAX_PAYLOAD:
        raise ProtocolError("frame too large")
    return HEADER.pack(len(body), len(payload)) + body + payload


def decode_header(body: bytes) -> dict[str, Any]:
    """Validate a header at the edge: a JSON object with a known kind and its fields."""
    try:
        msg = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict) or msg.get("t") not in KINDS:
        raise ProtocolError("not a protocol message")
    kind = msg["t"]
    if kind in ("req", "res") and not isinstance(msg.get("id"), int):
        raise ProtocolError("a request or answer needs an integer id")
    if kind == "req" and not (isinstance(msg.get("m"), str) and isinstance(msg.get("a"), dict)):
        raise ProtocolError("a request needs a method and an argument object")
    if kind == "ev" and not (isinstance(msg.get("e"), str) and isinstance(msg.get("a"), dict)):
        raise ProtocolError("an event needs a name and an argument object")
    if kind == "res" and not (isinstance(msg.get("r"), dict) or isinstance(msg.get("e"), dict)):
        raise ProtocolError("an answer needs a result or an error")
    return msg


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    head = await reader.readexactly(HEADER.size)
    n_body, n_payload = HEADER.unpack(head)
    if n_body > MAX_HEADER or n_payload > MAX_PAYLOAD:
        raise ProtocolError(f"frame too large ({n_body} + {n_payload} bytes)")
    body = await reader.readexactly(n_body)
    payload = await reader.readexactly(n_payload) if n_payload else b""
    return decode_header(body), payload


def error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CloudCounterError):
        return {"code": exc.code, "message": exc.message,
                "http_status": int(getattr(exc, "http_status", 500))}
    return {"code": "worker_failed", "message": f"the worker failed ({type(exc).__name__})",
            "http_status": 500}


class Channel:
    """Both directions over one stream pair: requests (answered once), events.

    ``handler(method, args)`` answers the peer's requests (each in a task of its own, owned
    here); ``on_event(name, args, payload)`` gets the peer's events on the loop, in order.
    :meth:`run` reads until the peer closes; then every waiting request fails with
    :class:`WorkerGone` and ``on_closed`` is called once.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 handler: Handler | None = None, on_event: EventHandler | None = None,
                 max_pending: int = 256, lossy_limit: int = 2 << 20, name: str = "channel"
                 ) -> None:
        self.reader, self.writer, self.name = reader, writer, name
        self.handler, self.on_event = handler, on_event
        self.max_pending, self.lossy_limit = max_pending, lossy_limit
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._write_lock = asyncio.Lock()
        self.closed = False
        self.on_closed: Callable[[], None] | None = None
        self.dropped = 0  # lossy events not sent (the peer is behind)
        self.frames_in = self.frames_out = 0

    # -- sending -----------------------------------------------------------------------
    async def _send(self, data: bytes) -> None:
        if self.closed:
            raise WorkerGone(f"{self.name} is closed")
        async with self._write_lock:
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                self._close()
                raise WorkerGone(f"{self.name}: {exc}") from None
        self.frames_out += 1

    async def request(self, method: str, args: dict[str, Any], timeout_s: float = 15.0
                      ) -> dict[str, Any]:
        if self.closed:
            raise WorkerGone(f"{self.name} is closed")
        if len(self._waiting) >= self.max_pending:
            raise WorkerBusy(f"{self.name}: {self.max_pending} requests in flight")
        self._next += 1
        rid = self._next
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            async with asyncio.timeout(timeout_s):  # a frozen peer does not drain either
                await self._send(encode({"t": "req", "id": rid, "m": method, "a": args}))
                return await fut
        except TimeoutError:
            raise WorkerTimeout(f"{self.name} did not answer {method} in {timeout_s} s") \
                from None
        finally:
            self._waiting.pop(rid, None)

    def notify(self, event: str, args: dict[str, Any], payload: bytes = b"", *,
               lossy: bool = False) -> bool:
        """Send an event without waiting (frames keep their order); ``lossy`` ones are
        dropped while the peer is behind. Returns whether it was sent."""
        if self.closed:
            return False
        buffered = self.writer.transport.get_write_buffer_size()
        if lossy and buffered > self.lossy_limit:
            self.dropped += 1
            return False
        if buffered > MAX_BUFFERED:  # the peer reads nothing: it is wedged
            log.error("%s: %d bytes unread by the peer; closing", self.name, buffered)
            self._close()
            return False
        try:
            self.writer.write(encode({"t": "ev", "e": event, "a": args}, payload))
        except (ConnectionError, RuntimeError):
            self._close()
            return False
        self.frames_out += 1
        return True

    # -- receiving ---------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                msg, payload = await read_frame(self.reader)
                self.frames_in += 1
                self._dispatch(msg, payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ProtocolError as exc:
            log.error("%s: %s; closing", self.name, exc.message)
        finally:
            self._close()
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _dispatch(self, msg: dict[str, Any], payload: bytes) -> None:
        kind = msg["t"]
        if kind == "res":
            fut = self._waiting.get(msg["id"])
            if fut is None or fut.done():
                return  # its caller gave up
            if "e" in msg:
                e = msg["e"]
                fut.set_exception(RemoteFailure(str(e.get("code", "worker_failed")),
                                                str(e.get("message", "")),
                                                int(e.get("http_status", 500))))
            else:
                fut.set_result(msg["r"])
        elif kind == "ev":
            if self.on_event is not None:
                try:
                    self.on_event(msg["e"], msg["a"], payload)
                except Exception:  # noqa: BLE001 - one bad event must not stop the channel
                    log.exception("%s: event %s failed", self.name, msg["e"])
        else:
            task = asyncio.get_running_loop().create_task(
                self._answer(msg["id"], msg["m"], msg["a"]), name=f"{self.name}-{msg['m']}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, rid: int, method: str, args: dict[str, Any]) -> None:
        reply: dict[str, Any]
        try:
            if self.handler is None:
                raise ProtocolError("this side answers no requests")
            reply = {"t": "res", "id": rid, "r": await self.handler(method, args)}
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every request gets its one answer
            if not isinstance(exc, CloudCounterError):
                log.exception("%s: %s failed", self.name, method)
            reply = {"t": "res", "id": rid, "e": error_of(exc)}
        with contextlib.suppress(WorkerGone):
            await self._send(encode(reply))

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(WorkerGone(f"{self.name} closed"))
        with contextlib.suppress(Exception):
            self.writer.close()
        if self.on_closed is not None:
            self.on_closed()

    async def close(self) -> None:
        self._close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
