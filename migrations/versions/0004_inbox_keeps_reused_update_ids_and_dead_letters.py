"""inbox keeps reused update ids apart and marks dead letters

Telegram may start update ids again after a week without updates, so the inbox gets a
surrogate key and is unique on (update_id, digest of the body); updates given up on are
marked with dead_at instead of blocking the ones behind them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 16:00:00
"""

import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _digest(payload: str) -> str:
    try:
        canonical = json.dumps(json.loads(payload), sort_keys=True, ensure_ascii=True)
    except ValueError:
        canonical = payload
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("inboxupdate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inboxupdate_processed_at"))
    op.rename_table("inboxupdate", "inboxupdate_0003")
    new = op.create_table(
        "inboxupdate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("processed_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("dead_at", models.db.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("update_id", "digest"),
    )
    assert new is not None
    with op.batch_alter_table("inboxupdate", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inboxupdate_update_id"), ["update_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inboxupdate_processed_at"), ["processed_at"], unique=False
        )
    bind = op.get_bind()
    old = sa.table(
        "inboxupdate_0003",
        sa.column("update_id", sa.BigInteger()),
        sa.column("payload", sa.Text()),
        sa.column("received_at", sa.DateTime()),
        sa.column("processed_at", sa.DateTime()),
        sa.column("attempts", sa.Integer()),
        sa.column("error", sa.Text()),
    )
    rows = bind.execute(sa.select(old).order_by(old.c.update_id)).mappings().all()
    batch: list[dict[str, object]] = []
    for row in rows:
        batch.append({**row, "digest": _digest(row["payload"]), "dead_at": None})
        if len(batch) >= 1000:
            bind.execute(_plain(new).insert(), batch)
            batch = []
    if batch:
        bind.execute(_plain(new).insert(), batch)
    op.drop_table("inboxupdate_0003")


def _plain(table: sa.Table) -> sa.TableClause:
    """The new table with plain datetimes: rows are copied as stored (naive UTC)."""
    return sa.table(
        table.name,
        *(
            sa.column(c.name, sa.DateTime() if c.name.endswith("_at") else c.type)
            for c in table.columns
            if c.name != "id"
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("inboxupdate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inboxupdate_processed_at"))
        batch_op.drop_index(batch_op.f("ix_inboxupdate_update_id"))
    op.rename_table("inboxupdate", "inboxupdate_0004")
    op.create_table(
        "inboxupdate",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", models.db.UtcDateTime(), nullable=False),
        sa.Column("processed_at", models.db.UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("update_id"),
    )
    with op.batch_alter_table("inboxupdate", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inboxupdate_processed_at"), ["processed_at"], unique=False
        )
    # the newest body of each update id survives; older reuses of an id cannot be kept
    op.execute(
        "INSERT INTO inboxupdate (update_id, payload, received_at, processed_at, attempts, error)"
        " SELECT update_id, payload, received_at, COALESCE(processed_at, dead_at), attempts,"
        " error FROM inboxupdate_0004 o WHERE o.id = (SELECT MAX(i.id) FROM inboxupdate_0004 i"
        " WHERE i.update_id = o.update_id)"
    )
    op.drop_table("inboxupdate_0004")
