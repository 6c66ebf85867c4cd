"""queue store: the call queue as rows (issue 11; cloudcounter.queue.stores.postgres)

Created only on PostgreSQL: the embedded memory backend needs no tables, and the partial
unique indexes and advisory locks the several-node queue relies on are PostgreSQL's.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None

OPEN = "state <> 'ended'"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE queue_call_seq")
    op.create_table(
        "queue_calls",
        sa.Column("call_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("skill", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        # the queue order: original enqueue time (database clock, epoch seconds), then seq
        sa.Column("enqueued_at", sa.Float(53), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("offer_expires_at", sa.Float(53), nullable=True),
        sa.Column("answered_at", sa.Float(53), nullable=True),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("customer_online", sa.Boolean(), nullable=False),
        sa.Column("customer_risk", sa.Text(), nullable=False),
        sa.Column("grace_until", sa.Float(53), nullable=True),
        sa.Column("excluded", postgresql.JSONB(), nullable=False),  # [[agent id, until]]
        sa.Column("dropped_by", sa.Text(), nullable=True),
        sa.Column("dropped_at", sa.Float(53), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    # one live call (offered or answered) per agent, one open call per customer
    op.create_index("queue_calls_one_live_per_agent", "queue_calls", ["agent_id"],
                    unique=True,
                    postgresql_where=sa.text("state IN ('offered', 'in_call')"))
    op.create_index("queue_calls_one_open_per_customer", "queue_calls", ["customer_id"],
                    unique=True, postgresql_where=sa.text(OPEN))
    op.create_index("queue_calls_order", "queue_calls", ["enqueued_at", "seq"])
    op.create_table(
        "queue_agents",
        sa.Column("agent_id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("skills", postgresql.JSONB(), nullable=False),
        sa.Column("preferred", postgresql.JSONB(), nullable=False),
        sa.Column("lead", sa.Boolean(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("state_since", sa.Float(53), nullable=False),
        sa.Column("idle_since", sa.Float(53), nullable=False),
        sa.Column("missed_offers", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=True),
        sa.Column("wrap_up_until", sa.Float(53), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        # a team lead is never available
        sa.CheckConstraint("NOT (lead AND state = 'available')", name="queue_agents_lead"),
    )
    # an agent offered or busy holds exactly one call, and no other agent holds it
    op.create_index("queue_agents_one_per_call", "queue_agents", ["call_id"], unique=True,
                    postgresql_where=sa.text("state IN ('offered', 'busy')"))
    op.create_table(
        "queue_leader",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("node", sa.Text(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id = 1", name="queue_leader_one_row"),
    )
    op.execute("INSERT INTO queue_leader (id, epoch) VALUES (1, 0)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_table("queue_leader")
    op.drop_table("queue_agents")
    op.drop_table("queue_calls")
    op.execute("DROP SEQUENCE queue_call_seq")
