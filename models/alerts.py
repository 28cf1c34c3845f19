"""Raising SLA alerts. The ledger row (ticket, deadline, level, cycle) is inserted first and
only the inserter sends, so several schedulers, a replay, or a catch-up after downtime never
alert twice; the ledger row and the messages commit together, so an alert is never lost."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models.deadlines import AUTO_CLOSE, DueAlert, earliest, fired_keys, pending_points
from models.desk import Desk
from models.org import Person, Role
from models.outbox import category_param, insert_rows, outbox_row, text_key, time_param
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
    """Fire every alert of this ticket that is due now; returns what this caller fired.
    One ledger read, one insert of all the messages, no objects per message: after a long
    outage this runs for every open ticket."""
    from models.closure import close_unconfirmed

    targets, calendar = desk.targets(ticket), desk.calendar(ticket)
    fired = fired_keys(desk.session, ticket)
    points = sorted(
        pending_points(ticket, targets, calendar, desk.zone.auto_close_after), key=lambda p: p.at
    )
    rows: list[dict[str, Any]] = []
    sent: list[DueAlert] = []
    for point in points:
        key = (point.deadline, point.level.value)
        if key in fired or point.at > desk.now:
            continue
        fired.add(key)
        if not claim_ledger(desk.session, ticket, point, desk.now):
            continue  # another scheduler fired it
        if point.deadline == AUTO_CLOSE:
            close_unconfirmed(desk, ticket)
            continue
        if point.level is AlertKind.WARNING and point.due <= desk.now:
            continue  # caught up after the deadline itself: the breach says it all
        rows.extend(alert_rows(desk, ticket, point))
        sent.append(point)
    insert_rows(desk.session, rows)
    ticket.next_alert_at = earliest(
        pending_points(ticket, targets, calendar, desk.zone.auto_close_after), fired
    )
    desk.session.add(ticket)
    return sent


def _recipients(desk: Desk, ticket: Ticket, point: DueAlert) -> tuple[list[Person], bool]:
    """Who hears this alert, and whether it also goes to the managers' chat and webhooks."""
    leads = desk.people(ticket.squad_id, (Role.LEAD,))
    if point.level is AlertKind.WARNING:
        owner = desk.person(ticket.owner_id)
        if owner is not None:
            return [owner], False
        return desk.people(ticket.squad_id, (Role.MEMBER, Role.LEAD)), False
    if point.level is AlertKind.BREACH:
        if point.deadline == "response":
            return leads, False
        return _unique(leads + desk.people(None, ("all",))), True
    return _unique(desk.people(None, ("top",)) + leads), True


def _unique(people: list[Person]) -> list[Person]:
    return list({p.id: p for p in people}.values())


def alert_rows(desk: Desk, ticket: Ticket, point: DueAlert) -> list[dict[str, Any]]:
    """The outbox rows of one alert, each with a dedupe key naming ticket, deadline, level,
    cycle and recipient."""
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
    key = f"alert:{ticket.id}:{point.deadline}:{point.level.value}:{ticket.cycle}"
    people, wide = _recipients(desk, ticket, point)
    rows = [
        outbox_row(
            desk.now,
            template=template,
            params=params,
            ticket_id=ticket.id,
            chat_id=person.telegram_user_id,
            locale=desk.locale_of(person),
            link_role="thread",
            dedupe_key=f"{key}:{person.id}",
        )
        for person in people
        if person.telegram_user_id is not None
    ]
    if not wide:
        return rows
    if desk.zone.managers_chat is not None:
        rows.append(
            outbox_row(
                desk.now,
                template=template,
                params=params,
                ticket_id=ticket.id,
                chat_id=desk.zone.managers_chat,
                locale=desk.zone.language,
                link_role="thread",
                dedupe_key=f"{key}:chat",
            )
        )
    for index, hook in enumerate(desk.zone.webhooks):
        rows.append(
            outbox_row(
                desk.now,
                template=template,
                params=params,
                ticket_id=ticket.id,
                channel="webhook",
                webhook=dict(hook),
                locale=desk.zone.language,
                dedupe_key=f"{key}:hook{index}",
            )
        )
    return rows


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
