"""Requests between processes (hub nodes, media workers) with one answer each, over Redis.

A process that answers requests serves an *address* (its member id): requests are pushed
onto the Redis list ``{prefix}:req:{address}`` and taken by one :class:`Responder` task.
A process that asks holds one :class:`Requester`: its replies come back on its own list
``{prefix}:reply:{requester}``, read by one task that hands each reply to the waiting
caller, so a thousand requests in flight cost one blocking connection, not a thousand.

Every request carries a deadline; a responder drops a request whose deadline passed (its
caller gave up), and a caller gets :class:`RequestTimeout` when no answer comes in time.
An error raised by the handler as a :class:`~cloudcounter.errors.CloudCounterError`
reaches the caller as a :class:`RemoteError` with the same code, message and HTTP status;
anything else as ``remote_failed``. Payloads are JSON.

:class:`LocalRequests` implements both sides in one process (tests, one machine).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any, Awaitable, Callable

from cloudcounter.errors import CloudCounterError

log = logging.getLogger(__name__)
Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
POLL_S = 1.0  # how long one blocking read waits before it looks at its stop flag


class RemoteError(CloudCounterError):
    """The far side refused or failed the request; ``code`` is its error code."""

    def __init__(self, code: str, message: str, http_status: int = 500,
                 retryable: bool = False) -> None:
        super().__init__(message, code=code)
        self.http_status = http_status
        self.retryable = retryable


class RequestTimeout(CloudCounterError):
    code = "remote_timeout"
    http_status = 504
    retryable = True


class Requests(abc.ABC):
    """Ask ``address`` to run ``method``; the answer, or an error."""

    @abc.abstractmethod
    async def request(self, address: str, method: str, payload: dict[str, Any],
                      timeout_s: float) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def serve(self, address: str, handler: Handler) -> None:
        """Answer requests to ``address`` with ``handler`` until :meth:`close`."""

    @abc.abstractmethod
    async def close(self) -> None: ...


def _error_reply(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CloudCounterError):
        return {"error": {"code": exc.code, "message": exc.message,
                          "http_status": getattr(exc, "http_status", 500),
                          "retryable": bool(getattr(exc, "retryable", False))}}
    return {"error": {"code": "remote_failed", "message": "the remote side failed",
                      "http_status": 500, "retryable": False}}


def _raise_if_error(reply: dict[str, Any]) -> dict[str, Any]:
    error = reply.get("error")
    if isinstance(error, dict):
        raise RemoteError(str(error.get("code", "remote_failed")), str(error.get("message", "")),
                          int(error.get("http_status", 500)), bool(error.get("retryable")))
    result = reply.get("result")
    return result if isinstance(result, dict) else {}


async def _answer(handler: Handler, method: str, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"result": await handler(method, payload)}
    except asyncio.CancelledError:
        raise
    except CloudCounterError as exc:
        return _error_reply(exc)
    except Exception as exc:  # noqa: BLE001 - a failing handler answers, never dies
        log.exception("request %s failed", method)
        return _error_reply(exc)


class LocalRequests(Requests):
    """Both sides in one process: a request calls the handler directly (with the timeout)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    async def request(self, address: str, method: str, payload: dict[str, Any],
                      timeout_s: float) -> dict[str, Any]:
        handler = self._handlers.get(address)
        if handler is None:
            raise RequestTimeout(f"nobody serves {address}")
        try:
            reply = await asyncio.wait_for(_answer(handler, method, payload), timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"{address} did not answer {method} in {timeout_s} s") from None
        return _raise_if_error(json.loads(json.dumps(reply)))  # as if it crossed the wire

    async def serve(self, address: str, handler: Handler) -> None:
        self._handlers[address] = handler

    async def close(self) -> None:
        self._handlers.clear()


class RedisRequests(Requests):
    """Over a ``redis.asyncio.Redis`` client the caller owns. ``me`` names this process's
    reply list (its member id). Blocking reads use their own connections from the client's
    pool: one for replies, one per served address."""

    def __init__(self, redis: Any, me: str, prefix: str = "cc", concurrency: int = 64) -> None:
        self.redis, self.me, self.prefix = redis, me, prefix
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._replies: asyncio.Task[None] | None = None
        self._closing = False

    def _reply_key(self) -> str:
        return f"{self.prefix}:reply:{self.me}"

    async def request(self, address: str, method: str, payload: dict[str, Any],
                      timeout_s: float) -> dict[str, Any]:
        if self._replies is None:
            self._replies = asyncio.create_task(self._read_replies(),
                                                name=f"requests-replies-{self.me}")
        request_id = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        key = f"{self.prefix}:req:{address}"
        body = json.dumps({"id": request_id, "method": method, "payload": payload,
                           "reply_to": self._reply_key(),
                           "deadline": time.time() + timeout_s}, separators=(",", ":"))
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, body)
                pipe.expire(key, max(1, int(timeout_s) + 5))
                await asyncio.wait_for(pipe.execute(), timeout_s)
            reply = await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"{address} did not answer {method} in {timeout_s} s") from None
        finally:
            self._waiting.pop(request_id, None)
        return _raise_if_error(reply)

    async def _read_replies(self) -> None:
        key = self._reply_key()
        failing = False
        while not self._closing:
            try:
                item = await self.redis.blpop([key], timeout=POLL_S)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: waiting callers time out
                if not failing:
                    log.error("reading replies failed: %s", exc)
                failing = True
                await asyncio.sleep(0.5)
                continue
            if item is None:
                continue
            try:
                reply = json.loads(item[1])
                future = self._waiting.get(str(reply.get("id")))
            except (ValueError, AttributeError):
                log.warning("dropped a malformed reply")
                continue
            if future is not None and not future.done():
                future.set_result(reply)

    async def serve(self, address: str, handler: Handler) -> None:
        self._tasks.append(asyncio.create_task(self._serve(address, handler),
                                               name=f"requests-serve-{address}"))

    async def _serve(self, address: str, handler: Handler) -> None:
        key = f"{self.prefix}:req:{address}"
        failing = False
        while not self._closing:
            await self._slots.acquire()
            try:
                item = await self.redis.blpop([key], timeout=POLL_S)
                failing = False
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: try again, bounded
                self._slots.release()
                if not failing:
                    log.error("taking requests for %s failed: %s", address, exc)
                failing = True
                await asyncio.sleep(0.5)
                continue
            if item is None:
                self._slots.release()
                continue
            task = asyncio.create_task(self._handle(item[1], handler))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _handle(self, raw: bytes | str, handler: Handler) -> None:
        try:
            try:
                request = json.loads(raw)
                request_id, method = str(request["id"]), str(request["method"])
                payload, reply_to = request.get("payload") or {}, str(request["reply_to"])
                deadline = float(request["deadline"])
            except (ValueError, KeyError, TypeError):
                log.warning("dropped a malformed request")
                return
            if time.time() > deadline or not isinstance(payload, dict):
                return  # its caller has given up (or it is not ours to read)
            reply = {"id": request_id, **await _answer(handler, method, payload)}
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(reply_to, json.dumps(reply, separators=(",", ":")))
                pipe.expire(reply_to, 60)
                await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller times out
            log.error("answering a request failed: %s", exc)
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._closing = True
        tasks = [*self._tasks, *self._running, *([self._replies] if self._replies else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks, self._replies = [], None
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
