"""leaders take tickets on personally; calendar jobs run once

`ticket.led_by` names the lead or manager who took a ticket on personally (领办);
`scheduledrun` is the ledger of the morning digest and the monthly ranking, one row per job
and period, so neither is sent twice across restarts or by two processes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place; rebuilding the ticket table
        # instead would trip over every table that points at it
        op.execute("ALTER TABLE ticket ADD COLUMN led_by INTEGER REFERENCES person (id)")
    else:
        op.add_column("ticket", sa.Column("led_by", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_ticket_led_by_person", "ticket", "person", ["led_by"], ["id"])
    op.create_table(
        "scheduledrun",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("ran_at", models.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("scheduledrun")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE ticket DROP COLUMN led_by")
    else:
        op.drop_constraint("fk_ticket_led_by_person", "ticket", type_="foreignkey")
        op.drop_column("ticket", "led_by")
