"""What the dispatcher may send now, and when it may not.

`ready_heads` is the one selection: the first pending row of every chat (its head), kept
only if it is due (`next_attempt_at <= now`), the higher lane first, then the oldest. A
chat's later rows are never looked at before its head has gone, so order within a chat
holds, and one chat's backlog takes one place in the batch, not the whole batch:

    SELECT o.* FROM outboxmessage AS o
    JOIN (SELECT min(id) AS head_id FROM outboxmessage
          WHERE state = 'pending' AND channel = 'telegram'
          GROUP BY chat_id) AS heads ON o.id = heads.head_id
    WHERE o.next_attempt_at <= :now
    ORDER BY o.priority DESC, o.id
    LIMIT :batch

The inner query reads only the index `ix_outbox_head` (state, channel, chat_id, id), on
SQLite and PostgreSQL alike; the outer one fetches at most one row per chat.

With several processes, a head another process has leased (models/leases.py) is left out,
and with it its whole chat: nobody sends a chat's next row while its first is being sent.
The dispatcher then leases the heads it sends (`outbox_leases`); a lease outlives the send,
and is cleared when the row is recorded sent, failed or held for a retry.

`ready_of` saves the read when a handling has just queued rows and hands them over (one
process only): one small read of the pending ids says whether they are all that is pending,
and if so the heads are worked out from them as `ready_heads` would find them.

`Holds` is how a chat (or a webhook row) is held back: after a 429's retry_after, a retry's
backoff, a robot's rate limit, or while the pacer has no room for it. A hold is written to
the head's `next_attempt_at` in the injected clock, so it outlives a restart and the
selection skips the chat without reading it; the process also keeps it in real (monotonic)
time and, when that has passed, writes the row due again, so a running dispatcher does not
depend on the injected clock moving. A hold only ever lengthens what is written, and is
released only where it still stands as this process wrote it, so one process's short pacing
wait never cuts short another's 429 hold on the same chat.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, literal, union_all, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlmodel import Session, col, select

from models.clock import Clock
from models.leases import Leases, free_for
from models.outbox import Due
from models.plumbing import OutboxMessage

# A pacing wait shorter than this is not written down: the head stays in the selection and
# is sent on a later pass, which costs less than two writes.
PERSIST_AT_LEAST = 0.5


def outbox_leases(
    engine: Engine, clock: Clock, owner: str, seconds: float, *, solo: bool = False
) -> Leases:
    """This process's leases on outbox rows: held while a row is being sent (`solo`: in
    memory only, the one process on its database)."""
    return Leases(
        engine,
        OutboxMessage,
        lambda t: t.c.state == "pending",
        clock,
        owner=owner,
        seconds=seconds,
        solo=solo,
    )


def _free(owner: str | None) -> ColumnElement[bool]:
    return free_for(OutboxMessage.__table__, _NOW, owner)  # type: ignore[attr-defined,arg-type]


_NOW = bindparam("now", type_=OutboxMessage.__table__.c.next_attempt_at.type)  # type: ignore[attr-defined]
_LIMIT: BindParameter[int] = bindparam("limit")


def _pending_heads() -> Any:
    """The first pending row of every chat, with how many rows the chat has pending."""
    return (
        select(func.min(OutboxMessage.id).label("head_id"), func.count().label("queued"))
        .where(OutboxMessage.state == "pending", OutboxMessage.channel == "telegram")
        .group_by(col(OutboxMessage.chat_id))
        .subquery("heads")
    )


def _due_heads(owner: str | None, *columns: Any) -> Any:
    heads = _pending_heads()
    return (
        select(OutboxMessage, *(heads.c[name] for name in columns))
        .join(heads, col(OutboxMessage.id) == heads.c.head_id)
        .where(col(OutboxMessage.next_attempt_at) <= _NOW, _free(owner))
        .order_by(col(OutboxMessage.priority).desc(), col(OutboxMessage.id))
        .limit(_LIMIT)
    )


@cache
def _heads_statement(owner: str | None) -> Any:
    """Built once per process name; each pass binds only the time and the batch size."""
    return _due_heads(owner)


@cache
def _hooks_statement(owner: str | None) -> Any:
    return (
        select(OutboxMessage)
        .where(
            OutboxMessage.state == "pending",
            OutboxMessage.channel == "webhook",
            col(OutboxMessage.next_attempt_at) <= _NOW,
            _free(owner),
        )
        .order_by(col(OutboxMessage.priority).desc(), col(OutboxMessage.id))
        .limit(_LIMIT)
    )


@cache
def _ready_statement(owner: str | None) -> Any:
    """Both selections in one statement (one round a pass, not two), each with its own
    order and limit, and with each head how many rows its chat has pending (a webhook row
    stands alone: 1). Plain rows, the table's columns in order and then that count."""
    heads = _due_heads(owner, "queued").subquery("ready_heads")
    hooks = _hooks_statement(owner).add_columns(literal(1).label("queued"))
    return union_all(select(heads), select(hooks.subquery("ready_hooks")))


def lane_order(row: Due) -> tuple[int, int]:
    """The order heads go in: the higher lane first, then the oldest."""
    return -row.priority, row.id


class Ready(NamedTuple):
    heads: list[Due]
    hooks: list[Due]
    more: bool  # something pending beyond what these are: a chat's next row, a full batch


