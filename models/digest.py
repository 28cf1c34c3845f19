"""The morning digest (每日简报) every manager and lead receives: yesterday's figures (filed,
resolved, deadlines missed) and what is overdue now, each in the reader's language. Managers
see the zone, a lead their squads. Simple counts from the tickets, their history and the
alert ledger; the rankings and charts are the statistics' business."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from models.deadlines import AUTO_CLOSE
from models.desk import Desk
from models.org import Membership, Person, Role, Squad
from models.outbox import inline, insert_rows, lines, nested, outbox_row, text_key, time_param
from models.overdue import Overdue
from models.overdue import overdue as overdue_now
from models.people import managers
from models.plumbing import AlertRecord
from models.sla.policy import AlertKind
from models.ticket import Ticket, TicketEvent

OVERDUE_SHOWN = 8  # the digest lists this many overdue tickets; /my shows them all


@dataclass
class Figures:
    filed: int = 0
    resolved: int = 0
    breaches: int = 0
    overdue: int = 0
    oldest_overdue: list[Overdue] = field(default_factory=list)  # the longest overdue first


def day_bounds(desk: Desk, day: date) -> tuple[datetime, datetime]:
    """A day of the zone's calendar, as the instants it starts and ends."""
    start = datetime.combine(day, time(0), tzinfo=desk.zone.tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=desk.zone.tz)


def figures(desk: Desk, day: date, squads: frozenset[int] | None) -> Figures:
    """The day's figures and the tickets overdue now, for the zone (squads None) or for
    some squads."""
    session = desk.session
    start, end = day_bounds(desk, day)

    def scoped(query: Any) -> Any:
        return query if squads is None else query.where(col(Ticket.squad_id).in_(squads))

    filed = session.exec(
        scoped(
            select(func.count())
            .select_from(Ticket)
            .where(col(Ticket.created_at) >= start, col(Ticket.created_at) < end)
        )
    ).one()
    resolved = session.exec(
        scoped(
            select(func.count(func.distinct(TicketEvent.ticket_id)))
            .join(Ticket, col(Ticket.id) == col(TicketEvent.ticket_id))
            .where(
                TicketEvent.action == "resolved",
                col(TicketEvent.at) >= start,
                col(TicketEvent.at) < end,
            )
        )
    ).one()
    breaches = session.exec(
        scoped(
            select(func.count())
            .select_from(AlertRecord)
            .join(Ticket, col(Ticket.id) == col(AlertRecord.ticket_id))
            .where(
                AlertRecord.level == AlertKind.BREACH.value,
                AlertRecord.deadline != AUTO_CLOSE,
                col(AlertRecord.fired_at) >= start,
                col(AlertRecord.fired_at) < end,
            )
        )
    ).one()
    # overdue by the one definition of "on time" (models/promises.py), as /overdue lists it
    oldest, overdue = overdue_now(session, desk.now, squads, limit=OVERDUE_SHOWN)
    return Figures(int(filed), int(resolved), int(breaches), overdue, oldest)


def readers(session: Session) -> list[tuple[Person, frozenset[int] | None]]:
    """Who gets a digest, and of what: every manager the zone, every other lead their
    squads. Only people who can be reached on Telegram."""
    found: dict[int, tuple[Person, frozenset[int] | None]] = {}
    for person in managers(session):
        if person.id is not None and person.telegram_user_id is not None:
            found[person.id] = (person, None)
    rows = session.exec(
        select(Person, Membership.squad_id)
        .join(Membership, col(Membership.person_id) == col(Person.id))
        .where(Membership.role == Role.LEAD, col(Membership.active))
        .order_by(col(Person.id))
    ).all()
    led: dict[int, set[int]] = {}
    for person, squad_id in rows:
        if person.id is None or person.telegram_user_id is None or squad_id is None:
            continue
        led.setdefault(person.id, set()).add(squad_id)
        if person.id not in found or found[person.id][1] is not None:
            found[person.id] = (person, frozenset(led[person.id]))
    return list(found.values())


def digest_key(today: date, person: Person) -> str:
    return f"digest:{today.isoformat()}:{person.id}"


def queue_digests(desk: Desk, today: date) -> int:
    """Queue today's digest (yesterday's figures, what is overdue now) for every reader, in
    one statement; a reader who already has today's is skipped (dedupe key). Returns how
    many were queued."""
    yesterday = today - timedelta(days=1)
    squad_names = {s.id: s.name for s in desk.session.exec(select(Squad)).all()}
    cache: dict[frozenset[int] | None, Figures] = {}
    rows: list[dict[str, Any]] = []
    for person, squads in readers(desk.session):
        if squads not in cache:
            cache[squads] = figures(desk, yesterday, squads)
        found = cache[squads]
        scope = (
            text_key("digest.zone")
            if squads is None
            else inline(sorted(squad_names.get(s, "-") for s in squads))
        )
        params = {
            "scope": scope,
            "day": {"date": yesterday.isoformat()},
            "filed": found.filed,
            "resolved": found.resolved,
            "breaches": found.breaches,
            "overdue": found.overdue,
            "list": _overdue_list(found),
        }
        rows.append(
            outbox_row(
                desk.now,
                template="digest.morning",
                locale=desk.locale_of(person),
                chat_id=person.telegram_user_id,
                params=params,
                dedupe_key=digest_key(today, person),
            )
        )
    insert_rows(desk.session, rows)
    return len(rows)


def _overdue_list(found: Figures) -> Any:
    if not found.oldest_overdue:
        return ""
    items: list[Any] = []
    for late in found.oldest_overdue:
        items.append(
            nested(
                "digest.overdue_line",
                {
                    "number": late.number,
                    "squad": late.squad,
                    "deadline": text_key(f"deadline.{late.deadline}"),
                    "due": time_param(late.due),
                    "owner": late.owner or text_key("owner.none"),
                },
            )
        )
    if found.overdue > len(items):
        items.append(nested("digest.more", {"count": found.overdue - len(items)}))
    return nested("digest.overdue_list", {"lines": lines(items)})
