"""queue store: an agent's offer streak (routing's max_consecutive_offers) and a call's
callback (waiting / due, and until when) on their rows

PostgreSQL only, like 0012.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.add_column("queue_agents", sa.Column("streak_service", sa.Text(), nullable=False,
                                            server_default=""))
    op.add_column("queue_agents", sa.Column("streak_count", sa.Integer(), nullable=False,
                                            server_default="0"))
    op.add_column("queue_calls", sa.Column("callback", sa.Text(), nullable=True))
    op.add_column("queue_calls", sa.Column("callback_due_until", sa.Float(53), nullable=True))
    op.execute("ALTER TABLE queue_calls ADD CONSTRAINT queue_calls_callback "
               "CHECK (callback IS NULL OR callback IN ('waiting', 'due'))")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE queue_calls DROP CONSTRAINT queue_calls_callback")
    op.drop_column("queue_calls", "callback_due_until")
    op.drop_column("queue_calls", "callback")
    op.drop_column("queue_agents", "streak_count")
    op.drop_column("queue_agents", "streak_service")
