"""Raising SLA alerts. The ledger row (ticket, deadline, level, cycle) is inserted first and
only the inserter sends, so several schedulers, a replay, or a catch-up after downtime never
alert twice; the ledger row and the messages commit together, so an alert is never lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from models.deadlines import AUTO_CLOSE, DueAlert, earliest, pending_points
from models.desk import Desk
from models.org import Person, Role, Squad
from models.outbox import category_param, insert_rows, outbox_row, text_key, time_param
from models.plumbing import AlertRecord
from models.sla.policy import AlertKind
from models.ticket import Ticket


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def claim_ledger(
    session: Session, claims: list[tuple[Ticket, DueAlert]], now: datetime
) -> set[tuple[int, str, str]]:
    """Insert the ledger rows of these alerts; returns the ones this caller inserted. A row
    another scheduler inserted first is not returned, so only one of them sends."""
    if not claims:
        return set()
    rows = [
        {
            "ticket_id": ticket.id,
            "deadline": point.deadline,
            "level": point.level.value,
            "cycle": ticket.cycle,
            "due_at": point.due,
            "fired_at": now,
        }
        for ticket, point in claims
    ]
    table = AlertRecord.__table__  # type: ignore[attr-defined]
    stmt = (
        _insert(session, table)
        .on_conflict_do_nothing()
        .returning(table.c.ticket_id, table.c.deadline, table.c.level)
    )
    won = session.execute(stmt, rows).all() if len(rows) > 1 else session.execute(stmt, rows[0])
    return {(int(t), str(d), str(lv)) for t, d, lv in won}


def fire_due_batch(desk: Desk, tickets: list[Ticket]) -> list[tuple[Ticket, DueAlert]]:
    """Fire every alert due now for a batch of tickets, in a handful of statements whatever
    the batch size: one ledger read, one ledger insert, one insert of all the messages, one
    update of the next alert times. After a long outage this runs over every open ticket."""
    from models.closure import close_unconfirmed

    if not tickets:
        return []
    session = desk.session
    by_id = {t.id: t for t in tickets if t.id is not None}
    fired: dict[int, set[tuple[str, str]]] = {tid: set() for tid in by_id}
    recorded = session.execute(
        select(
            AlertRecord.ticket_id, AlertRecord.deadline, AlertRecord.level, AlertRecord.cycle
        ).where(col(AlertRecord.ticket_id).in_(list(by_id)))
    ).all()
    for tid, deadline, level, cycle in recorded:
        if cycle == by_id[tid].cycle:
            fired[tid].add((deadline, level))
    # people and squads the alerts will name, into the session's identity map in one go
    # (held here: the identity map only keeps objects someone still refers to)
    owners = {p for t in tickets for p in (t.owner_id, t.led_by) if p is not None}
    named: list[Any] = list(session.exec(select(Squad)).all())
    if owners:
        named += session.exec(select(Person).where(col(Person.id).in_(list(owners)))).all()

    claims: list[tuple[Ticket, DueAlert]] = []
    points = {tid: _points(desk, ticket) for tid, ticket in by_id.items()}
    for tid, ticket in by_id.items():
        for point in points[tid]:
            key = (point.deadline, point.level.value)
            if key not in fired[tid] and point.at <= desk.now:
                fired[tid].add(key)
                claims.append((ticket, point))
    won = claim_ledger(session, claims, desk.now)
    rows: list[dict[str, Any]] = []
    sent: list[tuple[Ticket, DueAlert]] = []
    for ticket, point in claims:
        if (ticket.id, point.deadline, point.level.value) not in won:
            continue  # another scheduler fired it
        if point.deadline == AUTO_CLOSE:
            close_unconfirmed(desk, ticket)
            points[ticket.id or 0] = _points(desk, ticket)  # closed: nothing is pending
        elif point.level is AlertKind.WARNING and point.due <= desk.now:
            pass  # caught up after the deadline itself: the breach says it all
        else:
            rows.extend(alert_rows(desk, ticket, point))
            sent.append((ticket, point))
    insert_rows(session, rows)
    nexts: list[dict[str, Any]] = []
    for tid, ticket in by_id.items():
        nxt = earliest(points[tid], fired[tid])
        nexts.append({"tid": tid, "nxt": nxt})
        set_committed_value(ticket, "next_alert_at", nxt)  # the row is written just below
    del named
    table = Ticket.__table__  # type: ignore[attr-defined]
    session.execute(
        update(table).where(table.c.id == bindparam("tid")).values(next_alert_at=bindparam("nxt")),
        nexts,
    )
    return sent


def _points(desk: Desk, ticket: Ticket) -> list[DueAlert]:
    return pending_points(
        ticket, desk.targets(ticket), desk.calendar(ticket), desk.zone.auto_close_after
    )


def _recipients(desk: Desk, ticket: Ticket, point: DueAlert) -> tuple[list[Person], bool]:
    """Who hears this alert, in order, and whether it also goes to the managers' chat and
    webhooks. A leader who took the ticket on personally (领办) hears every alert, first."""
    people, wide = _usual_recipients(desk, ticket, point)
    leader = desk.person(ticket.led_by)
    return (_unique([leader, *people]) if leader is not None else people), wide


def _usual_recipients(desk: Desk, ticket: Ticket, point: DueAlert) -> tuple[list[Person], bool]:
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
        "owner": owner.name if owner else text_key("owner.none"),
        "squad": desk.notify.squad_of(ticket).name,
        "description": ticket.description[:200],
    }
    template = f"alert.{point.level.value}"
    key = f"alert:{ticket.id}:{point.deadline}:{point.level.value}:{ticket.cycle}"

    def row(**where: Any) -> dict[str, Any]:
        return outbox_row(desk.now, template=template, params=params, ticket_id=ticket.id, **where)

    people, wide = _recipients(desk, ticket, point)
    rows = [
        row(
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
            row(
                chat_id=desk.zone.managers_chat,
                locale=desk.zone.language,
                link_role="thread",
                dedupe_key=f"{key}:chat",
            )
        )
    for index, hook in enumerate(desk.zone.webhooks):
        rows.append(
            row(
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
