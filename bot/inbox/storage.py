"""The inbox table's side: each update kept as Telegram sent it (known by its id and a digest
of its body, since Telegram may reuse ids after a week without updates), text made storable,
and the dead letters that could not be handled."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, func, or_
from sqlalchemy import select as sql_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row
from sqlmodel import Session, col, select

from models.clock import Clock
from models.db import impatient
from models.leases import Leases
from models.plumbing import InboxUpdate

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 3  # handling that fails the same way this often is given up on (dead letter)
NO_UPDATE_ID = -1  # stored under this when Telegram's body has no usable update_id
NO_CHAT = 0  # no Telegram chat has this id: the updates of no chat queue under it
_BIGINT = 2**63


def usable_update_id(raw: object) -> int | None:
    if not isinstance(raw, dict):
        return None
    uid = raw.get("update_id")
    if isinstance(uid, int) and not isinstance(uid, bool) and 0 <= uid < _BIGINT:
        return uid
    return None


def chat_of(raw: object) -> int | None:
    """The chat an update came from: a message's chat, the chat of the message a button was
    on (the presser's own for an inline message), the chat whose membership changed; None
    when the body names none."""
    if not isinstance(raw, dict):
        return None
    for kind in ("message", "edited_message", "callback_query", "my_chat_member"):
        part = raw.get(kind)
        if not isinstance(part, dict):
            continue
        holder = part.get("message") if kind == "callback_query" else part
        chat = holder.get("chat") if isinstance(holder, dict) else None
        if kind == "callback_query" and not isinstance(chat, dict):
            chat = part.get("from")
        uid = chat.get("id") if isinstance(chat, dict) else None
        if isinstance(uid, int) and not isinstance(uid, bool) and -_BIGINT <= uid < _BIGINT:
            return uid
        return None
    return None


def payload_of(raw: object) -> tuple[str, str]:
    """The body as it is stored, and its digest. Stored as sent where the database can
    hold it; a lone UTF-16 surrogate (which UTF-8 cannot hold) is kept as a JSON escape."""
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    text = json.dumps(raw, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(raw, ensure_ascii=True)
    return text, digest


def store_updates(
    engine: Engine, raws: Sequence[object], clock: Clock, *, hurry: bool = False
) -> int:
    """Insert raw updates, ignoring redeliveries (same id, same body); one commit for the
    batch. Returns how many were new."""
    return len(store_new(engine, raws, clock, hurry=hurry))


def stored_values(raw: object, now: datetime) -> dict[str, Any]:
    """The inbox row an update is stored as (`insert_updates` takes it)."""
    payload, digest = payload_of(raw)
    uid = usable_update_id(raw)
    return {
        "update_id": NO_UPDATE_ID if uid is None else uid,
        "digest": digest,
        "payload": payload,
        "received_at": now,
        "attempts": 0,
        "chat_id": chat_of(raw),
    }


def insert_updates(
    connection: Connection, values: dict[str, Any] | list[dict[str, Any]]
) -> Sequence[Row[Any]]:
    """INSERT of new updates (`stored_values`: one, or a batch) on this connection, in its
    transaction, a redelivery skipped: the rows that were new."""
    return connection.execute(_STORE[connection.dialect.name], values).all()


class Waiting(NamedTuple):
    """A stored update waiting to be handled, as the inbox passes it on: read from the
    store, or handed over by the fetch that stored it (then with the body it came as, so
    it is not parsed again from the text just written)."""

    id: int
    update_id: int
    chat_id: int | None
    payload: str
    lease_owner: str | None = None
    body: dict[str, Any] | None = None


def store_new(
    engine: Engine, raws: Sequence[object], clock: Clock, *, hurry: bool = False
) -> list[Waiting]:
    """`store_updates`, returning the rows that were new, oldest first. `hurry` (SQLite):
    fail at once as busy rather than wait for a write lock held elsewhere."""
    if not raws:
        return []
    now = clock.now()
    values = [stored_values(raw, now) for raw in raws]
    # what each stored row came as: its body, by (update id, digest), the row's identity
    came = {(v["update_id"], v["digest"]): raw for v, raw in zip(values, raws, strict=True)}
    with engine.connect() as connection:  # no ORM session: only this one statement
        with impatient(connection, 0) if hurry else nullcontext():
            new = insert_updates(connection, values)
        connection.commit()
    rows = []
    for row in new:
        raw = came.get((row.update_id, row.digest))
        body = raw if isinstance(raw, dict) else None
        rows.append(Waiting(row.id, row.update_id, row.chat_id, row.payload, None, body))
    return sorted(rows, key=lambda row: row.id)


_RETURNED = tuple(
    InboxUpdate.__table__.c[name]  # type: ignore[attr-defined]
    for name in ("id", "update_id", "digest", "chat_id", "payload")
)
_WAITING = tuple(
    InboxUpdate.__table__.c[name]  # type: ignore[attr-defined]
    for name in ("id", "update_id", "chat_id", "payload", "lease_owner")
)


def _storing(insert: Any) -> Any:
    """RETURNING says what was new on both stores (PostgreSQL's rowcount here is -1). One
    statement for every batch, built once, its rows sent as parameters: SQLAlchemy renders
    them as one multi-row INSERT, but compiles it once, where rows written into the
    statement made a new statement (a cache key over every value) for every batch."""
    table = InboxUpdate.__table__  # type: ignore[attr-defined]
    return insert(table).on_conflict_do_nothing().returning(*_RETURNED)


_STORE = {"sqlite": _storing(sqlite.insert), "postgresql": _storing(postgresql.insert)}


def inbox_leases(
    engine: Engine, clock: Clock, owner: str, seconds: float, *, solo: bool = False
) -> Leases:
    """This process's leases on stored updates: held while an update waits to be handled
    (`solo`: in memory only, the one process on its database)."""
    return Leases(
        engine,
        InboxUpdate,
        lambda t: and_(t.c.processed_at.is_(None), t.c.dead_at.is_(None)),
        clock,
        owner=owner,
        seconds=seconds,
        solo=solo,
    )


def next_waiting(
    session: Session, leases: Leases, *, skip: Sequence[int] = (), limit: int = 200
) -> list[Waiting]:
    """The waiting updates of the chats whose first waiting update nobody else holds, oldest
    first, at most `limit`. A chat whose first update another process holds is left out
    whole, so no process handles a chat's update before the one that came first."""
    query = _waiting_of_free_chats(leases.owner, limit)
    params = {"now": leases.clock.now(), "skip": list(skip)}
    return [Waiting(*row) for row in session.connection().execute(query, params)]


@cache
def _waiting_of_free_chats(owner: str, limit: int) -> Select[Any]:
    """next_waiting's query, built once per process: `now` and `skip` are bound at each use."""
    t = InboxUpdate.__table__  # type: ignore[attr-defined]
    waiting = (
        t.c.processed_at.is_(None),
        t.c.dead_at.is_(None),
        t.c.id.not_in(bindparam("skip", expanding=True)),
    )
    heads = select(func.min(t.c.id).label("head_id")).where(*waiting).group_by(t.c.chat_id)
    chat = func.coalesce(t.c.chat_id, NO_CHAT)  # the updates of no chat: one queue
    free = or_(
        t.c.lease_until.is_(None),
        t.c.lease_until <= bindparam("now", type_=t.c.lease_until.type),
        t.c.lease_owner == owner,
    )
    free_chats = select(chat).where(t.c.id.in_(heads.scalar_subquery()), free)
    return sql_select(*_WAITING).where(*waiting, chat.in_(free_chats)).order_by(t.c.id).limit(limit)


def take_in_order(rows: list[Waiting], leases: Leases) -> list[Waiting]:
    """Lease these rows and keep, of each chat, the updates taken before the first one that
    was not (another process got there first): a chat is never handled out of order. The
    rest is let go of at once."""
    won = leases.claim(
        (row.id for row in rows),
        foreign=(row.id for row in rows if row.lease_owner not in (None, leases.owner)),
    )
    kept: list[Waiting] = []
    cut: set[int | None] = set()
    for row in rows:
        if row.chat_id in cut:
            continue
        if row.id in won:
            kept.append(row)
        else:
            cut.add(row.chat_id)
    leases.release(won - {row.id for row in kept})
    return kept


_SURROGATE = re.compile("[\\ud800-\\udfff]")


def clean_text(value: Any) -> Any:
    """What users typed, as they meant it, in a form every database stores: NUL (refused by
    PostgreSQL text) is dropped and a lone UTF-16 surrogate (refused by UTF-8) becomes the
    replacement character. Applied to the whole update before anything reads it."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        if _SURROGATE.search(value):
            value = _SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, dict):
        return {k: clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    return value


def dead_letters(engine: Engine) -> list[InboxUpdate]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(InboxUpdate)
                .where(col(InboxUpdate.dead_at).is_not(None))
                .order_by(col(InboxUpdate.id))
            ).all()
        )


def retry_dead_letter(engine: Engine, inbox_id: int) -> bool:
    """Give a dead letter another go (after a fix): the running bot picks it up."""
    with Session(engine) as session:
        row = session.get(InboxUpdate, inbox_id)
        if row is None or row.dead_at is None:
            return False
        row.dead_at = None
        row.attempts = 0
        session.add(row)
        session.commit()
        return True


def report_dead_letters(engine: Engine) -> int:
    """Dead letters are said at start, so nobody has to know to look for them."""
    try:
        count = len(dead_letters(engine))
    except Exception as exc:
        log.warning("could not count dead letters: %s", exc)
        return 0
    if count:
        log.warning(
            "%d update(s) could not be handled and are kept as dead letters: "
            "see 'squadbot inbox dead', and 'squadbot inbox retry ID' after a fix",
            count,
        )
    return count
