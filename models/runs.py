"""The calendar jobs' ledger: a job claims its period (a day's digest, a month's ranking) by
inserting one row, in the transaction that queues what it sends. Only the inserter goes on,
so a restart, a catch-up or a second process never sends a period's job twice; a job that
fails rolls back with its row, and the next attempt finds the period still unclaimed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models.plumbing import ScheduledRun


def has_run(session: Session, key: str) -> bool:
    return session.get(ScheduledRun, key) is not None


def claim_run(session: Session, key: str, now: datetime) -> bool:
    """True if this caller inserted the period's row; False if someone already had. On
    PostgreSQL a second process waits on the first one's insert until it commits, then
    finds the row taken; SQLite takes one writer at a time."""
    table = ScheduledRun.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    stmt = insert.values(key=key, ran_at=now).on_conflict_do_nothing().returning(table.c.key)
    return session.execute(stmt).first() is not None
