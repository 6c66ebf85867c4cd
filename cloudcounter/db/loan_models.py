"""Tables of the car-loan interview (migration 0009): the interviews, the durable outbox of
their results to the credit system, the roster of loan agents and the appointments.
Kept apart from :mod:`cloudcounter.db.models` like the other groups (same ``Base``)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, Text,
    UniqueConstraint, text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloudcounter.db.models import Base, utcnow
from cloudcounter.db.outbox import OutboxColumns


class LoanInterview(Base):
    """One car-loan interview (a call of service ``car_loan``): the application it is
    about, the answers to the interview questions and, once closed, the outcome."""

    __tablename__ = "loan_interviews"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'closed')", name="state"),
        CheckConstraint("outcome IS NULL OR outcome IN ('pass', 'refer', 'decline')",
                        name="outcome"),
    )

    call_id: Mapped[str] = mapped_column(ForeignKey("call_sessions.id"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    application_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16), default="open")
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    answers: Mapped[list[dict]] = mapped_column(JSON, default=list)  # type: ignore[type-arg]
    contradictions: Mapped[int] = mapped_column(Integer, default=0)
    interviewer: Mapped[str | None] = mapped_column(String(80), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CreditResultDelivery(OutboxColumns, Base):
    """The outbox of interview results: written in the transaction that closes the
    interview, delivered to the credit system until it acknowledges (at least once, with
    the idempotency key: the credit system records it once)."""

    __tablename__ = "credit_result_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("loan_interviews.call_id"), unique=True)
    application_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    body: Mapped[str] = mapped_column(Text)  # the result without recordings, frozen JSON
    recordings: Mapped[list[dict] | None] = mapped_column(JSON, nullable=True)  # type: ignore[type-arg]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    result_id: Mapped[str | None] = mapped_column(String(200), nullable=True)


class LoanRoster(Base):
    """An agent with the ``loans`` skill rostered for interviews: a day, from, to (minutes
    after midnight, UTC)."""

    __tablename__ = "loan_roster"
    __table_args__ = (
        UniqueConstraint("agent_id", "day", "start_minute", name="uq_loan_roster_shift"),
        CheckConstraint("start_minute >= 0 AND end_minute <= 1440 AND "
                        "start_minute < end_minute", name="minutes"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)


class AppointmentSlot(Base):
    """A slot's capacity (rostered agents) and how many places are booked. A booking is a
    conditional update ``booked = booked + 1 WHERE booked < capacity``: the last place
    cannot be taken twice, whatever the concurrency; the check constraint is the backstop."""

    __tablename__ = "appointment_slots"
    __table_args__ = (CheckConstraint("booked >= 0 AND booked <= capacity", name="places"),)

    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    capacity: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int] = mapped_column(Integer, default=0)


class Appointment(Base):
    """A customer's booked interview. One booked appointment per customer at a time (a
    partial unique index)."""

    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint("state IN ('booked', 'cancelled', 'attended', 'no_show')",
                        name="state"),
        Index("uq_appointments_customer_booked", "customer_id", unique=True,
              sqlite_where=text("state = 'booked'"), postgresql_where=text("state = 'booked'")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    service: Mapped[str] = mapped_column(String(32), default="car_loan")
    starts_at: Mapped[datetime] = mapped_column(ForeignKey("appointment_slots.starts_at"),
                                                index=True)
    state: Mapped[str] = mapped_column(String(16), default="booked")
    call_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
