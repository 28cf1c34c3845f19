"""Tickets past a deadline now (/overdue): each open ticket with a promise missed and still
not kept, by the one definition of "on time" (models/promises.py), oldest missed deadline
first. Found by the database: one narrow row per overdue ticket, at most `limit` of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, select, union_all
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from models.elapsed import seconds_between
from models.figures import Scope, in_scope
from models.lifecycle import ACTIVE_STATES
from models.org import Person, Squad
from models.promises import PROMISES, at, missed_by, pending_due
from models.ticket import Ticket

LIMIT = 200


@dataclass(frozen=True)
class Overdue:
    number: str
    squad: str
    owner: str | None  # None: nobody has claimed it
    deadline: str  # response | handling | plan | plan_target, as the catalog's deadline.*
    due: datetime
    late_s: int


def _missed(now: datetime) -> list[Any]:
    """(ticket id, deadline name, due) for each promise missed and not kept since."""
    active = col(Ticket.state).in_(list(ACTIVE_STATES))
    names = {"reply": "response", "plan": "plan"}
    selects: list[Any] = []
    for promise in PROMISES:
        name = (
            case((col(Ticket.plan_target).is_not(None), "plan_target"), else_="handling")
            if promise == "handling"
            else literal(names[promise])
        )
        selects.append(
            select(
                col(Ticket.id).label("ticket_id"),
                name.label("deadline"),
                pending_due(promise).label("due"),
            ).where(active, missed_by(promise, at(now)))
        )
    return selects


def overdue(
    session: Session, now: datetime, scope: Scope = None, limit: int = LIMIT
) -> tuple[list[Overdue], int]:
    """The oldest `limit` overdue tickets, and how many there are in all."""
    missed = union_all(*_missed(now)).subquery()
    first = (
        select(
            missed.c.ticket_id,
            missed.c.deadline,
            missed.c.due,
            func.row_number()
            .over(partition_by=missed.c.ticket_id, order_by=(missed.c.due, missed.c.deadline))
            .label("n"),
        )
    ).subquery()
    owner = aliased(Person)
    query = (
        select(
            col(Ticket.number),
            col(Squad.name),
            col(owner.name),
            first.c.deadline,
            first.c.due,
            seconds_between(at(now), first.c.due),
        )
        .join(Ticket, col(Ticket.id) == first.c.ticket_id)
        .join(Squad, col(Squad.id) == col(Ticket.squad_id))
        .outerjoin(owner, col(owner.id) == col(Ticket.owner_id))
        .where(first.c.n == 1, in_scope(scope))
    )
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.order_by(first.c.due, col(Ticket.id)).limit(limit)).all()
    found = [
        Overdue(str(number), str(squad), owner_name, str(deadline), due, int(late))
        for number, squad, owner_name, deadline, due, late in rows
    ]
    return found, int(total)
