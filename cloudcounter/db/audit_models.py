"""Tables of post-event supervision (cloudcounter.audit; docs/supervision.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloudcounter.db.models import Base, utcnow


class AuditDigest(Base):
    """The daily digest: one row per day, only ever appended. ``root`` chains the previous
    digest's root and, in call id order, each call's (id, last sequence number, last hash)
    of the calls requested that day; ``signature`` is HMAC-SHA256 of the root with the
    audit key (``CLOUDCOUNTER_AUDIT_KEY``), when one is set."""

    __tablename__ = "audit_digests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
    entries: Mapped[list[list[Any]]] = mapped_column(JSON)  # [[call_id, seq, hash], ...]
    prev_root: Mapped[str] = mapped_column(String(64))
    root: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)
