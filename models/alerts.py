"""Raising SLA alerts. The ledger row (ticket, deadline, level, cycle) is inserted first and
only the inserter sends, so several schedulers, a replay, or a catch-up after downtime never
alert twice; the ledger row and the messages commit together, so an alert is never lost.
Who hears an alert and what they are told, a storm's digest included, is
`models.alert_messages`.

`fire_due` is the timer's every firing and the start-up catch-up: set-based, in the driver's
own terms (`models.alert_store`), a chunk of due tickets at a time within one transaction,
the storms decided once over the whole of it. `fire_due_batch` fires tickets already loaded
as objects, one by one through `pending_points`, and keeps the objects in step."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import contains_eager
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from models.alert_messages import AlertBook
from models.alert_store import AlertStore, Claim, DueTicket
from models.deadlines import AUTO_CLOSE, DueAlert, earliest, pending_points, pending_times
from models.desk import Desk
from models.outbox import insert_rows
from models.plumbing import AlertRecord
from models.sla.policy import AlertKind, AlertTimes
from models.ticket import Ticket, TicketAlarm

CHUNK = 5000  # due tickets read, claimed and rearmed at a time, all in the one transaction
Fired = dict[int, set[tuple[str, str]]]  # ticket id -> (deadline, level) in its cycle's ledger
_WARNING = AlertKind.WARNING


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def claim_ledger(
    session: Session, claims: list[tuple[Any, DueAlert]], now: datetime
) -> dict[tuple[int, str, str], int]:
    """Insert the ledger rows of these alerts, all in one statement; returns the ones this
    caller inserted, with their ledger ids. A row another scheduler inserted first is not
    returned, so only one of them sends."""
    if not claims:
        return {}
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
        .returning(table.c.ticket_id, table.c.deadline, table.c.level, table.c.id)
    )
    won = session.execute(stmt, rows).all() if len(rows) > 1 else session.execute(stmt, rows[0])
    return {(int(t), str(d), str(lv)): int(i) for t, d, lv, i in won}


def fire_due(desk: Desk, limit: int | None = None) -> int:
    """Fire every alert due now (the `limit` earliest tickets, if given) in one transaction;
    returns how many alerts were told. Per chunk of due tickets: one read of their columns,
    one of their ledger, their points worked out per policy and calendar (`AlertTimes`), one
    ledger insert of every due point and one write of the next alert times; then one insert
    of the messages, a storm's digests instead of one message per ticket. On PostgreSQL
    tickets another scheduler holds are skipped (`models.alert_store`)."""
    store = AlertStore(desk.session)
    now = desk.now.astimezone(UTC).replace(tzinfo=None)
    count, chunks = store.due(now, CHUNK, limit)
    if not count:
        return 0
    store.hold()
    book = AlertBook(desk)
    firing = _Firing(desk, store, book, now)
    big = count > CHUNK
    with store.roomy() if big else nullcontext(), _collector_paused(big):
        for tickets in chunks:
            firing.chunk(tickets)
    insert_rows(desk.session, book.rows(store.descriptions))
    return len(book)


@contextmanager
def _collector_paused(paused: bool) -> Iterator[None]:
    """A big firing allocates millions of short-lived tuples, none of them in a cycle: the
    cyclic garbage collector, left on, would walk every live object of the process again and
    again for nothing. Paused for the firing (reference counting still frees everything),
    then on again if it was on."""
    was_on = paused and gc.isenabled()
    if was_on:
        gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


class _Firing:
    """One `fire_due`: each ticket's points from its policy and calendar, worked out once
    per (category, urgency)."""

    def __init__(self, desk: Desk, store: AlertStore, book: AlertBook, now: datetime) -> None:
        self.desk = desk
        self.store = store
        self.book = book
        self.now = now
        self._times: dict[tuple[str, str], AlertTimes] = {}

    def times(self, ticket: DueTicket) -> AlertTimes:
        kind = (ticket.category_code, ticket.urgency)
        found = self._times.get(kind)
        if found is None:
            targets = self.desk.zone.targets(*kind)
            found = self._times[kind] = AlertTimes(targets, self.desk.zone.calendar_for(targets))
        return found

    def chunk(self, tickets: list[DueTicket]) -> None:
        now, store, plans = self.now, self.store, self._times
        auto_close_after = self.desk.zone.auto_close_after
        fired = store.fired(tickets)
        claims: list[Claim] = []
        nexts: dict[int, datetime | None] = {}
        for ticket in tickets:
            times = plans.get((ticket.category_code, ticket.urgency)) or self.times(ticket)
            done = fired.get(ticket.id)
            nxt: datetime | None = None
            for deadline, level, at, due in pending_times(ticket, times, auto_close_after):
                if done and (deadline, level) in done:
                    continue
                if at <= now:
                    claims.append((ticket, deadline, level, due))
                elif nxt is None or at < nxt:
                    nxt = at
            nexts[ticket.id] = nxt
        won = store.claim(claims, now)
        tell = self.book.add
        for (ticket, deadline, level, due), ledger_id in zip(claims, won, strict=True):
            if ledger_id is None:
                continue  # another scheduler fired it
            if deadline == AUTO_CLOSE:
                keys = fired.get(ticket.id, set()) | {(deadline, level)}
                nexts[ticket.id] = self._close(ticket, keys)
            elif level is _WARNING and due <= now:
                pass  # caught up after the deadline itself: the breach says it all
            else:
                tell(ticket, deadline, level, due, ledger_id)
        # every ticket here was due, so its alarm changes: it was at or before now, and what
        # is left pending is after now, or nothing
        store.set_next(nexts)

    def _close(self, ticket: DueTicket, fired: set[tuple[str, str]]) -> datetime | None:
        """An unconfirmed resolution closes itself; its next alert is worked out afresh."""
        from models.closure import close_unconfirmed

        desk = self.desk
        held = desk.session.get(Ticket, ticket.id)
        if held is None:
            return None
        close_unconfirmed(desk, held)
        desk.session.flush()  # its alarm as the object has it, before `set_next` writes it
        nxt = earliest(_points(desk, held), fired)
        return None if nxt is None else nxt.astimezone(UTC).replace(tzinfo=None)


def fire_due_batch(desk: Desk, tickets: list[Ticket]) -> list[tuple[Any, DueAlert]]:
    """Fire the due alerts of tickets already loaded as objects, one by one through
    `pending_points`, keeping the objects' next alert time in step with what is written."""
    if not tickets:
        return []
    by_id = {t.id: t for t in tickets if t.id is not None}
    fired: Fired = {tid: set() for tid in by_id}
    ids = list(by_id)
    for lo in range(0, len(ids), CHUNK):  # SQLite takes 32766 values a statement
        recorded = desk.session.execute(
            select(
                AlertRecord.ticket_id, AlertRecord.deadline, AlertRecord.level, AlertRecord.cycle
            ).where(col(AlertRecord.ticket_id).in_(ids[lo : lo + CHUNK]))
        ).all()
        for tid, deadline, level, cycle in recorded:
            if cycle == by_id[tid].cycle:
                fired[tid].add((deadline, level))
    return _fire(desk, by_id, fired)


