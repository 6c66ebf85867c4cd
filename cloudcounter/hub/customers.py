"""Adding customers: the reference photo (the bank's ID photo on file) is enrolled once,
and its face descriptor stored with the customer. A photo with no face or several faces
is refused with a clear error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db import repo
from cloudcounter.db.models import Customer
from cloudcounter.errors import InvalidMessage

DESCRIPTOR_DTYPE = np.float64


def mask_id_number(id_number: str) -> str:
    digits = id_number.strip()
    return "*" * max(0, len(digits) - 4) + digits[-4:] if digits else ""


def enrol_photo(path: str | Path) -> tuple[Path, bytes]:
    """Read and enrol a reference photo; returns its resolved path and descriptor bytes."""
    from cloudcounter.vision import EnrolmentError, enrol

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise InvalidMessage(f"photo {str(path)!r} does not exist", code="bad_photo")
    try:
        descriptor = enrol(p.read_bytes())
    except EnrolmentError as exc:
        reason = {"bad_image": "is not a readable image",
                  "no_face": "shows no face",
                  "multiple_faces": "shows more than one face"}.get(exc.code)
        if reason is None:  # face_too_small, image_blurred: the message says what to do
            raise InvalidMessage(f"photo {str(path)!r} refused: {exc.message}",
                                 code=exc.code) from None
        raise InvalidMessage(f"photo {str(path)!r} {reason}; the reference photo must show "
                             "exactly one face", code=exc.code) from None
    return p, np.asarray(descriptor, dtype=DESCRIPTOR_DTYPE).tobytes()


def descriptor_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=DESCRIPTOR_DTYPE)


async def add_customer(sm: async_sessionmaker, *, name: str, photo: str | None = None,
                       phone: str = "", id_number: str = "", risk: str = "low",
                       card_last4: str | None = None) -> str:
    if not name.strip():
        raise InvalidMessage("a customer needs a name", code="bad_name")
    if card_last4 is not None and not (len(card_last4) == 4 and card_last4.isdigit()):
        raise InvalidMessage("card_last4 is four digits", code="bad_card")
    photo_path, descriptor = (await asyncio.to_thread(enrol_photo, photo)) if photo else (None,
                                                                                         None)
    cid = repo.new_customer_id()
    async with sm() as s, s.begin():
        await repo.add_customer(s, Customer(
            id=cid, name=name.strip(), id_number_masked=mask_id_number(id_number), phone=phone,
            risk_level=risk, card_last4=card_last4,
            photo_path=str(photo_path) if photo_path else None,
            face_descriptor=descriptor))
    return cid
