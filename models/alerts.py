"""Raising SLA alerts. The ledger row (ticket, deadline, level, cycle) is inserted first and
only the inserter sends, so several schedulers, a replay, or a catch-up after downtime never
alert twice; the ledger row and the messages commit together, so an alert is never lost."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models.deadlines import DueAlert, unfired
from models.desk import Desk
from models.org import Person, Role
from models.outbox import category_param, enqueue_webhook, text_key, time_param
from models.people import managers, squad_people
from models.plumbing import AlertRecord
from models.ticket import Ticket
from scheduler.policy import AlertKind


def claim_ledger(session: Session, ticket: Ticket, point: DueAlert, now: Any) -> bool:
    values = {
        "ticket_id": ticket.id,
        "deadline": point.deadline,
        "level": point.level.value,
        "cycle": ticket.cycle,
        "due_at": point.due,
        "fired_at": now,
    }
    dialect = session.get_bind().dialect.name
    table = AlertRecord.__table__  # type: ignore[attr-defined]
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    # values go through the column types, so datetimes are stored as UTC like everything else
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def fire_due_alerts(desk: Desk, ticket: Ticket) -> list[DueAlert]:
    """Fire every alert of this ticket that is due now; returns what this caller fired."""
    targets = desk.targets(ticket)
    fired = []
    for point in unfired(desk.session, ticket, targets, desk.calendar(ticket)):
        if point.at > desk.now:
            break
        if claim_ledger(desk.session, ticket, point, desk.now):
            if point.level is AlertKind.WARNING and point.due <= desk.now:
                continue  # caught up after the deadline itself: the breach says it all
            send_alert(desk, ticket, point)
            fired.append(point)
    desk.rearm(ticket)
    return fired


def _recipients(desk: Desk, ticket: Ticket, point: DueAlert) -> tuple[list[Person], bool]:
    """Who hears this alert, and whether it also goes to the managers' chat and webhooks."""
    squad_id = ticket.squad_id
    leads = squad_people(desk.session, squad_id, (Role.LEAD,))
    if point.level is AlertKind.WARNING:
        owner = desk.person(ticket.owner_id)
        if owner is not None:
            return [owner], False
        return squad_people(desk.session, squad_id, (Role.MEMBER, Role.LEAD)), False
    if point.level is AlertKind.BREACH:
        if point.deadline == "response":
            return leads, False
        return _unique(leads + managers(desk.session)), True
    return _unique(managers(desk.session, top_only=True) + leads), True


def _unique(people: list[Person]) -> list[Person]:
    return list({p.id: p for p in people}.values())


def send_alert(desk: Desk, ticket: Ticket, point: DueAlert) -> None:
    owner = desk.person(ticket.owner_id)
    params = {
        "number": ticket.number,
        "category": category_param(ticket.category_code),
        "deadline": text_key(f"deadline.{point.deadline}"),
        "due": time_param(point.due),
        "owner": owner.name if owner else text_key("alert.unclaimed"),
        "squad": desk.squad_of(ticket).name,
        "description": ticket.description[:200],
    }
    template = f"alert.{point.level.value}"
    key = f"{ticket.id}:{point.deadline}:{point.level.value}:{ticket.cycle}"
    people, wide = _recipients(desk, ticket, point)
    for person in people:
        desk.tell(person, template, params, ticket=ticket, dedupe_key=f"alert:{key}:{person.id}")
    if not wide:
        return
    if desk.zone.managers_chat is not None:
        desk.tell_chat(
            desk.zone.managers_chat, template, params, ticket=ticket, dedupe_key=f"alert:{key}:chat"
        )
    for index, hook in enumerate(desk.zone.webhooks):
        enqueue_webhook(
            desk.session,
            desk.now,
            target=dict(hook),
            template=template,
            params=params,
            locale=desk.zone.language,
            ticket_id=ticket.id,
            dedupe_key=f"alert:{key}:hook{index}",
        )


def due_tickets(session: Session, now: Any, limit: int = 500) -> list[Ticket]:
    """Tickets with an alert due; on PostgreSQL rows locked by another scheduler are skipped."""
    query = (
        select(Ticket)
        .where(col(Ticket.next_alert_at) <= now)
        .order_by(col(Ticket.next_alert_at))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.exec(query).all())
