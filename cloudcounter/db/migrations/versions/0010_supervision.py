"""supervision: the hash chain of call timelines (backfilled), the daily digest log

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

from cloudcounter.audit.chain import GENESIS, event_hash

revision = "0010"
down_revision = "0008"
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


def downgrade() -> None:
    op.drop_table("audit_digests")
    with op.batch_alter_table("call_events") as batch:
        batch.drop_column("prev_hash")
        batch.drop_column("hash")
