"""security: staff sessions, security event log, journal dead letters, TOTP, opaque
recording ids

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30
"""
import secrets

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.String(length=48), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_hash", sa.String(length=64), nullable=False),
        sa.Column("previous_refresh_hash", sa.String(length=64), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.Column("revoked_by", sa.String(length=80), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_staff_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
    )
    op.create_index(op.f("ix_staff_sessions_user_id"), "staff_sessions", ["user_id"])
    op.create_index(op.f("ix_staff_sessions_refresh_hash"), "staff_sessions", ["refresh_hash"])
    op.create_index(op.f("ix_staff_sessions_previous_refresh_hash"), "staff_sessions",
                    ["previous_refresh_hash"])

    op.create_table(
        "security_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=160), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
    )
    op.create_index(op.f("ix_security_events_at"), "security_events", ["at"])
    op.create_index(op.f("ix_security_events_kind"), "security_events", ["kind"])
    op.create_index(op.f("ix_security_events_actor"), "security_events", ["actor"])

    op.create_table(
        "journal_dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("op", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_dead_letters")),
    )
    op.create_index(op.f("ix_journal_dead_letters_call_id"), "journal_dead_letters",
                    ["call_id"])

    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))

    # Opaque recording ids: a random public id for every existing recording, then required.
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("public_id", sa.String(length=32), nullable=True))
    conn = op.get_bind()
    recordings = sa.table("recordings", sa.column("id", sa.Integer),
                          sa.column("public_id", sa.String))
    for (rec_id,) in conn.execute(sa.select(recordings.c.id)).all():
        conn.execute(sa.update(recordings).where(recordings.c.id == rec_id)
                     .values(public_id="rec_" + secrets.token_hex(12)))
    with op.batch_alter_table("recordings") as batch:
        batch.alter_column("public_id", existing_type=sa.String(length=32), nullable=False)
        batch.create_unique_constraint(op.f("uq_recordings_public_id"), ["public_id"])


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_constraint(op.f("uq_recordings_public_id"), type_="unique")
        batch.drop_column("public_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
    op.drop_index(op.f("ix_journal_dead_letters_call_id"), table_name="journal_dead_letters")
    op.drop_table("journal_dead_letters")
    op.drop_index(op.f("ix_security_events_actor"), table_name="security_events")
    op.drop_index(op.f("ix_security_events_kind"), table_name="security_events")
    op.drop_index(op.f("ix_security_events_at"), table_name="security_events")
    op.drop_table("security_events")
    op.drop_index(op.f("ix_staff_sessions_previous_refresh_hash"), table_name="staff_sessions")
    op.drop_index(op.f("ix_staff_sessions_refresh_hash"), table_name="staff_sessions")
    op.drop_index(op.f("ix_staff_sessions_user_id"), table_name="staff_sessions")
    op.drop_table("staff_sessions")