def ready(on: Session | Connection, now: datetime, limit: int, owner: str | None = None) -> Ready:
    """`ready_heads` and `ready_hooks` at once, as `Due` rows, and whether more is pending
    behind them (read on a session's connection, or on a plain one)."""
    connection = on.connection() if isinstance(on, Session) else on
    params = {"now": now, "limit": limit}
    found = [
        (Due(*row[:-1]), row[-1]) for row in connection.execute(_ready_statement(owner), params)
    ]
    heads = sorted((row for row, _ in found if row.channel == "telegram"), key=lane_order)
    hooks = sorted((row for row, _ in found if row.channel == "webhook"), key=lane_order)
    more = (
        any(queued > 1 for row, queued in found if row.channel == "telegram")
        or len(heads) >= limit
        or len(hooks) >= limit
    )
    return Ready(heads, hooks, more)


def ready_heads(
    session: Session, now: datetime, limit: int, owner: str | None = None
) -> list[OutboxMessage]:
    """The due first pending row of each chat, higher lanes first, then oldest first; a
    head leased by another process than `owner` leaves its chat out."""
    found = session.exec(_heads_statement(owner), params={"now": now, "limit": limit})
    return list(found.all())


def ready_hooks(
    session: Session, now: datetime, limit: int, owner: str | None = None
) -> list[OutboxMessage]:
    """Due webhook rows (each stands alone) no other process has leased, higher lanes
    first, then oldest first."""
    found = session.exec(_hooks_statement(owner), params={"now": now, "limit": limit})
    return list(found.all())


_outbox = OutboxMessage.__table__  # type: ignore[attr-defined]
# the ids of the pending rows, at most `limit` (the index `ix_outbox_due` holds them)
_PENDING_IDS = select(_outbox.c.id).where(_outbox.c.state == "pending").limit(bindparam("limit"))


def ready_of(
    connection: Connection,
    rows: Sequence[Due],
    now: datetime,
    limit: int,
    sent: Collection[int] = (),
) -> Ready | None:
    """What `ready` would find, worked out from these rows (as a handling wrote them) when
    they are all that is pending, but for rows `sent` and not yet written down, which one
    small read of the pending ids says; None otherwise (a row queued any other way, a held
    one, a row rolled back since: the caller reads the queue). Telegram rows only, all of
    them due, fewer than `limit`."""
    if not rows or len(rows) >= limit:
        return None
    if any(row.channel != "telegram" or row.next_attempt_at > now for row in rows):
        return None
    ids = {row.id for row in rows}
    known = ids.union(sent)
    pending = set(connection.execute(_PENDING_IDS, {"limit": len(known) + 1}).scalars())
    if not ids <= pending or not pending <= known:
        return None
    heads: dict[int | None, Due] = {}
    for row in sorted(rows, key=lambda r: r.id):
        heads.setdefault(row.chat_id, row)  # each chat's first
    return Ready(sorted(heads.values(), key=lane_order), [], more=len(heads) < len(rows))


class Holds:
    """Rows held back until a time: written to `next_attempt_at` (injected clock) and kept
    here in monotonic time until released."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._until: dict[int, float] = {}  # row id -> monotonic time it is due again
        self._written: dict[int, datetime] = {}  # row id -> the next_attempt_at written

    def __len__(self) -> int:
        return len(self._until)

    def until(self, row_id: int, seconds: float) -> datetime | None:
        """Hold a row for `seconds` (never shortening a longer hold); returns the time to
        write to its next_attempt_at, None if an existing hold already covers it."""
        now = time.monotonic()
        current = self._until.get(row_id, 0.0)
        if current >= now + seconds:
            return None
        self._until[row_id] = now + seconds
        self._written[row_id] = when = self.clock.now() + timedelta(seconds=seconds)
        return when

    def hold(self, rows: dict[int, float]) -> None:
        """Hold each row id for its seconds, in one commit."""
        writes = {}
        for row_id, seconds in rows.items():
            when = self.until(row_id, seconds)
            if when is not None:
                writes[row_id] = when
        if not writes:
            return
        with Session(self.engine) as session:
            for row_id, when in writes.items():
                session.execute(
                    update(OutboxMessage)
                    .where(
                        col(OutboxMessage.id) == row_id,
                        col(OutboxMessage.state) == "pending",
                        col(OutboxMessage.next_attempt_at) < when,
                    )
                    .values(next_attempt_at=when)
                )
            session.commit()

    def release_due(self) -> None:
        """Rows whose hold has passed in real time are due again now."""
        now = time.monotonic()
        due = [row_id for row_id, until in self._until.items() if until <= now]
        if not due:
            return
        at = self.clock.now()
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        written = [
            {"row": row_id, "written": self._written[row_id]}
            for row_id in due
            if row_id in self._written
        ]
        if written:
            with Session(self.engine) as session:
                session.execute(
                    update(table)
                    .where(
                        table.c.id == bindparam("row"),
                        table.c.state == "pending",
                        table.c.next_attempt_at > at,
                        table.c.next_attempt_at <= bindparam("written"),
                    )
                    .values(next_attempt_at=at),
                    written,
                )
                session.commit()
        for row_id in due:
            self.forget(row_id)

    def forget(self, row_id: int | None) -> None:
        if row_id is not None:
            self._until.pop(row_id, None)
            self._written.pop(row_id, None)

    def soonest(self) -> float | None:
        """Seconds until the next hold ends, None without holds."""
        if not self._until:
            return None
        return max(0.0, min(self._until.values()) - time.monotonic())
