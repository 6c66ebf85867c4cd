"""Administrators' HTTP API for the service catalogue and customers (reference photos).
Admins only; every change is an ``admin.*`` security event in its transaction."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from cloudcounter.errors import InvalidMessage, MessageTooLarge
from cloudcounter.hub.admin import customers, services
from cloudcounter.hub.admin.schemas import (
    CustomerCreate, CustomerQuery, CustomerUpdate, ServiceCreate, ServiceUpdate,
)
from cloudcounter.hub.admin_api import admin, path_text, query
from cloudcounter.hub.api import body, staff
from cloudcounter.hub.context import CTX
from cloudcounter.hub.customers import Enroller

__all__ = ["ENROLLER", "Enroller", "enroller_ctx", "is_photo_upload", "routes"]

routes = web.RouteTableDef()
ENROLLER: web.AppKey[Enroller] = web.AppKey("enroller", Enroller)
SERVICE_CODE = r"^[a-z][a-z0-9_]{1,31}$"
CUSTOMER_ID = r"^[A-Za-z0-9_.:-]{1,40}$"
PHOTO_PATH = "/api/admin/customers/{customer_id}/photo"


def is_photo_upload(request: web.Request) -> bool:
    """The one route whose body may be larger than 256 KiB (the limits middleware reads
    it with ``CLOUDCOUNTER_MAX_PHOTO_BYTES``)."""
    info = request.match_info.route.resource
    return info is not None and info.canonical == PHOTO_PATH and request.method == "PUT"


# -- services ---------------------------------------------------------------------------
@routes.get("/api/admin/services")
async def list_services(request: web.Request) -> web.Response:
    staff(request, "admin")
    return web.json_response({"services": await services.list_services(request.app[CTX].sm)})


@routes.post("/api/admin/services")
async def create_service(request: web.Request) -> web.Response:
    who = admin(request)
    req: ServiceCreate = await body(request, ServiceCreate)
    ctx = request.app[CTX]
    service = await services.create_service(ctx.sm, who, req)
    await ctx.load_services()
    return web.json_response({"service": service}, status=201)


@routes.patch("/api/admin/services/{code}")
async def update_service(request: web.Request) -> web.Response:
    who = admin(request)
    code = path_text(request, "code", SERVICE_CODE, "unknown_service")
    req: ServiceUpdate = await body(request, ServiceUpdate)
    ctx = request.app[CTX]
    service = await services.update_service(ctx.sm, who, code, req)
    await ctx.load_services()
    return web.json_response({"service": service})


# -- customers --------------------------------------------------------------------------
@routes.get("/api/admin/customers")
async def list_customers(request: web.Request) -> web.Response:
    staff(request, "admin")
    q: CustomerQuery = query(request, CustomerQuery)
    return web.json_response(await customers.list_customers(request.app[CTX].sm, q))


@routes.post("/api/admin/customers")
async def create_customer(request: web.Request) -> web.Response:
    who = admin(request)
    req: CustomerCreate = await body(request, CustomerCreate)
    customer = await customers.create_customer(request.app[CTX].sm, who, req)
    return web.json_response({"customer": customer}, status=201)


@routes.patch("/api/admin/customers/{customer_id}")
async def update_customer(request: web.Request) -> web.Response:
    who = admin(request)
    cid = path_text(request, "customer_id", CUSTOMER_ID, "unknown_customer")
    req: CustomerUpdate = await body(request, CustomerUpdate)
    ctx = request.app[CTX]
    customer = await customers.update_customer(ctx.sm, who, cid, req)
    await ctx.customer_profile(cid, refresh=True)  # offers show the new details
    return web.json_response({"customer": customer})


@routes.put(PHOTO_PATH)
async def set_photo(request: web.Request) -> web.Response:
    """The reference photo, as the raw body (``image/jpeg`` or ``image/png``)."""
    who = admin(request)
    cid = path_text(request, "customer_id", CUSTOMER_ID, "unknown_customer")
    ctx = request.app[CTX]
    data = await request.read()
    if not data:
        raise InvalidMessage("the body is the photo: send a JPEG or PNG file",
                             code="bad_photo")
    if len(data) > ctx.settings.max_photo_bytes:
        raise MessageTooLarge(f"photos are at most {ctx.settings.max_photo_bytes} bytes")
    customer = await customers.set_photo(
        ctx.sm, who, cid, data, request.content_type, request.app[ENROLLER],
        Path(ctx.settings.customer_photos_dir), ctx.settings.at_rest_key_bytes)
    await ctx.customer_profile(cid, refresh=True)
    return web.json_response({"customer": customer})


async def enroller_ctx(app: web.Application) -> AsyncIterator[None]:
    """The enrolment worker process (started with the first photo) stops with the hub."""
    yield
    await app[ENROLLER].stop()
