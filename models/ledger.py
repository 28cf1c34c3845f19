"""The ledger (台账): one row per ticket filed in a period, for the monthly export. Read as
narrow rows streamed from the database in batches, never as ticket objects, so a month of
100k tickets stays a flat memory line. Whether each promise was kept comes from the same
`models.promises.verdict` as every other figure.

If tickets carry a `led_by` person (a leader who took the problem on personally, 难题我领办),
the row names them; without such a column the field stays empty."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, null, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from models.figures import Scope, filed_in, in_scope
from models.org import Person, Project, Squad
from models.periods import Period
from models.promises import verdicts
from models.ticket import Ticket, TicketEvent

BATCH = 2000


@dataclass(frozen=True)
class LedgerRow:
    number: str
    squad: str
    project: str | None
    enterprise: str | None
    category_code: str
    urgency: str
    state: str
    filed: datetime
    first_response: datetime | None
    plan_agreed: datetime | None
    resolved: datetime | None
    closed: datetime | None
    reply: int | None  # 1 kept, 0 missed, None not decided
    handling: int | None
    plan: int | None
    owner: str | None
    led_by: str | None
    rating: int | None
    description: str
    summary: str | None  # what the squad said when it last resolved the ticket


def _led_by() -> Any:
    """The `led_by` column, if tickets have one (NULL otherwise)."""
    return getattr(Ticket, "led_by", None)


def _last_resolution(period: Period, scope: Scope) -> Any:
    """The id of each ticket's last `resolved` event, for the tickets of the period."""
    tickets = select(col(Ticket.id)).where(filed_in(period), in_scope(scope))
    return (
        select(col(TicketEvent.ticket_id), func.max(col(TicketEvent.id)).label("event_id"))
        .where(col(TicketEvent.action) == "resolved", col(TicketEvent.ticket_id).in_(tickets))
        .group_by(col(TicketEvent.ticket_id))
        .subquery()
    )


def ledger_count(session: Session, period: Period, scope: Scope = None) -> int:
    query = select(func.count()).select_from(Ticket).where(filed_in(period), in_scope(scope))
    return int(session.execute(query).scalar_one())


def ledger_rows(
    session: Session, period: Period, now: datetime, scope: Scope = None
) -> Iterator[LedgerRow]:
    """The period's tickets in the order they were filed."""
    v = verdicts(now)
    owner = aliased(Person)
    leader = aliased(Person)
    led_by = _led_by()
    resolution = _last_resolution(period, scope)
    event = aliased(TicketEvent)
    query = (
        select(
            col(Ticket.number),
            col(Squad.name),
            col(Project.name),
            col(Project.enterprise),
            col(Ticket.category_code),
            col(Ticket.urgency),
            col(Ticket.state),
            col(Ticket.created_at),
            col(Ticket.first_response_at),
            col(Ticket.plan_agreed_at),
            col(Ticket.resolved_at),
            col(Ticket.closed_at),
            v["reply"],
            v["handling"],
            v["plan"],
            col(owner.name),
            col(leader.name) if led_by is not None else null(),
            col(Ticket.rating),
            col(Ticket.description),
            col(event.detail),
        )
        .join(Squad, col(Squad.id) == col(Ticket.squad_id))
        .outerjoin(Project, col(Project.id) == col(Ticket.project_id))
        .outerjoin(owner, col(owner.id) == col(Ticket.owner_id))
        .outerjoin(resolution, resolution.c.ticket_id == col(Ticket.id))
        .outerjoin(event, col(event.id) == resolution.c.event_id)
        .where(filed_in(period), in_scope(scope))
        .order_by(col(Ticket.created_at), col(Ticket.id))
    )
    if led_by is not None:
        query = query.outerjoin(leader, col(leader.id) == led_by)
    result = session.execute(query.execution_options(yield_per=BATCH))
    for row in result:
        *head, detail = row
        yield LedgerRow(*[*head, _summary(detail)])


def _summary(detail: str | None) -> str | None:
    if not detail:
        return None
    try:
        found = json.loads(detail).get("summary")
    except (ValueError, AttributeError):
        return None
    return str(found) if found else None
