"""SQLAlchemy 2 models. Schema changes go through Alembic (``cloudcounter/db/migrations``)."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Role(str, enum.Enum):
    AGENT = "agent"
    AUDITOR = "auditor"
    ADMIN = "admin"
    LEAD = "lead"  # team lead / supervisor: approves high-risk calls (maker-checker)


class ServiceKind(str, enum.Enum):
    COUNTER = "counter_service"
    LOAN_INTERVIEW = "loan_interview"


class RiskLevel(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    BLOCK = "block"  # a call's assessed risk only: the call cannot be resolved


CALL_RISK_LEVELS = ("low", "medium", "high", "block")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # TOTP second factor (base32 secret; None: not enrolled) and the last time step used,
    # so that a code is accepted once.
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    skills: Mapped[list["AgentSkill"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def skill_codes(self) -> list[str]:
        return sorted(s.skill for s in self.skills)

    @property
    def preferred_codes(self) -> list[str]:
        """The skills whose calls the agent takes first (a subset of :attr:`skill_codes`)."""
        return sorted(s.skill for s in self.skills if s.preferred)


class AgentSkill(Base):
    __tablename__ = "agent_skills"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    skill: Mapped[str] = mapped_column(String(32), primary_key=True)
    # the agent takes calls needing this skill before the others (routing rules)
    preferred: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    user: Mapped[User] = relationship(back_populates="skills")


class ServiceType(Base):
    __tablename__ = "service_types"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    required_skill: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    auto_checks: Mapped[list[str]] = mapped_column(JSON, default=list)
    # the service level: a call answered within this many seconds of its request counts
    # as answered within target (metrics, wallboard)
    target_answer_s: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    # routing rules (cloudcounter.queue.routing.ServiceRules.to_dict()); None: no rules
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    id_number_masked: Mapped[str] = mapped_column(String(32), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    risk_level: Mapped[str] = mapped_column(String(16), default=RiskLevel.LOW.value)
    card_last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    photo_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    face_descriptor: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CallSession(Base):
    __tablename__ = "call_sessions"
    __table_args__ = (
        CheckConstraint("risk_level IS NULL OR risk_level IN ('low', 'medium', 'high', "
                        "'block')", name="risk_level"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service_types.code"))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    offered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    # service flow (cloudcounter.business): the script version run, how the business
    # ended, and the final risk assessment (for the review sampling of supervision)
    subject: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    script_id: Mapped[int | None] = mapped_column(ForeignKey("service_scripts.id"),
                                                  nullable=True)
    script_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    business_state: Mapped[str | None] = mapped_column(String(24), nullable=True)
    risk_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    risk_level: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    risk_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    risk_rules_version: Mapped[int | None] = mapped_column(
        ForeignKey("risk_rule_sets.version"), nullable=True)


class CallEvent(Base):
    """Append-only timeline of a call: never updated or deleted by the application."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(48))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the hash chain (cloudcounter.audit.chain): SHA-256 of the canonical form, and the
    # previous event's hash (the genesis, 64 zeros, for the first)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


def new_recording_public_id() -> str:
    return "rec_" + secrets.token_hex(12)


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What URLs and the API show: random, so that ids cannot be guessed or enumerated.
    public_id: Mapped[str] = mapped_column(String(32), unique=True,
                                           default=new_recording_public_id)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), index=True)
    participant: Mapped[str] = mapped_column(String(16))  # customer | agent
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    duration_s: Mapped[float | None] = mapped_column(nullable=True)
    codecs: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The file's time origin (timestamp 0), shared by both participants of a segment: a
    # timeline event at time T plays at T - started_at in either file.
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    offset_s: Mapped[float | None] = mapped_column(nullable=True)  # first packet after origin
    segment: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # retention (cloudcounter.audit.retention): the file deleted on this date under this
    # rule; the row, its SHA-256 and the timeline stay
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    purge_rule: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ServiceScript(Base):
    """One version of a service's script; versions are never changed, only added."""

    __tablename__ = "service_scripts"
    __table_args__ = (UniqueConstraint("service_code", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("service_types.code"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(128))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class RiskRuleSet(Base):
    """One version of the risk rules and weights; versions are only added."""

    __tablename__ = "risk_rule_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(80))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class CallStep(Base):
    """A script step of a call completed, answered, declined or skipped (once per step)."""

    __tablename__ = "call_steps"
    __table_args__ = (UniqueConstraint("call_id", "step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(48))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answer: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    segment: Mapped[int | None] = mapped_column(Integer, nullable=True)
    offset_s: Mapped[float | None] = mapped_column(nullable=True)


class CallConfirmation(Base):
    """A statement or question shown to the customer (or recorded by the agent when the
    customer answered aloud): the exact text, its SHA-256, when it was shown and answered,
    and where both moments are in the recordings."""

    __tablename__ = "call_confirmations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(48))
    prompt_id: Mapped[str | None] = mapped_column(String(24), nullable=True, unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # statement | question
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    script_id: Mapped[int | None] = mapped_column(ForeignKey("service_scripts.id"),
                                                  nullable=True)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    shown_segment: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shown_offset_s: Mapped[float | None] = mapped_column(nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    answer: Mapped[str | None] = mapped_column(String(32), nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_segment: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answered_offset_s: Mapped[float | None] = mapped_column(nullable=True)


class CallApproval(Base):
    """Maker-checker: an agent's request for a supervisor's approval, and the decision."""

    __tablename__ = "call_approvals"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'approved', 'refused', 'withdrawn')",
                        name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    request_note: Mapped[str] = mapped_column(Text, default="")
    risk_score: Mapped[int] = mapped_column(Integer)
    risk_level: Mapped[str] = mapped_column(String(8))
    risk_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    risk_rules_version: Mapped[int] = mapped_column(Integer)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                        nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class CustomerAccountChange(Base):
    """A change to a customer's account (contact details, ...), with its date: recent
    changes are a risk signal (a contact change followed by a large transfer)."""

    __tablename__ = "customer_account_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str | None] = mapped_column(ForeignKey("call_sessions.id"), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(256), nullable=True)
