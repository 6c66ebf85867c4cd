"""The HTTP edge: every request passes these, outermost first.

1. :func:`security_headers` — CSP, HSTS (HTTPS only), nosniff, Referrer-Policy, framing.
2. :func:`errors` — a :class:`CloudCounterError` becomes ``{"error": {code, message}}``
   with its status (refusals logged once, briefly, rate-limited; identity and permission
   refusals also as security events); anything unexpected becomes ``internal_error``,
   never a traceback to the client; unknown ``/api/`` routes answer JSON too.
3. :func:`limits` — in-flight requests per client address, and a deadline on reading the
   body (a slow body is cut off with ``body_timeout``).
4. :func:`same_origin` — a state-changing ``/api/`` request from a browser must come from
   the hub's own origin (or ``CLOUDCOUNTER_ALLOWED_ORIGINS``): login CSRF and friends.
5. :func:`cloudcounter.hub.http_auth.authenticate` — the staff session check.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from cloudcounter.errors import (
    CloudCounterError, Forbidden, InvalidMessage, MessageTooLarge, RateLimited,
)
from cloudcounter.hub.context import CTX
from cloudcounter.hub.http_auth import client, current_staff

class JsonRequired(InvalidMessage):
    code = "json_required"
    http_status = 415


class BodyTimeout(CloudCounterError):
    code = "body_timeout"
    http_status = 408


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HSTS = "max-age=31536000; includeSubDomains"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HTTP_CODES = {400: "invalid_message", 401: "unauthenticated", 403: "forbidden",
              404: "not_found", 405: "method_not_allowed", 408: "body_timeout",
              413: "message_too_large", 415: "json_required", 429: "rate_limited"}


def _headers(request: web.Request, headers: Any) -> None:
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("Permissions-Policy",
                       "camera=(self), microphone=(self), geolocation=(), payment=()")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    if client(request).secure:
        headers.setdefault("Strict-Transport-Security", HSTS)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        resp: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        _headers(request, exc.headers)
        raise
    if not resp.prepared:
        _headers(request, resp.headers)
    return resp


def error_response(exc: CloudCounterError) -> web.Response:
    resp = web.json_response({"error": exc.to_dict()}, status=exc.http_status)
    if isinstance(exc, BodyTimeout):
        resp.force_close()  # the rest of that body must not be read as the next request
    retry = exc.details.get("retry_after_s") if isinstance(exc, RateLimited) else None
    if isinstance(retry, int):
        resp.headers["Retry-After"] = str(retry)
    return resp


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except CloudCounterError as exc:
        _refused(request, exc)
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        exc2 = MessageTooLarge("request body too large")
        _refused(request, exc2)
        return error_response(exc2)
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            code = HTTP_CODES.get(exc.status, f"http_{exc.status}")
            return web.json_response({"error": {"code": code, "message": exc.reason}},
                                     status=exc.status, headers={
                                         k: v for k, v in exc.headers.items()
                                         if k.lower() in ("allow", "retry-after")})
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a client must never see a traceback
        request.app[CTX].security.refusals.failed(f"{request.method} {request.path}",
                                                  client(request).address, exc)
        return web.json_response({"error": {"code": "internal_error",
                                            "message": "internal error"}}, status=500)


def _refused(request: web.Request, exc: CloudCounterError) -> None:
    ident = current_staff(request)
    request.app[CTX].security.refused(
        exc, f"{request.method} {request.path}", ident.actor if ident else "",
        client(request).address, ident.user_id if ident else None)


@web.middleware
async def limits(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/socket.io"):  # counted per connection by the namespaces
        return await handler(request)  # type: ignore[no-any-return]
    ctx = request.app[CTX]
    address = client(request).address
    in_flight = ctx.security.in_flight
    if in_flight.get(address, 0) >= ctx.settings.max_requests_in_flight_per_address:
        raise RateLimited("too many requests at once from this address",
                          code="too_many_requests", retry_after_s=1)
    in_flight[address] = in_flight.get(address, 0) + 1
    try:
        from cloudcounter.hub.admin_catalogue_api import is_photo_upload
        if is_photo_upload(request):  # the one body above 256 KiB: a reference photo
            request = request.clone(client_max_size=ctx.settings.max_photo_bytes + 1)
        if request.method in UNSAFE_METHODS and request.can_read_body:
            try:
                await asyncio.wait_for(request.read(), ctx.settings.body_timeout_s)
            except asyncio.TimeoutError:
                raise BodyTimeout("the request body did not arrive in time") from None
        return await handler(request)  # type: ignore[no-any-return]
    finally:
        n = in_flight.get(address, 1) - 1
        if n > 0:
            in_flight[address] = n
        else:
            in_flight.pop(address, None)


def own_origin(request: web.Request) -> str:
    return f"{'https' if client(request).secure else 'http'}://{request.host}"


@web.middleware
async def same_origin(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method in UNSAFE_METHODS and request.path.startswith("/api/"):
        origin = request.headers.get("Origin")
        allowed = {own_origin(request), *request.app[CTX].settings.allowed_origins}
        if origin is not None and origin not in allowed:
            raise Forbidden("cross-site requests are refused", code="bad_origin")
        if origin is None and request.headers.get("Sec-Fetch-Site") == "cross-site":
            raise Forbidden("cross-site requests are refused", code="bad_origin")
    return await handler(request)  # type: ignore[no-any-return]


# -- bodies ----------------------------------------------------------------------------------
MAX_INT_DIGITS = 30


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError("number too large")
    return int(text)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """JSON from a client: UTF-8, no NaN/Infinity, integers of at most 30 digits; deep
    nesting and anything else malformed is ``invalid_message`` (400), never a 500."""
    try:
        return json.loads(raw.decode("utf-8"), parse_int=_int, parse_constant=_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise InvalidMessage("the body is not valid JSON (or a number in it is too large, "
                             "or it is nested too deeply)") from None


async def json_body(request: web.Request) -> Any:
    """The request's JSON body; only ``application/json`` is accepted (a cross-site form
    can send ``text/plain`` without asking the browser first)."""
    if request.content_type != "application/json":
        raise JsonRequired("the body must be JSON (Content-Type: application/json)")
    return parse_json(await request.read())
