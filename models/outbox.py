"""Writing outgoing messages. Rows are added in the caller's transaction, so a message exists
exactly when the change that caused it was committed. Text is rendered at send time from a
catalog key, in the recipient's language, so the domain holds no wording.

Every row goes in a lane (`priority`): among the chats with a message ready to send, the
dispatcher serves the higher lane first, the oldest first within a lane. The lane follows
from the template by `LANES` unless the caller names one (`priority=`):

| template prefix | lane | what |
|---|---|---|
| `digest.`  | BULK (0) | the morning digest |
| `ranking.` | BULK (0) | the monthly ranking |
| `report.`  | BULK (0) | report files and other periodic reports |
| `bulk.`    | BULK (0) | notices sent to many chats at once |
| anything else | NOW (1) | answers to a person's own action, cards, threads, alerts |

So a monthly report to fifty groups never delays the answer someone is waiting for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from enum import IntEnum
from typing import Any, NamedTuple

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models.plumbing import OutboxMessage

Button = tuple[str, str]  # (catalog key or "=literal label", callback token)


class Lane(IntEnum):
    """An outbox row's priority: higher lanes are sent first."""

    BULK = 0  # digests, the monthly ranking, reports, bulk notices: nobody waits on them
    NOW = 1  # answers to a person's own action, ticket cards and threads, alerts


# The one table from template to lane (first matching prefix); anything else is Lane.NOW.
LANES: tuple[tuple[str, Lane], ...] = (
    ("digest.", Lane.BULK),
    ("ranking.", Lane.BULK),
    ("report.", Lane.BULK),
    ("bulk.", Lane.BULK),
)


def lane_of(template: str) -> Lane:
    for prefix, lane in LANES:
        if template.startswith(prefix):
            return lane
    return Lane.NOW


def outbox_row(
    now: datetime,
    *,
    template: str,
    locale: str,
    chat_id: int | None = None,
    params: dict[str, Any] | None = None,
    buttons: Sequence[Sequence[Button]] | None = None,
    kind: str = "text",
    file_id: str | None = None,
    local_path: str | None = None,
    ticket_id: int | None = None,
    link_role: str | None = None,
    reply_to_outbox: int | None = None,
    edit_of: int | None = None,
    dedupe_key: str | None = None,
    channel: str = "telegram",
    webhook: dict[str, Any] | None = None,
    priority: int | None = None,
) -> dict[str, Any]:
    """The column values of one outbox row; its lane from the template (`LANES`) unless
    `priority` names one."""
    return {
        "created_at": now,
        "channel": channel,
        "chat_id": chat_id,
        "kind": kind,
        "template": template,
        "params": json.dumps(params or {}, ensure_ascii=False, default=str),
        "locale": locale,
        "buttons": json.dumps([list(map(list, r)) for r in buttons], ensure_ascii=False)
        if buttons
        else None,
        "file_id": file_id,
        "local_path": local_path,
        "ticket_id": ticket_id,
        "link_role": link_role,
        "reply_to_outbox": reply_to_outbox,
        "edit_of": edit_of,
        "webhook": json.dumps(webhook, ensure_ascii=False) if webhook is not None else None,
        "dedupe_key": dedupe_key,
        "state": "pending",
        "priority": int(lane_of(template) if priority is None else priority),
        "attempts": 0,
        "next_attempt_at": now,
    }


def enqueue(session: Session, now: datetime, **values: Any) -> OutboxMessage:
    """One row as an object, for callers that go on to change it before it is written (a
    hold set by hand, say). `priority=Lane.X` overrides the lane the template would get."""
    row = OutboxMessage(**outbox_row(now, **values))
    session.add(row)
    return row


class Due(NamedTuple):
    """An outbox row as the dispatcher reads it to send: every column, as read (no ORM
    object: a pass builds one of these a row, not an instance the session tracks)."""

    id: int
    created_at: datetime
    channel: str
    chat_id: int | None
    kind: str
    template: str
    params: str
    locale: str
    buttons: str | None
    file_id: str | None
    local_path: str | None
    reply_to_outbox: int | None
    edit_of: int | None
    ticket_id: int | None
    link_role: str | None
    webhook: str | None
    dedupe_key: str | None
    state: str
    priority: int
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    message_id: int | None
    last_error: str | None
    lease_owner: str | None
    lease_until: datetime | None


_COLUMNS = tuple(c.name for c in OutboxMessage.__table__.columns)  # type: ignore[attr-defined]
assert Due._fields == _COLUMNS, "Due must name the outbox table's columns, in order"


# session.info: the rows `queue` wrote in this session, as `Due` rows (the dispatcher may be
# handed them after the commit, instead of reading them back: bot/outbox/dispatcher.py)
QUEUED = "queued_rows"
_QUEUE = insert(OutboxMessage.__table__).returning(  # type: ignore[attr-defined]
    *OutboxMessage.__table__.columns  # type: ignore[attr-defined]
)
# PostgreSQL: the dispatcher always reads the queue (several processes may share it), so
# the row is not kept and only its id comes back
_QUEUE_ID = insert(OutboxMessage.__table__).returning(  # type: ignore[attr-defined]
    OutboxMessage.__table__.c.id  # type: ignore[attr-defined]
)


def queue(session: Session, now: datetime, **values: Any) -> int:
    """One row written at once, no object built, its id returned: the handlers' way, about
    a fifth of the cost of an object flushed later. Rows queued this way get their ids in
    the order they are queued, so one unit of work does not mix them with `enqueue`'s
    objects for a chat (those get theirs at the flush). The row as written is kept in
    `session.info[QUEUED]` on SQLite (see `_QUEUE_ID` for PostgreSQL)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return int(connection.execute(_QUEUE_ID, outbox_row(now, **values)).scalar_one())
    row = Due._make(connection.execute(_QUEUE, outbox_row(now, **values)).one())
    session.info.setdefault(QUEUED, []).append(row)
    return row.id


def insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Many rows in one statement, no objects built: the alert path writes thousands after a
    long outage. A row whose dedupe_key exists already is skipped."""
    if not rows:
        return
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    insert: Any = (
        postgresql.insert(table)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(table)
    )
    session.execute(insert.on_conflict_do_nothing(), rows)


def time_param(value: datetime | None) -> dict[str, str] | None:
    """A datetime the renderer shows in the zone's local time."""
    return None if value is None else {"time": value.isoformat()}


def category_param(code: str) -> dict[str, str]:
    return {"category": code}


def text_key(key: str) -> dict[str, str]:
    return {"key": key}


def nested(key: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A catalog text with parameters of its own, rendered inside another in the same
    reader's language (a line of a list, a mark on a card)."""
    return {"text": {"key": key, "params": params or {}}}


def lines(values: Sequence[Any]) -> dict[str, list[Any]]:
    """Values rendered one per line."""
    return {"lines": list(values)}


def inline(values: Sequence[Any]) -> dict[str, list[Any]]:
    """Values rendered on one line, with a separator."""
    return {"inline": list(values)}
