"""The read side: what people look up (/my, /ticket), as plain rows for a handler to render.
Reading only: nothing here changes the database. Who may see what is decided here, with
the same rules as the domain (`may`). Lists come a page at a time with their true size, so
a manager with three hundred open tickets sees how many there are, not the first twenty."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from models.desk import ticket_by_reference
from models.lifecycle import ACTIVE_STATES, State
from models.org import Person, Squad
from models.people import Actor
from models.permissions import Act, may
from models.ticket import Ticket, TicketEvent

MY_PAGE = 20  # tickets on one page of /my
HISTORY_PAGE = 10  # history rows on one page of /ticket
INTERNAL_ACTIONS = ("noted", "urged")  # the squad's notes and managers' notices to it

_STATE_ORDER = case({state.value: rank for rank, state in enumerate(State)}, value=Ticket.state)


@dataclass(frozen=True)
class TicketLine:
    """One ticket in a list: what is due next, if a clock is running."""

    number: str
    category_code: str
    state: str
    response_due: datetime | None  # None once the squad has answered
    due: datetime | None  # handling, plan or plan target; None while no clock runs
    squad: str = ""
    led: bool = False  # a lead or manager took it on personally (领办)


@dataclass(frozen=True)
class StateCount:
    squad: str
    state: str
    count: int


@dataclass(frozen=True)
class MyTickets:
    """One page of someone's tickets. For managers and leads, `groups` counts every ticket
    of the list by squad and state, and the lines come in that order."""

    lines: list[TicketLine]
    total: int
    page: int
    pages: int
    groups: list[StateCount] = field(default_factory=list)
    grouped: bool = False


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    who: str | None  # None: the system did it
    action: str
    text: str  # what was said, resolved or planned; "" if nothing


@dataclass(frozen=True)
class TicketView:
    ticket_id: int
    number: str
    category_code: str
    state: str
    description: str
    handling_due: datetime | None
    plan_target: datetime | None
    rating: int | None
    history: list[HistoryLine]  # one page of it
    led_by: str | None = None
    history_total: int = 0
    page: int = 1
    pages: int = 1


def _pages(total: int, size: int, page: int) -> tuple[int, int]:
    """How many pages, and the asked-for page kept within them."""
    pages = max(1, -(-total // size))
    return pages, min(max(1, page), pages)


def _my_filter(actor: Actor) -> list[Any] | None:
    """Which tickets concern this person: a manager or an admin every open one, a squad's
    people their squads' unfinished ones, an enterprise contact the ones they filed."""
    if actor.is_manager or actor.is_admin:
        return [col(Ticket.state).in_(ACTIVE_STATES)]
    if actor.is_squad_member:
        return [
            col(Ticket.squad_id).in_(actor.squad_ids),
            col(Ticket.state).in_([*ACTIVE_STATES, State.RESOLVED]),
        ]
    if actor.is_enterprise:
        return [Ticket.enterprise_id == actor.id]
    return None


def my_tickets(session: Session, actor: Actor, page: int = 1) -> MyTickets:
    """A page of the tickets that concern this person, with their true number."""
    where = _my_filter(actor)
    if where is None:
        return MyTickets(lines=[], total=0, page=1, pages=1)
    grouped = actor.is_manager or actor.is_admin or bool(actor.lead_squad_ids)
    counted = session.exec(
        select(Squad.code, Squad.name, Ticket.state, func.count())
        .join(Squad, col(Squad.id) == col(Ticket.squad_id))
        .where(*where)
        .group_by(col(Squad.code), col(Squad.name), col(Ticket.state))
    ).all()
    ranks = {state.value: rank for rank, state in enumerate(State)}
    groups = [
        StateCount(squad=name, state=state, count=int(count))
        for _code, name, state, count in sorted(counted, key=lambda r: (r[0], ranks[r[2]]))
    ]
    total = sum(g.count for g in groups)
    pages, page = _pages(total, MY_PAGE, page)
    order = (
        [col(Squad.code), _STATE_ORDER, col(Ticket.id).desc()]
        if grouped
        else [col(Ticket.id).desc()]
    )
    rows = session.exec(
        select(Ticket, Squad.name)
        .join(Squad, col(Squad.id) == col(Ticket.squad_id))
        .where(*where)
        .order_by(*order)
        .offset((page - 1) * MY_PAGE)
        .limit(MY_PAGE)
    ).all()
    return MyTickets(
        lines=[_line(ticket, squad) for ticket, squad in rows],
        total=total,
        page=page,
        pages=pages,
        groups=groups if grouped else [],
        grouped=grouped,
    )


def _line(ticket: Ticket, squad: str = "") -> TicketLine:
    due = ticket.plan_target or ticket.plan_due or ticket.handling_due
    return TicketLine(
        number=ticket.number,
        category_code=ticket.category_code,
        state=ticket.state,
        response_due=ticket.response_due if not ticket.first_response_at else None,
        # while waiting on the enterprise the handling clock stands still: no due time
        due=due if ticket.state in (State.OPEN, State.CLAIMED) else None,
        squad=squad,
        led=ticket.led_by is not None,
    )


def ticket_view(session: Session, actor: Actor, reference: str, page: int = 1) -> TicketView | None:
    """One ticket and a page of its history, or None if there is no such ticket this person
    may see. Internal notes and supervision notices are shown to zone staff only (the squad,
    managers, admins)."""
    ticket = ticket_by_reference(session, reference)
    if ticket is None or ticket.id is None or not may(actor, Act.VIEW, ticket):
        return None
    where: list[Any] = [TicketEvent.ticket_id == ticket.id]
    internal = (actor.is_squad_member or actor.is_manager or actor.is_admin) and not (
        actor.is_enterprise
    )
    if not internal:
        where.append(col(TicketEvent.action).not_in(INTERNAL_ACTIONS))
    total = session.exec(select(func.count()).select_from(TicketEvent).where(*where)).one()
    pages, page = _pages(int(total), HISTORY_PAGE, page)
    events = session.exec(
        select(TicketEvent)
        .where(*where)
        .order_by(col(TicketEvent.id))
        .offset((page - 1) * HISTORY_PAGE)
        .limit(HISTORY_PAGE)
    ).all()
    leader = session.get(Person, ticket.led_by) if ticket.led_by is not None else None
    return TicketView(
        ticket_id=ticket.id,
        number=ticket.number,
        category_code=ticket.category_code,
        state=ticket.state,
        description=ticket.description,
        handling_due=ticket.handling_due,
        plan_target=ticket.plan_target,
        rating=ticket.rating,
        history=[_history(session, e) for e in events],
        led_by=leader.name if leader else None,
        history_total=int(total),
        page=page,
        pages=pages,
    )


def _history(session: Session, event: TicketEvent) -> HistoryLine:
    who = session.get(Person, event.actor_id) if event.actor_id is not None else None
    detail = json.loads(event.detail) if event.detail else {}
    text = detail.get("text") or detail.get("summary") or detail.get("steps") or ""
    return HistoryLine(at=event.at, who=who.name if who else None, action=event.action, text=text)
