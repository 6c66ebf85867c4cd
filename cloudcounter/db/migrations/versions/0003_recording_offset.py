"""recording start offset and segment

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("offset_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("segment", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("segment")
        batch.drop_column("offset_s")
