"""The read side: what people look up (/my, /ticket), as plain rows for a handler to render.
Reading only: nothing here changes the database. Who may see what is decided here, with
the same rules as the domain (`may`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models.desk import ticket_by_reference
from models.lifecycle import ACTIVE_STATES, State
from models.org import Person
from models.people import Actor
from models.permissions import Act, may
from models.ticket import Ticket, TicketEvent

MY_LIMIT = 20
HISTORY_LIMIT = 30


@dataclass(frozen=True)
class TicketLine:
    """One ticket in a list: what is due next, if a clock is running."""

    number: str
    category_code: str
    state: str
    response_due: datetime | None  # None once the squad has answered
    due: datetime | None  # handling, plan or plan target; None while no clock runs


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    who: str | None  # None: the system did it
    action: str
    text: str  # what was said, resolved or planned; "" if nothing


@dataclass(frozen=True)
class TicketView:
    number: str
    category_code: str
    state: str
    description: str
    handling_due: datetime | None
    plan_target: datetime | None
    rating: int | None
    history: list[HistoryLine]


def my_tickets(session: Session, actor: Actor, limit: int = MY_LIMIT) -> list[TicketLine]:
    """The newest tickets that concern this person: their squads' unfinished ones, the ones
    their enterprise filed, or for a manager or an admin every open one."""
    query = select(Ticket)
    if actor.is_squad_member:
        query = query.where(
            col(Ticket.squad_id).in_(actor.squad_ids),
            col(Ticket.state).in_([*ACTIVE_STATES, State.RESOLVED]),
        )
    elif actor.is_enterprise:
        query = query.where(Ticket.enterprise_id == actor.id)
    elif actor.is_manager or actor.is_admin:
        query = query.where(col(Ticket.state).in_(ACTIVE_STATES))
    else:
        return []
    tickets = session.exec(query.order_by(col(Ticket.id).desc()).limit(limit)).all()
    return [_line(ticket) for ticket in tickets]


def _line(ticket: Ticket) -> TicketLine:
    due = ticket.plan_target or ticket.plan_due or ticket.handling_due
    return TicketLine(
        number=ticket.number,
        category_code=ticket.category_code,
        state=ticket.state,
        response_due=ticket.response_due if not ticket.first_response_at else None,
        # while waiting on the enterprise the handling clock stands still: no due time
        due=due if ticket.state in (State.OPEN, State.CLAIMED) else None,
    )


def ticket_view(
    session: Session, actor: Actor, reference: str, limit: int = HISTORY_LIMIT
) -> TicketView | None:
    """One ticket and its first history rows, or None if there is no such ticket this person
    may see. Internal notes are shown to zone staff only (the squad, managers, admins)."""
    ticket = ticket_by_reference(session, reference)
    if ticket is None or not may(actor, Act.VIEW, ticket):
        return None
    events = session.exec(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket.id)
        .order_by(col(TicketEvent.id))
        .limit(limit)
    ).all()
    internal = (actor.is_squad_member or actor.is_manager or actor.is_admin) and not (
        actor.is_enterprise
    )
    history = [_history(session, e) for e in events if internal or e.action != "noted"]
    return TicketView(
        number=ticket.number,
        category_code=ticket.category_code,
        state=ticket.state,
        description=ticket.description,
        handling_due=ticket.handling_due,
        plan_target=ticket.plan_target,
        rating=ticket.rating,
        history=history,
    )


def _history(session: Session, event: TicketEvent) -> HistoryLine:
    who = session.get(Person, event.actor_id) if event.actor_id is not None else None
    detail = json.loads(event.detail) if event.detail else {}
    text = detail.get("text") or detail.get("summary") or detail.get("steps") or ""
    return HistoryLine(at=event.at, who=who.name if who else None, action=event.action, text=text)
