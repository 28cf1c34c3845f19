"""What the dispatcher writes down: a pass's sent rows in one commit (with the links that
let replies find their ticket), retries, and failures, each failure reported to the squad
lead so a message that never arrived is never silent. Each of them ends the row's lease
(models/leases.py): a retry's hold is its next_attempt_at, not a lease."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from models.clock import Clock
from models.db import impatient
from models.org import Person, Role
from models.outbox import Due
from models.people import squad_people
from models.plumbing import OutboxMessage
from models.ticket import MessageLink, Ticket

# how long writing down sent messages waits for a write lock another process holds
RECORD_WAIT_MS = 100

_outbox = OutboxMessage.__table__  # type: ignore[attr-defined]
_SENT = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("row"))
    .values(
        state="sent",
        sent_at=bindparam("now"),
        message_id=bindparam("mid"),
        attempts=_outbox.c.attempts + 1,
        lease_owner=None,
        lease_until=None,
    )
)
_LINK = insert(MessageLink.__table__)  # type: ignore[attr-defined]


class OutboxLedger:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def message_id_of(self, outbox_id: int | None) -> tuple[str, int | None]:
        if outbox_id is None:
            return "none", None
        with Session(self.engine) as session:
            row = session.get(OutboxMessage, outbox_id)
        if row is None:
            return "missing", None
        return row.state, row.message_id

    def record_sent(self, delivered: list[tuple[Due, int | None]]) -> None:
        """Sent, in one commit of its own (`write_sent`), then `after_sent`."""
        if not delivered:
            return
        with self.engine.connect() as connection:  # plain statements: no ORM session
            # written on the event loop, at once, so a reply to a message just sent finds
            # it; a write lock held elsewhere makes it fail fast (the dispatcher keeps the
            # rows and writes them first on its next pass) instead of stopping the loop
            with impatient(connection, RECORD_WAIT_MS):
                write_sent(connection, delivered, self.clock.now())
            connection.commit()
        after_sent(delivered)

    def retry_later(
        self, row: Due, error: str, when: datetime | None, *, attempt: bool = True
    ) -> None:
        """Not now: the error, and `when` (if given) as the row's next_attempt_at. A hold
        (429, a robot's rate limit) is no attempt of the row's and does not count as one."""
        with Session(self.engine) as session:
            stored = session.get(OutboxMessage, row.id)
            if stored is None or stored.state != "pending":
                return
            if attempt:
                stored.attempts += 1
            stored.last_error = error[:500]
            if when is not None:
                stored.next_attempt_at = when
            stored.lease_owner = stored.lease_until = None
            session.add(stored)
            session.commit()

    def mark_failed(self, row: Due, error: str, *, report: bool, language: str = "zh-CN") -> None:
        now = self.clock.now()
        with Session(self.engine) as session:
            stored = session.get(OutboxMessage, row.id)
            if stored is None:
                return
            stored.state = "failed"
            stored.last_error = error[:500]
            stored.attempts += 1
            stored.lease_owner = stored.lease_until = None
            session.add(stored)
            if report and row.ticket_id and row.template != "delivery.failed":
                self._report(session, row, error, now, language)
            session.commit()

    def _report(self, session: Session, row: Due, error: str, now: datetime, language: str) -> None:
        """Told to the squad's leads in their own language (the zone's when they set none)."""
        ticket = session.get(Ticket, row.ticket_id)
        if ticket is None:
            return
        recipient: str | dict[str, str] = str(row.chat_id)
        if row.channel == "webhook" or row.chat_id is None:
            # no chat: comparing with None would match any person who never bound Telegram
            kind = json.loads(row.webhook or "{}").get("kind", "json")
            recipient = {"key": f"delivery.webhook.{kind}"}
        else:
            who = session.exec(select(Person).where(Person.telegram_user_id == row.chat_id)).first()
            recipient = who.name if who is not None else recipient
        for lead in squad_people(session, ticket.squad_id, (Role.LEAD,)):
            if lead.telegram_user_id is None or lead.telegram_user_id == row.chat_id:
                continue
            session.add(
                OutboxMessage(
                    created_at=now,
                    chat_id=lead.telegram_user_id,
                    template="delivery.failed",
                    params=json.dumps(
                        {
                            "number": ticket.number,
                            "recipient": recipient,
                            "error": error[:200],
                        },
                        ensure_ascii=False,
                    ),
                    locale=lead.language or language,
                    ticket_id=ticket.id,
                    next_attempt_at=now,
                )
            )


def write_sent(
    connection: Connection, delivered: Sequence[tuple[Due, int | None]], now: datetime
) -> None:
    """Sent, in the connection's transaction: one UPDATE and one INSERT of links for the
    whole batch, as plain statements (no row is loaded for it). Whoever commits it calls
    `after_sent` once committed."""
    sent = [{"row": row.id, "mid": message_id, "now": now} for row, message_id in delivered]
    if not sent:
        return
    links = [
        {
            "chat_id": row.chat_id,
            "message_id": message_id,
            "ticket_id": row.ticket_id,
            "role": row.link_role or "thread",
        }
        for row, message_id in delivered
        if row.ticket_id and row.link_role and row.edit_of is None and message_id
        if row.chat_id is not None
    ]
    # one row (most passes) as one execution: a list of one is an executemany
    connection.execute(_SENT, sent[0] if len(sent) == 1 else sent)
    if links:
        connection.execute(_LINK, links)


def after_sent(delivered: Sequence[tuple[Due, int | None]]) -> None:
    """Once the rows are written down as sent: a row that owned its file (an upload), whose
    file has been sent, lets the file go."""
    for row, _message_id in delivered:
        if row.local_path:
            Path(row.local_path).unlink(missing_ok=True)
