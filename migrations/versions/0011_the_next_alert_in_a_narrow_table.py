"""a ticket's next alert time moves to a narrow table of its own, `ticketalarm`

Rearming a ticket wrote its whole row (some thirty columns, the figure columns worked out
again) to change one time; a catch-up after downtime rearms 100k tickets in one transaction.
`ticketalarm` holds a row per ticket with an alert pending, indexed by its time, which is all
the deadline timer reads; a ticket with none has no row.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticketalarm",
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("next_alert_at", models.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"]),
        sa.PrimaryKeyConstraint("ticket_id"),
    )
    op.create_index("ix_ticketalarm_next_alert_at", "ticketalarm", ["next_alert_at"])
    op.execute(
        "INSERT INTO ticketalarm (ticket_id, next_alert_at)"
        " SELECT id, next_alert_at FROM ticket WHERE next_alert_at IS NOT NULL"
    )
    op.drop_index("ix_ticket_next_alert_at", table_name="ticket")
    # SQLite drops a column in place (3.35 and later): no copy of the ticket table
    op.drop_column("ticket", "next_alert_at")


def downgrade() -> None:
    op.add_column("ticket", sa.Column("next_alert_at", models.db.UtcDateTime(), nullable=True))
    op.execute(
        "UPDATE ticket SET next_alert_at ="
        " (SELECT a.next_alert_at FROM ticketalarm a WHERE a.ticket_id = ticket.id)"
    )
    op.create_index("ix_ticket_next_alert_at", "ticket", ["next_alert_at"], unique=False)
    op.drop_index("ix_ticketalarm_next_alert_at", table_name="ticketalarm")
    op.drop_table("ticketalarm")
