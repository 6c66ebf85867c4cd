"""car loan: interviews, the outbox of their results to the credit system, the roster of
loan agents, appointment slots and appointments; the risk rule on answers contradicting
the application

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
import hashlib
import json
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CONTRADICTION_RULE = {
    "id": "credit_contradictions",
    "when": [{"signal": "credit_contradictions", "op": "gte", "value": 1}],
    "weight": 25,
    "reason": "Interview answers contradict the credit application",
}


def _outbox_columns() -> list[sa.Column]:
    return [
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "loan_interviews",
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("application_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("contradictions", sa.Integer(), nullable=False),
        sa.Column("interviewer", sa.String(length=80), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('open', 'closed')", name=op.f("ck_loan_interviews_state")),
        sa.CheckConstraint("outcome IS NULL OR outcome IN ('pass', 'refer', 'decline')",
                           name=op.f("ck_loan_interviews_outcome")),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_loan_interviews_call_id_call_sessions")),
        sa.ForeignKeyConstraint(["agent_id"], ["users.id"],
                                name=op.f("fk_loan_interviews_agent_id_users")),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_loan_interviews")),
    )
    op.create_index(op.f("ix_loan_interviews_customer_id"), "loan_interviews", ["customer_id"])
    op.create_index(op.f("ix_loan_interviews_application_id"), "loan_interviews",
                    ["application_id"])
    op.create_table(
        "credit_result_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("application_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("recordings", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result_id", sa.String(length=200), nullable=True),
        *_outbox_columns(),
        sa.ForeignKeyConstraint(["call_id"], ["loan_interviews.call_id"],
                                name=op.f("fk_credit_result_deliveries_call_id_loan_interviews")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_result_deliveries")),
        sa.UniqueConstraint("call_id", name=op.f("uq_credit_result_deliveries_call_id")),
        sa.UniqueConstraint("idempotency_key",
                            name=op.f("uq_credit_result_deliveries_idempotency_key")),
    )
    op.create_index(op.f("ix_credit_result_deliveries_state"), "credit_result_deliveries",
                    ["state"])
    op.create_index(op.f("ix_credit_result_deliveries_next_attempt_at"),
                    "credit_result_deliveries", ["next_attempt_at"])
    op.create_table(
        "loan_roster",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.CheckConstraint("start_minute >= 0 AND end_minute <= 1440 AND "
                           "start_minute < end_minute", name=op.f("ck_loan_roster_minutes")),
        sa.ForeignKeyConstraint(["agent_id"], ["users.id"],
                                name=op.f("fk_loan_roster_agent_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_roster")),
        sa.UniqueConstraint("agent_id", "day", "start_minute", name="uq_loan_roster_shift"),
    )
    op.create_index(op.f("ix_loan_roster_agent_id"), "loan_roster", ["agent_id"])
    op.create_index(op.f("ix_loan_roster_day"), "loan_roster", ["day"])
    op.create_table(
        "appointment_slots",
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.CheckConstraint("booked >= 0 AND booked <= capacity",
                           name=op.f("ck_appointment_slots_places")),
        sa.PrimaryKeyConstraint("starts_at", name=op.f("pk_appointment_slots")),
    )
    op.create_table(
        "appointments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('booked', 'cancelled', 'attended', 'no_show')",
                           name=op.f("ck_appointments_state")),
        sa.ForeignKeyConstraint(["starts_at"], ["appointment_slots.starts_at"],
                                name=op.f("fk_appointments_starts_at_appointment_slots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    op.create_index(op.f("ix_appointments_customer_id"), "appointments", ["customer_id"])
    op.create_index(op.f("ix_appointments_starts_at"), "appointments", ["starts_at"])
    op.create_index("uq_appointments_customer_booked", "appointments", ["customer_id"],
                    unique=True, sqlite_where=sa.text("state = 'booked'"),
                    postgresql_where=sa.text("state = 'booked'"))
    _add_contradiction_rule()


def _add_contradiction_rule() -> None:
    """A new rule-set version: the current rules and the contradiction rule."""
    conn = op.get_bind()
    row = conn.execute(sa.text("SELECT version, rules FROM risk_rule_sets "
                               "ORDER BY version DESC LIMIT 1")).first()
    if row is None:
        return
    rules = row[1] if isinstance(row[1], dict) else json.loads(row[1])
    if any(r.get("id") == CONTRADICTION_RULE["id"] for r in rules.get("rules", [])):
        return
    rules = {**rules, "rules": [*rules["rules"], CONTRADICTION_RULE]}
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False).encode()).hexdigest()
    table = sa.table("risk_rule_sets", sa.column("version", sa.Integer),
                     sa.column("rules", sa.JSON), sa.column("sha256", sa.String),
                     sa.column("created_at", sa.DateTime(timezone=True)),
                     sa.column("created_by", sa.String), sa.column("note", sa.Text))
    op.bulk_insert(table, [{"version": int(row[0]) + 1, "rules": rules, "sha256": digest,
                            "created_at": datetime.now(timezone.utc),
                            "created_by": "migration:0009",
                            "note": "adds credit_contradictions (car-loan interview)"}])


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.text("DELETE FROM risk_rule_sets WHERE created_by = 'migration:0009' "
                         "AND version NOT IN (SELECT risk_rules_version FROM call_sessions "
                         "WHERE risk_rules_version IS NOT NULL)"))
    op.drop_index("uq_appointments_customer_booked", table_name="appointments")
    op.drop_table("appointments")
    op.drop_table("appointment_slots")
    op.drop_table("loan_roster")
    op.drop_table("credit_result_deliveries")
    op.drop_table("loan_interviews")
