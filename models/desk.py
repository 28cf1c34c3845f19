"""The service desk's shared machinery: the unit of work a domain action runs in (session,
time, zone), history, state moves, deadlines and ticket numbers. Telling people (outbox rows,
cards, buttons) is `models/notify.py`, reached as `desk.notify`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, col, select

from models import lifecycle
from models.clock import Clock
from models.db import transaction
from models.deadlines import refresh_next_alert
from models.errors import DeskError as DeskError  # re-exported: callers import it from here
from models.lifecycle import Action, State
from models.log_context import about_ticket
from models.notify import Notify
from models.org import Person, Project
from models.people import Someone, managers, person_row, squad_people
from models.sla.calendar import BusinessCalendar
from models.sla.policy import SlaTargets
from models.ticket import MessageLink, Ticket, TicketCounter, TicketEvent
from models.zone.config import ZoneConfig

_COUNTERS = TicketCounter.__table__  # type: ignore[attr-defined]


def _counting(insert: Any) -> Any:
    """The next number of a (prefix, period) counter in one statement, its row created at
    the first: the row stays locked to the end of the transaction (PostgreSQL), so two
    filers never draw the same number."""
    return (
        insert(_COUNTERS)
        .values(prefix=bindparam("prefix"), period=bindparam("period"), last=literal(1))
        .on_conflict_do_update(
            index_elements=[_COUNTERS.c.prefix, _COUNTERS.c.period],
            set_={"last": _COUNTERS.c.last + 1},
        )
        .returning(_COUNTERS.c.last)
    )


_NEXT_NUMBER = {"sqlite": _counting(sqlite.insert), "postgresql": _counting(postgresql.insert)}


@dataclass
class Desk:
    """Everything one domain action needs: the open transaction, the time, the zone."""

    session: Session
    now: datetime
    zone: ZoneConfig
    _people: dict[tuple[object, ...], list[Person]] = field(default_factory=dict, repr=False)
    _read: dict[int, Someone | None] = field(default_factory=dict, repr=False)

    # --- people -------------------------------------------------------------------------
    def locale_of(self, person: Someone | None) -> str:
        if person is not None and person.language:
            return person.language
        return self.zone.language

    def people(self, squad_id: int | None, roles: tuple[str, ...]) -> list[Person]:
        """A squad's people in these roles (squad None: the zone's managers), read once per
        transaction: a catch-up after downtime alerts the same leads thousands of times."""
        key = (squad_id, *roles)
        if key not in self._people:
            if squad_id is None:
                self._people[key] = managers(self.session, top_only="top" in roles)
            else:
                self._people[key] = squad_people(self.session, squad_id, roles)
        return self._people[key]

    def person(self, person_id: int | None) -> Someone | None:
        """Someone named by a ticket (its contact, owner, leader), to tell or to name: read
        as a row, once per unit of work (the session's object when it holds one)."""
        if person_id is None:
            return None
        known = self.session.identity_map.get(identity_key(Person, person_id))
        if isinstance(known, Person):
            return known  # it may have been changed in this unit of work
        if person_id not in self._read:
            self._read[person_id] = person_row(self.session, person_id)
        return self._read[person_id]

    # --- history ------------------------------------------------------------------------
    def record(
        self,
        ticket: Ticket,
        action: str,
        actor: Someone | None,
        *,
        from_state: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> TicketEvent:
        event = TicketEvent(
            ticket_id=ticket.id or 0,
            at=self.now,
            actor_id=actor.id if actor else None,
            action=action,
            from_state=from_state,
            to_state=ticket.state,
            detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else None,
        )
        self.session.add(event)
        ticket.updated_at = self.now
        about_ticket(ticket.number)  # what the log lines from here on are about
        return event

    def move(self, ticket: Ticket, action: Action) -> bool:
        """The table's move (`lifecycle.move`), written as a compare-and-set on the state the
        ticket was read in: of several concurrent actors exactly one wins, the others get
        False and the ticket as it is now. An illegal move raises IllegalMove, and nothing
        is written."""
        source = State(ticket.state)
        self.session.flush()  # what the action changed before this is written as it was
        with self.session.no_autoflush:  # the new state is written only by the guarded update
            target = lifecycle.move(ticket, action)
            result = self.session.execute(
                update(Ticket)
                .where(col(Ticket.id) == ticket.id, col(Ticket.state) == source)
                .values(state=target, updated_at=self.now)
            )
        self.session.refresh(ticket)
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def targets(self, ticket: Ticket) -> SlaTargets:
        return self.zone.targets(ticket.category_code, ticket.urgency)

    def calendar(self, ticket: Ticket) -> BusinessCalendar:
        """How this ticket's time is counted: its policy's clock, or the zone's."""
        return self.zone.calendar_for(self.targets(ticket))

    def rearm(self, ticket: Ticket, *, filed_now: bool = False) -> None:
        refresh_next_alert(
            self.session,
            ticket,
            self.targets(ticket),
            self.calendar(ticket),
            self.zone.auto_close_after,
            filed_now=filed_now,
        )
        self.session.add(ticket)

    # --- numbers and tokens -------------------------------------------------------------
    def next_number(self, project: Project | None) -> str:
        prefix = project.number_prefix if project else self.zone.code
        period = self.now.astimezone(self.zone.tz).strftime("%y%m")
        counting = _NEXT_NUMBER[self.session.get_bind().dialect.name]
        last = (
            self.session.connection()
            .execute(counting, {"prefix": prefix, "period": period})
            .scalar_one()
        )
        return f"{prefix}-{period}-{last:04d}"

    @property
    def notify(self) -> Notify:
        """Telling people: the one part of the desk that knows delivery is chat-shaped. Made
        on each use, not kept: a desk that kept it would be in a cycle with it, and the
        session with them both would wait for the cyclic collector to be freed."""
        return Notify(self)


@contextmanager
def open_desk(
    engine: Engine, clock: Clock, zone: Callable[[Session], ZoneConfig]
) -> Iterator[Desk]:
    """The unit of work every domain action runs in: one transaction (models.db.transaction)
    that commits when the block ends normally and rolls back on any error, so an action's
    ticket change, history row, deadlines and outbox rows are kept together or not at all."""
    with transaction(engine) as session:
        yield Desk(session, clock.now(), zone(session))


def ticket_by_reference(session: Session, reference: str) -> Ticket | None:
    """Tickets are named by their human number (YZ-2611-0042), case-insensitively, or by
    their internal id; what the caller may see is checked by the caller, never here."""
    ref = reference.strip().upper()
    if not ref:
        return None
    found = session.exec(select(Ticket).where(Ticket.number == ref)).first()
    if found is not None:
        return found
    # ASCII only ("²".isdigit() is true, int() refuses it) and short enough for a 64-bit key
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        return session.get(Ticket, int(ref))
    return None


def ticket_for_message(session: Session, chat_id: int, message_id: int) -> Ticket | None:
    link = session.exec(
        select(MessageLink).where(
            MessageLink.chat_id == chat_id, MessageLink.message_id == message_id
        )
    ).first()
    return None if link is None else session.get(Ticket, link.ticket_id)
