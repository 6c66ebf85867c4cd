"""service flows: scripts, steps, confirmations, risk, approvals, account changes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
import hashlib
import json
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
import yaml

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copy of the default risk rules at the time of this migration (rule set version 1).
DEFAULT_RULES = """
thresholds: {medium: 20, high: 50, block: 100}
rules:
  - id: record_high_risk
    when: [{signal: customer_risk, op: eq, value: high}]
    weight: 30
    reason: The customer's record says high risk
  - id: record_medium_risk
    when: [{signal: customer_risk, op: eq, value: medium}]
    weight: 10
    reason: The customer's record says medium risk
  - id: identity_no_match
    when: [{signal: identity_verdict, op: eq, value: no_match}]
    weight: 60
    min_level: high
    reason: The face does not match the reference photo
  - id: identity_inconclusive
    when: [{signal: identity_verdict, op: in, value: [no_face, multiple_faces]}]
    weight: 15
    reason: The identity check could not compare one face
  - id: identity_close_match
    when: [{signal: identity_verdict, op: eq, value: match}, {signal: identity_margin, op: lt, value: 0.05}]
    weight: 10
    reason: The face matched, but close to the threshold
  - id: liveness_failed
    when: [{signal: liveness_verdict, op: eq, value: fail}]
    weight: 40
    min_level: high
    reason: The liveness check failed
  - id: impersonation
    when: [{signal: identity_verdict, op: eq, value: no_match}, {signal: liveness_verdict, op: eq, value: fail}]
    weight: 0
    min_level: block
    reason: Face not matching and liveness failed together
  - id: face_absent
    when: [{signal: face_absent_s, op: gte, value: 10}]
    weight: 10
    reason: The customer's face was out of view for 10 s or more
  - id: several_faces
    when: [{signal: multiple_faces_s, op: gte, value: 3}]
    weight: 25
    reason: Someone else was in the picture for 3 s or more
  - id: face_changed
    when: [{signal: face_changed_s, op: gte, value: 2}]
    weight: 60
    min_level: high
    reason: The face changed during the call
  - id: coercion_answer
    when: [{signal: coercion_concerns, op: gte, value: 1}]
    weight: 50
    min_level: high
    reason: An anti-coercion question was answered with a concern
  - id: coercion_answers
    when: [{signal: coercion_concerns, op: gte, value: 2}]
    weight: 30
    reason: Several anti-coercion answers raise concern
  - id: confirmation_declined
    when: [{signal: confirmation, op: eq, value: declined}]
    weight: 30
    reason: The customer did not confirm a statement
  - id: confirmation_hesitant
    when: [{signal: confirmation_delay_s, op: gte, value: 30}]
    weight: 10
    reason: The customer took 30 s or more to answer a statement
  - id: confirmation_spoken_only
    when: [{signal: confirmation_spoken, op: eq, value: true}]
    weight: 5
    reason: A statement was confirmed aloud only (recorded by the agent)
  - id: large_amount
    when: [{signal: amount, op: gte, value: 10000}]
    weight: 10
    reason: The amount is 10,000 or more
  - id: very_large_amount
    when: [{signal: amount, op: gte, value: 50000}]
    weight: 15
    reason: The amount is 50,000 or more
  - id: takeover_pattern
    when: [{signal: service, op: eq, value: large_transfer}, {signal: days_since_contact_change, op: lte, value: 30}]
    weight: 45
    min_level: high
    reason: Contact details changed in the last 30 days, now a large transfer
  - id: network_changed
    when: [{signal: address_changes, op: gte, value: 1}]
    weight: 15
    reason: The customer reconnected from another network address during the call
  - id: agent_concern
    when: [{signal: agent_concern, op: eq, value: true}]
    weight: 40
    min_level: high
    reason: The agent has concerns
