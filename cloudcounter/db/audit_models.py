"""Tables of post-event supervision (cloudcounter.audit; docs/supervision.md)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON, CheckConstraint, Date, DateTime, Float, ForeignKey, Integer, String, Text,
    UniqueConstraint,
)
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


REVIEW_STATES = ("open", "in_review", "findings_raised", "closed")
FINDING_STATES = ("open", "responded", "accepted", "rejected")
SEVERITIES = ("low", "medium", "high", "critical")


class ReviewTask(Base):
    """A call selected for review (one task per call), by which rule and version; assigned
    to an auditor who did not take part in the call (four eyes)."""

    __tablename__ = "review_tasks"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'in_review', 'findings_raised', 'closed')",
                        name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), unique=True)
    rule_id: Mapped[str] = mapped_column(String(48), index=True)
    rule_version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    draw: Mapped[float] = mapped_column(Float)
    selected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    selected_by: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True,
                                                    index=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    checklist_id: Mapped[str | None] = mapped_column(String(48), nullable=True)
    checklist_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReviewItem(Base):
    """One checklist item's answer in a review: pass, fail or n/a, a comment, and
    optionally a time in the recording."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("task_id", "item_id"),
        CheckConstraint("result IN ('pass', 'fail', 'na')", name="result"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id"), index=True)
    item_id: Mapped[str] = mapped_column(String(48))
    result: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str] = mapped_column(Text, default="")
    recording_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    by: Mapped[int] = mapped_column(ForeignKey("users.id"))


class Finding(Base):
    """A finding of a review, for the call's agent to answer; the auditor accepts or
    rejects the response (rectification loop)."""

    __tablename__ = "review_findings"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'responded', 'accepted', 'rejected')",
                        name="state"),
        CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name="severity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id"), index=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True,
                                                 index=True)
    severity: Mapped[str] = mapped_column(String(12))
    category: Mapped[str] = mapped_column(String(32), index=True)
    description: Mapped[str] = mapped_column(Text)
    item_id: Mapped[str | None] = mapped_column(String(48), nullable=True)
    recording_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    state: Mapped[str] = mapped_column(String(12), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)


class ReviewAction(Base):
    """Every action of the review workflow, with who and when (the rectification thread
    is the actions of a finding)."""

    __tablename__ = "review_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id"), index=True)
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("review_findings.id"),
                                                   nullable=True, index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RetentionRule(Base):
    """How long a service's recordings and evidence are kept (days after the call)."""

    __tablename__ = "retention_rules"

    service_code: Mapped[str] = mapped_column(ForeignKey("service_types.code"),
                                              primary_key=True)
    days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(80))


class LegalHold(Base):
    """A call whose recordings and evidence must not be purged while the hold lasts."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
