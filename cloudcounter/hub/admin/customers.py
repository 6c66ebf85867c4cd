"""Customers as administrators manage them: create, edit, enrol or replace the reference
photo (the bank's ID photo on file). A photo with no face, several faces or no image at
all is refused with a clear message and changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db import repo
from cloudcounter.db.models import Customer
from cloudcounter.errors import Conflict, InvalidMessage, NotFound
from cloudcounter.hub.admin.audit import Actor, audited
from cloudcounter.hub.admin.schemas import CustomerCreate, CustomerQuery, CustomerUpdate
from cloudcounter.hub.context import mask_phone
from cloudcounter.hub.customers import Enroller, mask_id_number

IMAGE_TYPES = {"image/jpeg": (b"\xff\xd8\xff", ".jpg"), "image/png": (b"\x89PNG\r\n\x1a\n", ".png")}


def view(c: Customer) -> dict[str, Any]:
    created = c.created_at
    return {"id": c.id, "name": c.name, "id_number_masked": c.id_number_masked,
            "phone_masked": mask_phone(c.phone), "risk_level": c.risk_level,
            "card_last4": c.card_last4, "has_reference_photo": c.face_descriptor is not None,
            "created_at": (created if created.tzinfo else created.replace(tzinfo=timezone.utc))
            .isoformat() if created else None}


async def list_customers(sm: async_sessionmaker, q: CustomerQuery) -> dict[str, Any]:
    stmt = select(Customer)
    if q.q:
        like = "%" + q.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Customer.name.ilike(like, escape="\\"),
                              Customer.id.ilike(like, escape="\\")))
    async with sm() as s:
        total = await s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = (await s.scalars(stmt.order_by(Customer.name, Customer.id)
                                .limit(q.limit).offset(q.offset))).all()
    return {"customers": [view(c) for c in rows], "total": int(total or 0)}


async def create_customer(sm: async_sessionmaker, who: Actor, req: CustomerCreate
                          ) -> dict[str, Any]:
    cid = req.id or repo.new_customer_id()
    try:
        async with audited(sm, who, "admin.customer_created", cid) as a:
            row = Customer(id=cid, name=req.name, phone=req.phone,
                           id_number_masked=mask_id_number(req.id_number),
                           risk_level=req.risk_level, card_last4=req.card_last4,
                           created_at=datetime.now(timezone.utc))
            a.session.add(row)
            await a.session.flush()
            a.details = {"risk_level": req.risk_level, "id_given": req.id is not None}
    except IntegrityError:
        raise Conflict(f"a customer {cid!r} exists already", code="duplicate_customer",
                       field="id") from None
    return view(row)


async def update_customer(sm: async_sessionmaker, who: Actor, customer_id: str,
                          req: CustomerUpdate) -> dict[str, Any]:
    async with audited(sm, who, "admin.customer_updated", customer_id) as a:
        row = await a.session.get(Customer, customer_id)
        if row is None:
            raise NotFound(f"no customer {customer_id!r}", code="unknown_customer")
        values = req.model_dump(exclude_unset=True)
        if "id_number" in values:
            values["id_number_masked"] = mask_id_number(values.pop("id_number") or "")
        for key, value in values.items():
            if value is None and key in ("name", "risk_level"):
                raise InvalidMessage(f"{key} cannot be empty", code="invalid_message",
                                     field=key)
            setattr(row, key, "" if value is None and key == "phone" else value)
        a.details = {"fields": sorted(values)}  # which, never the values (personal data)
        await a.session.flush()
        return view(row)


def image_kind(data: bytes, content_type: str) -> str:
    """The file extension of an accepted reference photo (JPEG or PNG, by content)."""
    expected = IMAGE_TYPES.get(content_type)
    if expected is None:
        raise InvalidMessage("the photo must be a JPEG or PNG image (Content-Type image/jpeg "
                             "or image/png)", code="bad_photo")
    if not data.startswith(expected[0]):
        raise InvalidMessage(f"the photo is not a readable image (a "
                             f"{content_type.split('/')[1].upper()} file was announced)",
                             code="bad_image")
    return expected[1]


def _write(path: Path, data: bytes, key: bytes | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if key is not None:
        from cloudcounter.recordings.crypto import write_encrypted
        path = path.with_name(path.name + ".enc")
        write_encrypted(path, data, key)
    else:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path.resolve()


def _discard(path: str | None, photos_dir: Path) -> None:
    """Delete a photo file, only if it is one of ours (never a file elsewhere)."""
    if path and Path(path).resolve().is_relative_to(photos_dir.resolve()):
        Path(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class PreparedPhoto:
    """A photo that passed enrolment: what :func:`store_photo` keeps."""

    data: bytes
    ext: str
    descriptor: bytes
    sha256: str


async def prepare_photo(data: bytes, content_type: str, enroller: Enroller) -> PreparedPhoto:
    """Check and enrol a reference photo (in the enrolment worker process); raises the
    refusal (no face, several faces, not an image) before anything is stored."""
    ext = image_kind(data, content_type)
    descriptor = await enroller.enrol(data, "the photo")
    return PreparedPhoto(data, ext, descriptor, hashlib.sha256(data).hexdigest())


async def set_photo(sm: async_sessionmaker, who: Actor, customer_id: str, data: bytes,
                    content_type: str, enroller: Enroller, photos_dir: Path,
                    key: bytes | None) -> dict[str, Any]:
    """Enrol (or replace) the reference photo of an existing customer."""
    await repo.get_customer(sm, customer_id)  # 404 before the slow part
    photo = await prepare_photo(data, content_type, enroller)
    return await store_photo(sm, who, customer_id, photo, photos_dir, key)


async def store_photo(sm: async_sessionmaker, who: Actor, customer_id: str,
                      photo: PreparedPhoto, photos_dir: Path, key: bytes | None
                      ) -> dict[str, Any]:
    """Keep the file in ``photos_dir`` (sealed with the at-rest key when there is one) and
    the descriptor with the customer; a replaced file of that directory is deleted."""
    path = await asyncio.to_thread(
        _write, photos_dir / f"{customer_id}-{photo.sha256[:16]}{photo.ext}", photo.data, key)
    old: str | None = None
    try:
        async with audited(sm, who, "admin.customer_photo", customer_id) as a:
            row = await a.session.get(Customer, customer_id)
            if row is None:
                raise NotFound(f"no customer {customer_id!r}", code="unknown_customer")
            old, replaced = row.photo_path, row.face_descriptor is not None
            row.photo_path, row.face_descriptor = str(path), photo.descriptor
            a.details = {"sha256": photo.sha256, "size_bytes": len(photo.data),
                         "replaced": replaced, "sealed": key is not None}
            result = view(row)
    except BaseException:
        if str(path) != old:
            await asyncio.to_thread(_discard, str(path), photos_dir)
        raise
    if old != str(path):
        await asyncio.to_thread(_discard, old, photos_dir)
    return result