"""


def upgrade() -> None:
    op.create_table(
        "service_scripts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_code", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=128), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["service_code"], ["service_types.code"],
                                name=op.f("fk_service_scripts_service_code_service_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_scripts")),
        sa.UniqueConstraint("service_code", "version",
                            name=op.f("uq_service_scripts_service_code")),
    )
    rule_sets = op.create_table(
        "risk_rule_sets",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_risk_rule_sets")),
    )
    rules = yaml.safe_load(DEFAULT_RULES)
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False).encode()).hexdigest()
    op.bulk_insert(rule_sets, [{"version": 1, "rules": rules, "sha256": digest,
                                "created_at": datetime.now(timezone.utc),
                                "created_by": "migration:0004",
                                "note": "default rules shipped with cloudcounter"}])

    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("card_last4", sa.String(length=4), nullable=True))

    with op.batch_alter_table("call_sessions") as batch:
        batch.add_column(sa.Column("subject", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("script_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("script_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("business_state", sa.String(length=24), nullable=True))
        batch.add_column(sa.Column("risk_score", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("risk_level", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("risk_reasons", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("risk_rules_version", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_call_sessions_script_id_service_scripts"),
                                 "service_scripts", ["script_id"], ["id"])
        batch.create_foreign_key(op.f("fk_call_sessions_risk_rules_version_risk_rule_sets"),
                                 "risk_rule_sets", ["risk_rules_version"], ["version"])
        batch.create_check_constraint(
            "risk_level", "risk_level IS NULL OR risk_level IN ('low', 'medium', 'high', "
            "'block')")
        batch.create_index(batch.f("ix_call_sessions_risk_level"), ["risk_level"],
                           unique=False)

    op.create_table(
        "call_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("step_id", sa.String(length=48), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=True),
        sa.Column("offset_s", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_call_steps_call_id_call_sessions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_steps")),
        sa.UniqueConstraint("call_id", "step_id", name=op.f("uq_call_steps_call_id")),
    )
    op.create_index(op.f("ix_call_steps_call_id"), "call_steps", ["call_id"], unique=False)

    op.create_table(
        "call_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("step_id", sa.String(length=48), nullable=False),
        sa.Column("prompt_id", sa.String(length=24), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("script_id", sa.Integer(), nullable=True),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shown_segment", sa.Integer(), nullable=True),
        sa.Column("shown_offset_s", sa.Double(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.String(length=32), nullable=True),
        sa.Column("answered_by", sa.String(length=80), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("answered_segment", sa.Integer(), nullable=True),
        sa.Column("answered_offset_s", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_call_confirmations_call_id_call_sessions")),
        sa.ForeignKeyConstraint(["script_id"], ["service_scripts.id"],
                                name=op.f("fk_call_confirmations_script_id_service_scripts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_confirmations")),
        sa.UniqueConstraint("prompt_id", name=op.f("uq_call_confirmations_prompt_id")),
    )
    op.create_index(op.f("ix_call_confirmations_call_id"), "call_confirmations", ["call_id"],
                    unique=False)

    op.create_table(
        "call_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_note", sa.Text(), nullable=False),
        sa.Column("risk_score", sa.Integer(), nullable=False),
        sa.Column("risk_level", sa.String(length=8), nullable=False),
        sa.Column("risk_reasons", sa.JSON(), nullable=False),
        sa.Column("risk_rules_version", sa.Integer(), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'approved', 'refused', 'withdrawn')",
                           name=op.f("ck_call_approvals_state")),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_call_approvals_call_id_call_sessions")),
        sa.ForeignKeyConstraint(["requested_by"], ["users.id"],
                                name=op.f("fk_call_approvals_requested_by_users")),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"],
                                name=op.f("fk_call_approvals_decided_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_approvals")),
    )
    op.create_index(op.f("ix_call_approvals_call_id"), "call_approvals", ["call_id"],
                    unique=False)
    op.create_index(op.f("ix_call_approvals_state"), "call_approvals", ["state"], unique=False)

    op.create_table(
        "customer_account_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_account_changes_customer_id_customers")),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_customer_account_changes_call_id_call_sessions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_account_changes")),
    )
    op.create_index(op.f("ix_customer_account_changes_customer_id"),
                    "customer_account_changes", ["customer_id"], unique=False)
    op.create_index(op.f("ix_customer_account_changes_changed_at"),
                    "customer_account_changes", ["changed_at"], unique=False)


def downgrade() -> None:
    op.drop_table("customer_account_changes")
    op.drop_table("call_approvals")
    op.drop_table("call_confirmations")
    op.drop_table("call_steps")
    with op.batch_alter_table("call_sessions") as batch:
        batch.drop_index(batch.f("ix_call_sessions_risk_level"))
        batch.drop_constraint("risk_level", type_="check")
        batch.drop_constraint(op.f("fk_call_sessions_risk_rules_version_risk_rule_sets"),
                              type_="foreignkey")
        batch.drop_constraint(op.f("fk_call_sessions_script_id_service_scripts"),
                              type_="foreignkey")
        for column in ("risk_rules_version", "risk_reasons", "risk_level", "risk_score",
                       "business_state", "script_version", "script_id", "subject"):
            batch.drop_column(column)
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("card_last4")
    op.drop_table("risk_rule_sets")
    op.drop_table("service_scripts")
