"""leases on the inbox, the outbox and attachments, so several processes share one database

Each row of work gets `lease_owner` (the process that took it) and `lease_until` (when its
lease ends unless renewed): another process leaves a leased row alone, and takes it over
once the lease has run out (models/leases.py). The inbox also keeps the chat an update came
from, so a chat's updates are handled in order by one process at a time; updates stored
before this migration have none and are handled together, in order, like one chat.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEASED = ("inboxupdate", "outboxmessage", "attachment")


def upgrade() -> None:
    for table in LEASED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table == "inboxupdate":
                batch_op.add_column(sa.Column("chat_id", sa.BigInteger(), nullable=True))
            batch_op.add_column(
                sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
            )
            batch_op.add_column(sa.Column("lease_until", models.db.UtcDateTime(), nullable=True))


def downgrade() -> None:
    for table in LEASED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("lease_until")
            batch_op.drop_column("lease_owner")
            if table == "inboxupdate":
                batch_op.drop_column("chat_id")
