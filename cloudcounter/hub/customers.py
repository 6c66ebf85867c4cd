"""Adding customers: the reference photo (the bank's ID photo on file) is enrolled once,
and its face descriptor stored with the customer. A photo with no face or several faces
is refused with a clear error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

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
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise InvalidMessage(f"photo {str(path)!r} does not exist", code="bad_photo")
    return p, enrol_image(p.read_bytes(), f"photo {str(path)!r}")


def enrol_image(data: bytes, label: str = "the photo") -> bytes:
    """The face descriptor (bytes) of a reference photo that shows exactly one face; a
    clear refusal otherwise. Runs dlib: call it in a worker process or thread."""
    from cloudcounter.vision import EnrolmentError, enrol

    try:
        descriptor = enrol(data)
    except EnrolmentError as exc:
        reason = {"bad_image": "is not a readable image (JPEG or PNG)",
                  "no_face": "shows no face",
                  "multiple_faces": "shows more than one face"}.get(exc.code)
        if reason is None:  # face_too_small, image_blurred: the message says what to do
            raise InvalidMessage(f"{label} refused: {exc.message}", code=exc.code) from None
        raise InvalidMessage(f"{label} {reason}; the reference photo must show exactly one "
                             "face", code=exc.code) from None
    return np.asarray(descriptor, dtype=DESCRIPTOR_DTYPE).tobytes()


class Enroller:
    """Enrolment off the event loop: dlib holds the GIL for much of a face detection
    (measured: 150 ms pauses of the loop with a thread), so it runs in one worker process,
    started with the first photo and stopped with the hub. At most ``queue`` photos wait."""

    def __init__(self, queue: int = 4) -> None:
        self._executor: Any = None
        self._waiting = 0
        self._queue = queue

    async def enrol(self, data: bytes, label: str = "the photo") -> bytes:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        from cloudcounter.errors import RateLimited
        if self._waiting >= self._queue:
            raise RateLimited("photos are being enrolled: try again in a moment",
                              code="enrolment_busy", retry_after_s=2)
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, enrol_image, data, label)
        except BrokenProcessPool:
            self._executor = None
            raise
        finally:
            self._waiting -= 1

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: executor.shutdown(wait=True, cancel_futures=True))


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
