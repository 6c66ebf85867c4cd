"""Adding customers, with their reference photo checked (and enrolled once vision is on)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db import repo
from cloudcounter.db.models import Customer
from cloudcounter.errors import InvalidMessage


def mask_id_number(id_number: str) -> str:
    digits = id_number.strip()
    return "*" * max(0, len(digits) - 4) + digits[-4:] if digits else ""


def check_photo(path: str) -> Path:
    """The photo must exist and decode as an image."""
    import cv2
    import numpy as np

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise InvalidMessage(f"photo {path!r} does not exist", code="bad_photo")
    data = np.fromfile(str(p), dtype=np.uint8)
    if data.size == 0 or cv2.imdecode(data, cv2.IMREAD_COLOR) is None:
        raise InvalidMessage(f"photo {path!r} is not a readable image", code="bad_photo")
    return p


async def add_customer(sm: async_sessionmaker, *, name: str, photo: str | None = None,
                       phone: str = "", id_number: str = "", risk: str = "low") -> str:
    if not name.strip():
        raise InvalidMessage("a customer needs a name", code="bad_name")
    photo_path = await asyncio.to_thread(check_photo, photo) if photo else None
    cid = repo.new_customer_id()
    async with sm() as s, s.begin():
        await repo.add_customer(s, Customer(
            id=cid, name=name.strip(), id_number_masked=mask_id_number(id_number), phone=phone,
            risk_level=risk, photo_path=str(photo_path) if photo_path else None))
    return cid
