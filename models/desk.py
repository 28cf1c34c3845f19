"""The service desk's shared machinery: the unit of work a domain action runs in, history,
ticket numbers, button tokens, and telling people things through the outbox."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from models import lifecycle
from models.deadlines import refresh_next_alert
from models.errors import DeskError as DeskError  # re-exported: callers import it from here
from models.lifecycle import Action, State
from models.org import Person, Project, Role, Squad
from models.outbox import Button, enqueue
from models.people import managers, squad_people
from models.plumbing import OutboxMessage
from models.sla.calendar import BusinessCalendar
from models.sla.policy import SlaTargets
from models.ticket import ButtonAction, MessageLink, Ticket, TicketCounter, TicketEvent
from models.zone.config import ZoneConfig


@dataclass
class Desk:
    """Everything one domain action needs: the open transaction, the time, the zone."""

    session: Session
    now: datetime
    zone: ZoneConfig
    _people: dict[tuple[object, ...], list[Person]] = field(default_factory=dict, repr=False)

    # --- people -------------------------------------------------------------------------
    def locale_of(self, person: Person | None) -> str:
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

    def person(self, person_id: int | None) -> Person | None:
        return None if person_id is None else self.session.get(Person, person_id)

    # --- history ------------------------------------------------------------------------
    def record(
        self,
        ticket: Ticket,
        action: str,
        actor: Person | None,
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

    def rearm(self, ticket: Ticket) -> None:
        refresh_next_alert(
            self.session,
            ticket,
            self.targets(ticket),
            self.calendar(ticket),
            self.zone.auto_close_after,
        )
        self.session.add(ticket)

    # --- numbers and tokens -------------------------------------------------------------
    def next_number(self, project: Project | None) -> str:
        prefix = project.number_prefix if project else self.zone.code
        period = self.now.astimezone(self.zone.tz).strftime("%y%m")
        counter = self.session.exec(
            select(TicketCounter)
            .where(TicketCounter.prefix == prefix, TicketCounter.period == period)
            .with_for_update()
        ).first()
        if counter is None:
            counter = TicketCounter(prefix=prefix, period=period, last=0)
        counter.last += 1
        self.session.add(counter)
        self.session.flush()
        return f"{prefix}-{period}-{counter.last:04d}"

    def button(
        self, action: str, ticket: Ticket | None, *, person: Person | None = None, arg: str = ""
    ) -> str:
        token = secrets.token_urlsafe(12)
        self.session.add(
            ButtonAction(
                token=token,
                action=action,
                ticket_id=ticket.id if ticket else None,
                person_id=person.id if person else None,
                arg=arg or None,
                created_at=self.now,
            )
        )
        return token

    # --- telling people -----------------------------------------------------------------
    def tell(
        self,
        person: Person | None,
        template: str,
        params: dict[str, Any] | None = None,
        *,
        ticket: Ticket | None = None,
        buttons: Sequence[Sequence[Button]] | None = None,
        kind: str = "text",
        file_id: str | None = None,
        link_role: str | None = "thread",
        dedupe_key: str | None = None,
    ) -> OutboxMessage | None:
        """A person's private chat, in their language; nothing if they never bound Telegram."""
        if person is None or person.telegram_user_id is None:
            return None
        return self.tell_chat(
            person.telegram_user_id,
            template,
            params,
            ticket=ticket,
            buttons=buttons,
            kind=kind,
            file_id=file_id,
            link_role=link_role,
            dedupe_key=dedupe_key,
            locale=self.locale_of(person),
        )

    def tell_chat(
        self,
        chat_id: int,
        template: str,
        params: dict[str, Any] | None = None,
        *,
        ticket: Ticket | None = None,
        buttons: Sequence[Sequence[Button]] | None = None,
        kind: str = "text",
        file_id: str | None = None,
        reply_to_outbox: int | None = None,
        edit_of: int | None = None,
        link_role: str | None = "thread",
        dedupe_key: str | None = None,
        locale: str | None = None,
    ) -> OutboxMessage:
        """Any chat (a group in the zone's language unless told otherwise)."""
        return enqueue(
            self.session,
            self.now,
            chat_id=chat_id,
            template=template,
            locale=locale or self.zone.language,
            params=params,
            buttons=buttons,
            kind=kind,
            file_id=file_id,
            ticket_id=ticket.id if ticket else None,
            link_role=link_role if ticket else None,
            reply_to_outbox=reply_to_outbox,
            edit_of=edit_of,
            dedupe_key=dedupe_key,
        )

    def squad_of(self, ticket: Ticket) -> Squad:
        squad = self.session.get(Squad, ticket.squad_id)
        assert squad is not None
        return squad

    def card_rows(self, ticket: Ticket) -> list[OutboxMessage]:
        return list(
            self.session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.ticket_id == ticket.id, OutboxMessage.link_role == "card")
                .order_by(col(OutboxMessage.id))
            ).all()
        )

    def tell_squad(
        self,
        ticket: Ticket,
        template: str,
        params: dict[str, Any] | None = None,
        *,
        kind: str = "text",
        file_id: str | None = None,
        exclude: Person | None = None,
    ) -> None:
        """The squad hears about its ticket in its group, threaded under the ticket card;
        without a group, the owner hears it privately (everyone in the squad if unclaimed)."""
        squad = self.squad_of(ticket)
        if squad.group_chat_id is not None:
            card = next(
                (c for c in self.card_rows(ticket) if c.chat_id == squad.group_chat_id), None
            )
            self.tell_chat(
                squad.group_chat_id,
                template,
                params,
                ticket=ticket,
                kind=kind,
                file_id=file_id,
                reply_to_outbox=card.id if card else None,
            )
            return
        owner = self.person(ticket.owner_id)
        people = (
            [owner]
            if owner
            else squad_people(self.session, squad.id or 0, (Role.MEMBER, Role.LEAD))
        )
        for person in people:
            if exclude is not None and person is not None and person.id == exclude.id:
                continue
            self.tell(person, template, params, ticket=ticket, kind=kind, file_id=file_id)


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
