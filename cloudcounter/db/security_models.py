"""Tables of the security layer: staff sessions, the security event log, the journal's
dead letters. Kept apart from :mod:`cloudcounter.db.models` (same ``Base``, migration
0005) so that the call records and the security records can evolve separately."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloudcounter.db.models import Base, utcnow


class StaffSession(Base):
    """One sign-in of a staff member. Access tokens name it (``sid``) and live minutes;
    the session lives until it expires, is revoked (log-out, an admin, a disabled account)
    or its refresh token is replayed."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    # SHA-256 of the current refresh token, and of the one before it (a replay of the
    # previous token means it was stolen: the session is revoked).
    refresh_hash: Mapped[str] = mapped_column(String(64), index=True)
    previous_refresh_hash: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                                              index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")


class SecurityEvent(Base):
    """Append-only: who did what, from where, and whether it was allowed."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    kind: Mapped[str] = mapped_column(String(48), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    actor: Mapped[str] = mapped_column(String(80), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # no FK: outlives users
    source: Mapped[str] = mapped_column(String(64), default="")
    target: Mapped[str] = mapped_column(String(160), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class JournalDeadLetter(Base):
    """A journal operation the database refused (a poisoned row): kept here, ASCII-escaped
    JSON, instead of blocking the journal; replayed with ``cloudcounter journal replay``."""

    __tablename__ = "journal_dead_letters"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    op: Mapped[str] = mapped_column(String(16))
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    data: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
