"""routing rules: a service's routing settings (pool widening, overflow, consecutive
offers) and agents' preferred skills

Revision ID: 0011
Revises: 0009
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service_types") as batch:
        # cloudcounter.queue.routing.ServiceRules.to_dict(); NULL: no rules
        batch.add_column(sa.Column("routing", sa.JSON(), nullable=True))
    with op.batch_alter_table("agent_skills") as batch:
        batch.add_column(sa.Column("preferred", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("agent_skills") as batch:
        batch.drop_column("preferred")
    with op.batch_alter_table("service_types") as batch:
        batch.drop_column("routing")
