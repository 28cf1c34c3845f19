"""the alert ledger is looked up by ticket through its unique key alone

`alertrecord` had an index on `ticket_id` beside its unique (ticket_id, deadline, level,
cycle) constraint, whose index starts with the same column and answers every lookup by
ticket (the ticket's fired alerts, the foreign key). Each ledger row paid for both; a
catch-up after downtime writes 160k of them in one transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_alertrecord_ticket_id", table_name="alertrecord")


def downgrade() -> None:
    op.create_index("ix_alertrecord_ticket_id", "alertrecord", ["ticket_id"], unique=False)
