"""standard service catalogue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of the catalogue at the time of this migration.
SERVICES = [
    ("card_loss", "Card-loss report", "counter_service", "cards", 5, ["identity"]),
    ("password_reset", "Password reset", "counter_service", "security", 3, ["identity", "liveness"]),
    ("contact_change", "Change of contact details", "counter_service", "accounts", 1, ["identity"]),
    ("large_transfer", "Large-transfer confirmation", "counter_service", "payments", 4,
     ["identity", "liveness"]),
    ("car_loan", "Car-loan video interview", "loan_interview", "loans", 2, ["identity", "liveness"]),
]


def upgrade() -> None:
    table = sa.table(
        "service_types",
        sa.column("code", sa.String), sa.column("name", sa.String), sa.column("kind", sa.String),
        sa.column("required_skill", sa.String), sa.column("priority", sa.Integer),
        sa.column("auto_checks", sa.JSON),
    )
    op.bulk_insert(table, [
        {"code": c, "name": n, "kind": k, "required_skill": s, "priority": p, "auto_checks": a}
        for c, n, k, s, p, a in SERVICES
    ])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM service_types WHERE code IN "
                       "('card_loss','password_reset','contact_change','large_transfer','car_loan')"))
