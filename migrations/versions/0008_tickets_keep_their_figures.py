"""tickets keep their figures: times from filing, each promise's verdict and running deadline

The managers' figures used to work out, for every ticket of the period on every /stats, the
seconds to its first reply and to its resolution and how each promise went, from a dozen of
its timestamps. The database now keeps these as generated columns of the ticket, computed
from the row's own columns whenever it changes, whoever changes it (the rules are
models/promise_rules.py; the expressions below are theirs as of this revision):

    first_response_s, resolution_s   whole seconds from filing
    <promise>_kept                   once done: 1 kept, 0 missed (NULL: no deadline)
    <promise>_pending_due            while not done: the deadline in force

for the reply, handling and plan promises, and `ix_ticket_figures` holds them with the
squad, the filing time, the cycle and the rating, so a period's figures per squad are read
from the index alone, in squad order. The index of resolutions leads with the squad as
well (ix_ticket_resolved_squad on (resolved_at, squad_id, created_at) becomes
ix_ticket_squad_resolved on (squad_id, resolved_at, created_at)): the resolutions of a
period, and what stayed open at its end, are counted squad by squad without sorting.

Existing tickets need no backfill: PostgreSQL computes the stored columns as it adds them
(one rewrite of the table, under its lock); SQLite's ALTER TABLE can only add virtual
generated columns, computed on reading and kept in the index.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SECONDS = {
    "sqlite": "CAST(ROUND((julianday({end}) - julianday(created_at)) * 86400.0) AS INTEGER)",
    "postgresql": "CAST(ROUND(EXTRACT(EPOCH FROM ({end} - created_at))) AS BIGINT)",
}
TRUE = {"sqlite": "1", "postgresql": "true"}
TIMESTAMP = {"sqlite": "DATETIME", "postgresql": "TIMESTAMP WITHOUT TIME ZONE"}
INDEXED = (
    "squad_id, created_at, first_response_s, resolution_s, reply_kept, reply_pending_due, "
    "handling_kept, handling_pending_due, plan_kept, plan_pending_due, cycle, rating, id"
)


def _kept(done: str, due: str) -> str:
    return f"CASE WHEN ({done} <= {due}) THEN 1 WHEN ({due} IS NOT NULL) THEN 0 ELSE NULL END"


def columns(dialect: str) -> list[tuple[str, str, str]]:
    """(name, type, expression) of each column, in the dialect's SQL."""
    seconds, true, timestamp = SECONDS[dialect], TRUE[dialect], TIMESTAMP[dialect]
    paused = "(state = 'waiting' AND handling_remaining_s > 0)"
    return [
        ("first_response_s", "BIGINT", seconds.format(end="first_response_at")),
        ("resolution_s", "BIGINT", seconds.format(end="resolved_at")),
        (
            "reply_kept",
            "INTEGER",
            "CASE WHEN (first_response_at IS NULL) THEN NULL ELSE "
            f"{_kept('first_response_at', 'response_due')} END",
        ),
        (
            "reply_pending_due",
            timestamp,
            "CASE WHEN (first_response_at IS NOT NULL) THEN NULL ELSE response_due END",
        ),
        (
            "handling_kept",
            "INTEGER",
            "CASE WHEN (resolved_at IS NULL) THEN NULL "
            f"WHEN (resolved_at IS NOT NULL) THEN {_kept('resolved_at', 'resolve_due')} "
            f"WHEN (plan_target IS NOT NULL) THEN {_kept('resolved_at', 'plan_target')} "
            f"WHEN (plan_required IS {true}) THEN NULL "
            f"WHEN {paused} THEN NULL "
            f"ELSE {_kept('resolved_at', 'handling_due')} END",
        ),
        (
            "handling_pending_due",
            timestamp,
            "CASE WHEN (resolved_at IS NOT NULL) THEN NULL "
            "WHEN (resolved_at IS NOT NULL) THEN resolve_due "
            "WHEN (plan_target IS NOT NULL) THEN plan_target "
            f"WHEN (plan_required IS {true}) THEN NULL "
            f"WHEN {paused} THEN NULL "
            "ELSE handling_due END",
        ),
        (
            "plan_kept",
            "INTEGER",
            "CASE WHEN (plan_agreed_at IS NULL) THEN NULL "
            f"WHEN (plan_agreed_at IS NOT NULL) THEN {_kept('plan_agreed_at', 'plan_agreed_due')} "
            f"WHEN (plan_required IS {true}) THEN {_kept('plan_agreed_at', 'plan_due')} "
            "ELSE NULL END",
        ),
        (
            "plan_pending_due",
            timestamp,
            "CASE WHEN (plan_agreed_at IS NOT NULL) THEN NULL "
            "WHEN (plan_agreed_at IS NOT NULL) THEN plan_agreed_due "
            f"WHEN (plan_required IS {true}) THEN plan_due "
            "ELSE NULL END",
        ),
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    added = columns(dialect)
    if dialect == "sqlite":
        for name, type_, expression in added:
            op.execute(
                f"ALTER TABLE ticket ADD COLUMN {name} {type_} "
                f"GENERATED ALWAYS AS ({expression}) VIRTUAL"
            )
    else:  # one statement, so PostgreSQL rewrites the table once
        clauses = ", ".join(
            f"ADD COLUMN {name} {type_} GENERATED ALWAYS AS ({expression}) STORED"
            for name, type_, expression in added
        )
        op.execute(f"ALTER TABLE ticket {clauses}")
    op.execute(f"CREATE INDEX ix_ticket_figures ON ticket ({INDEXED})")
    op.execute("DROP INDEX ix_ticket_resolved_squad")
    op.execute(
        "CREATE INDEX ix_ticket_squad_resolved ON ticket (squad_id, resolved_at, created_at)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_ticket_squad_resolved")
    op.execute(
        "CREATE INDEX ix_ticket_resolved_squad ON ticket (resolved_at, squad_id, created_at)"
    )
    op.execute("DROP INDEX ix_ticket_figures")
    for name, _type, _expression in reversed(columns(op.get_bind().dialect.name)):
        op.execute(f"ALTER TABLE ticket DROP COLUMN {name}")