def _fire(desk: Desk, by_id: dict[int, Ticket], fired: Fired) -> list[tuple[Any, DueAlert]]:
    from models.closure import close_unconfirmed

    session = desk.session
    points: dict[int, list[DueAlert]] = {}
    claims: list[tuple[Ticket, DueAlert]] = []
    for tid, ticket in by_id.items():
        points[tid] = found = _points(desk, ticket)
        done = fired[tid]
        for point in found:
            key = (point.deadline, point.level.value)
            if point.at <= desk.now and key not in done:
                done.add(key)
                claims.append((ticket, point))
    won = claim_ledger(session, claims, desk.now)
    book = AlertBook(desk)
    told: list[tuple[Any, DueAlert]] = []
    for ticket, point in claims:
        tid = int(ticket.id or 0)
        ledger_id = won.get((tid, point.deadline, point.level.value))
        if ledger_id is None:
            continue  # another scheduler fired it
        if point.deadline == AUTO_CLOSE:
            close_unconfirmed(desk, ticket)
            points[tid] = _points(desk, ticket)  # closed: nothing is pending
        elif point.level is AlertKind.WARNING and point.due <= desk.now:
            pass  # caught up after the deadline itself: the breach says it all
        else:
            book.add(ticket, point.deadline, point.level, point.due, ledger_id)
            told.append((ticket, point))
    insert_rows(session, book.rows())
    session.flush()  # an auto-close rearmed its ticket through the object
    moved: list[dict[str, Any]] = []
    for tid, ticket in by_id.items():
        nxt = earliest(points[tid], fired[tid])
        alarm = ticket.alarm
        if alarm is None or nxt is None:
            ticket.next_alert_at = nxt  # its alarm row is added or dropped when flushed
        elif alarm.next_alert_at != nxt:
            moved.append({"tid": tid, "nxt": nxt})
            set_committed_value(alarm, "next_alert_at", nxt)  # the row is written just below
    if moved:
        table = TicketAlarm.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table)
            .where(table.c.ticket_id == bindparam("tid"))
            .values(next_alert_at=bindparam("nxt")),
            moved,
        )
    session.flush()
    return told


def _points(desk: Desk, ticket: Ticket) -> list[DueAlert]:
    targets = desk.zone.targets(ticket.category_code, ticket.urgency)
    calendar = desk.zone.calendar_for(targets)
    return pending_points(ticket, targets, calendar, desk.zone.auto_close_after)


def due_tickets(session: Session, now: Any, limit: int = 500) -> list[Ticket]:
    """Tickets with an alert due, their alarms loaded with them; on PostgreSQL rows locked
    by another scheduler are skipped."""
    at = col(TicketAlarm.next_alert_at)
    query = (
        select(Ticket)
        .join(TicketAlarm, col(TicketAlarm.ticket_id) == col(Ticket.id))
        .options(contains_eager(Ticket.alarm))  # type: ignore[arg-type]
        .where(at <= now)
        .order_by(at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.exec(query).all())
