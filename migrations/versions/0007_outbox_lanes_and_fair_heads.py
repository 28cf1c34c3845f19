"""outbox rows get a lane; each chat's first pending row is found from an index

`outboxmessage.priority` is the row's lane (models.outbox.LANES): among the chats with a
message ready to send, the dispatcher serves the higher lane first, so digests and reports
never hold back an answer. Rows already queued get the ordinary lane (1).
`ix_outbox_head` (state, channel, chat_id, id) lets the dispatcher take the first pending row
of every chat (MIN(id) GROUP BY chat_id) from the index alone, instead of the oldest rows of
the whole table, so one chat's backlog no longer holds back every other chat.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="1")
        )
        batch_op.create_index("ix_outbox_head", ["state", "channel", "chat_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outboxmessage", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_head")
        batch_op.drop_column("priority")
