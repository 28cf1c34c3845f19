"""tickets keep the deadlines their promises were measured against; outbox rows may carry a file

The managers' figures judge each promise by the deadline in force when it was kept, so a
ticket now records it when it is resolved (resolve_due) and when its progress plan is agreed
(plan_agreed_at, plan_agreed_due). Tickets resolved before this revision get the best the
stored columns allow: the plan's target or the handling deadline; a plan agreed earlier is
judged by the plan breach in the alert ledger if there was one. The period's tickets are
found by created_at, and its resolutions and what stayed open by (resolved_at, squad_id,
created_at), both now indexed. An outbox row may point at a file written
for it (a chart, a ledger), sent as an upload.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 16:05:39
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("local_path", sa.Text(), nullable=True))

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resolve_due", models.db.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("plan_agreed_at", models.db.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("plan_agreed_due", models.db.UtcDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_ticket_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            "ix_ticket_resolved_squad", ["resolved_at", "squad_id", "created_at"], unique=False
        )

    op.execute(
        "UPDATE ticket SET resolve_due = COALESCE(plan_target,"
        " CASE WHEN plan_required THEN plan_due END, handling_due)"
        " WHERE resolved_at IS NOT NULL"
    )
    # recording a plan used to overwrite plan_due with the moment it was recorded
    op.execute(
        "UPDATE ticket SET plan_agreed_at = plan_due, plan_agreed_due = COALESCE("
        "(SELECT MIN(a.due_at) FROM alertrecord a WHERE a.ticket_id = ticket.id"
        " AND a.deadline = 'plan' AND a.level = 'breach' AND a.cycle = ticket.cycle),"
        " plan_due) WHERE plan_target IS NOT NULL AND plan_due IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_resolved_squad")
        batch_op.drop_index(batch_op.f("ix_ticket_created_at"))
        batch_op.drop_column("plan_agreed_due")
        batch_op.drop_column("plan_agreed_at")
        batch_op.drop_column("resolve_due")

    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.drop_column("local_path")
