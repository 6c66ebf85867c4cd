"""supervision: the hash chain of call timelines (backfilled), the daily digest log,
review tasks, checklist answers, findings and their actions, retention rules, legal holds

Revision ID: 0010
Revises: 0011
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

from cloudcounter.audit.chain import GENESIS, event_hash

revision = "0010"
down_revision = "0011"
branch_labels = None
depends_on = None

EVENTS = sa.table("call_events", sa.column("id", sa.Integer()), sa.column("call_id", sa.String()),
                  sa.column("seq", sa.Integer()), sa.column("at", sa.DateTime(timezone=True)),
                  sa.column("actor", sa.String()), sa.column("kind", sa.String()),
                  sa.column("payload", sa.JSON()), sa.column("hash", sa.String()),
                  sa.column("prev_hash", sa.String()))


def backfill() -> None:
    """Chain the events written before this revision, call by call, in sequence order."""
    conn = op.get_bind()
    calls = [r[0] for r in conn.execute(sa.select(EVENTS.c.call_id).distinct()
                                        .where(EVENTS.c.hash.is_(None)))]
    for call_id in calls:
        rows = conn.execute(sa.select(EVENTS).where(EVENTS.c.call_id == call_id)
                            .order_by(EVENTS.c.seq)).all()
        prev, updates = GENESIS, []
        for r in rows:
            if r.hash is None:
                h = event_hash(r.call_id, r.seq, r.at, r.actor, r.kind, r.payload, prev)
                updates.append({"_id": r.id, "hash": h, "prev_hash": prev})
            else:
                h = r.hash
            prev = h
        if updates:
            conn.execute(sa.update(EVENTS).where(EVENTS.c.id == sa.bindparam("_id"))
                         .values(hash=sa.bindparam("hash"), prev_hash=sa.bindparam("prev_hash")),
                         updates)


APPEND_ONLY = ("call_events", "audit_digests")


def append_only() -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE) on the timeline and the digest log in the
    database itself: no code path, API or mistaken query changes them. Whoever drops the
    triggers (an administrator) is caught by the hash chain and the signed digest."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION cc_append_only() RETURNS trigger "
                   "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% is append-only', "
                   "TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END $$")
        for t in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                       "FOR EACH ROW EXECUTE FUNCTION cc_append_only()")
            op.execute(f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION cc_append_only()")
    else:
        for t in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {t}_append_only_{verb.lower()} BEFORE {verb} "
                           f"ON {t} BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END")


def drop_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        op.execute("DROP FUNCTION IF EXISTS cc_append_only()")
    else:
        for t in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only_{verb}")


def upgrade() -> None:
    with op.batch_alter_table("call_events") as batch:
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
    backfill()
    op.create_table(
        "audit_digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("prev_root", sa.String(length=64), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("signature", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_digests")),
        sa.UniqueConstraint("day", name=op.f("uq_audit_digests_day")),
    )
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("purge_rule", sa.String(length=64), nullable=True))
    op.create_table(
        "review_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("rule_id", sa.String(length=48), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("draw", sa.Float(), nullable=False),
        sa.Column("selected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("selected_by", sa.String(length=80), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checklist_id", sa.String(length=48), nullable=True),
        sa.Column("checklist_version", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('open', 'in_review', 'findings_raised', 'closed')",
                           name=op.f("ck_review_tasks_state")),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_review_tasks_call_id_call_sessions")),
        sa.ForeignKeyConstraint(["assignee_id"], ["users.id"],
                                name=op.f("fk_review_tasks_assignee_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_tasks")),
        sa.UniqueConstraint("call_id", name=op.f("uq_review_tasks_call_id")),
    )
    for col in ("rule_id", "state", "assignee_id", "due_at"):
        op.create_index(op.f(f"ix_review_tasks_{col}"), "review_tasks", [col])
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=48), nullable=False),
        sa.Column("result", sa.String(length=8), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("recording_time_s", sa.Float(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.Integer(), nullable=False),
        sa.CheckConstraint("result IN ('pass', 'fail', 'na')",
                           name=op.f("ck_review_items_result")),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"],
                                name=op.f("fk_review_items_task_id_review_tasks")),
        sa.ForeignKeyConstraint(["by"], ["users.id"], name=op.f("fk_review_items_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_items")),
        sa.UniqueConstraint("task_id", "item_id", name=op.f("uq_review_items_task_id")),
    )
    op.create_index(op.f("ix_review_items_task_id"), "review_items", ["task_id"])
    op.create_table(
        "review_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("severity", sa.String(length=12), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("item_id", sa.String(length=48), nullable=True),
        sa.Column("recording_time_s", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('open', 'responded', 'accepted', 'rejected')",
                           name=op.f("ck_review_findings_state")),
        sa.CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')",
                           name=op.f("ck_review_findings_severity")),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"],
                                name=op.f("fk_review_findings_task_id_review_tasks")),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_review_findings_call_id_call_sessions")),
        sa.ForeignKeyConstraint(["agent_id"], ["users.id"],
                                name=op.f("fk_review_findings_agent_id_users")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"],
                                name=op.f("fk_review_findings_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_findings")),
    )
    for col in ("task_id", "call_id", "agent_id", "category", "state"):
        op.create_index(op.f(f"ix_review_findings_{col}"), "review_findings", [col])
    op.create_table(
        "review_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"],
                                name=op.f("fk_review_actions_task_id_review_tasks")),
        sa.ForeignKeyConstraint(["finding_id"], ["review_findings.id"],
                                name=op.f("fk_review_actions_finding_id_review_findings")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_review_actions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_actions")),
    )
    op.create_index(op.f("ix_review_actions_task_id"), "review_actions", ["task_id"])
    op.create_index(op.f("ix_review_actions_finding_id"), "review_actions", ["finding_id"])
    op.create_table(
        "retention_rules",
        sa.Column("service_code", sa.String(length=32), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["service_code"], ["service_types.code"],
                                name=op.f("fk_retention_rules_service_code_service_types")),
        sa.PrimaryKeyConstraint("service_code", name=op.f("pk_retention_rules")),
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["call_sessions.id"],
                                name=op.f("fk_legal_holds_call_id_call_sessions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_call_id"), "legal_holds", ["call_id"])
    append_only()


def downgrade() -> None:
    drop_append_only()
    for table in ("legal_holds", "retention_rules", "review_actions", "review_findings",
                  "review_items", "review_tasks"):
        op.drop_table(table)
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("purge_rule")
        batch.drop_column("purged_at")
    op.drop_table("audit_digests")
    with op.batch_alter_table("call_events") as batch:
        batch.drop_column("prev_hash")
        batch.drop_column("hash")
