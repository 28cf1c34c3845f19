"""Raising SLA alerts. The ledger row (ticket, deadline, level, cycle) is inserted first and
only the inserter sends, so several schedulers, a replay, or a catch-up after downtime never
alert twice; the ledger row and the messages commit together, so an alert is never lost.

Alert storms: when many alerts fall due for one recipient at once (after downtime, after a
long holiday, a mass breach), the recipient gets one digest per level instead of one message
per ticket (the zone file's `alerts:` threshold and window); the ledger stays per ticket."""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from models.deadlines import AUTO_CLOSE, DueAlert, earliest, pending_points
from models.desk import Desk
from models.org import Person, Role, Squad
from models.outbox import (
    category_param,
    insert_rows,
    lines,
    nested,
    outbox_row,
    text_key,
    time_param,
)
from models.plumbing import AlertRecord, OutboxMessage
from models.sla.policy import AlertKind
from models.ticket import Ticket


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


# the ticket columns firing reads: the set-based path reads rows, never ORM objects
_COLUMNS = (
    "id",
    "number",
    "squad_id",
    "owner_id",
    "led_by",
    "enterprise_id",
    "category_code",
    "urgency",
    "description",
    "state",
    "cycle",
    "created_at",
    "resolved_at",
    "first_response_at",
    "response_due",
    "handling_due",
    "handling_started",
    "plan_required",
    "plan_target",
    "plan_due",
    "next_alert_at",
)
Fired = dict[int, set[tuple[str, str]]]


def fire_due(desk: Desk, limit: int | None = None) -> list[tuple[Any, DueAlert]]:
    """Fire every alert due now, set-based, in one transaction: one read of the due tickets
    (plain rows), one of their ledger, one ledger insert of every due point (ON CONFLICT DO
    NOTHING RETURNING), one insert of the messages (a storm's digests instead of one message
    per ticket) and one update of the next alert times. This is the start-up catch-up and
    the timer's every firing; on PostgreSQL tickets another scheduler holds are skipped."""
    table = Ticket.__table__  # type: ignore[attr-defined]
    due = table.c.next_alert_at <= desk.now
    query = select(*(table.c[name] for name in _COLUMNS)).where(due)
    if limit is not None:
        query = query.order_by(table.c.next_alert_at).limit(limit)
    postgres = desk.session.get_bind().dialect.name == "postgresql"
    if postgres:
        query = query.with_for_update(skip_locked=True)
    tickets = list(desk.session.execute(query).all())
    if not tickets:
        return []
    ledger = AlertRecord.__table__  # type: ignore[attr-defined]
    recorded = select(ledger.c.ticket_id, ledger.c.deadline, ledger.c.level).join(
        table, (table.c.id == ledger.c.ticket_id) & (table.c.cycle == ledger.c.cycle)
    )
    if limit is None:  # every due ticket (a row another scheduler holds is left out below)
        recorded = recorded.where(due)
    else:
        recorded = recorded.where(ledger.c.ticket_id.in_([t.id for t in tickets]))
    fired: Fired = {t.id: set() for t in tickets}
    for tid, deadline, level in desk.session.execute(recorded):
        if tid in fired:
            fired[tid].add((deadline, level))
    return _fire(desk, tickets, fired)


def fire_due_batch(desk: Desk, tickets: list[Ticket]) -> list[tuple[Any, DueAlert]]:
    """`fire_due` for tickets already loaded as objects (kept in step with what is written)."""
    if not tickets:
        return []
    by_id = {t.id: t for t in tickets if t.id is not None}
    fired: Fired = {tid: set() for tid in by_id}
    recorded = desk.session.execute(
        select(
            AlertRecord.ticket_id, AlertRecord.deadline, AlertRecord.level, AlertRecord.cycle
        ).where(col(AlertRecord.ticket_id).in_(list(by_id)))
    ).all()
    for tid, deadline, level, cycle in recorded:
        if cycle == by_id[tid].cycle:
            fired[tid].add((deadline, level))
    return _fire(desk, list(by_id.values()), fired)


def _fire(desk: Desk, tickets: list[Any], fired: Fired) -> list[tuple[Any, DueAlert]]:
    from models.closure import close_unconfirmed

    session = desk.session
    by_id = {t.id: t for t in tickets}
    points: dict[int, list[DueAlert]] = {}
    claims: list[tuple[Any, DueAlert]] = []
    for tid, ticket in by_id.items():
        points[tid] = found = _points(desk, ticket)
        done = fired[tid]
        for point in found:
            key = (point.deadline, point.level.value)
            if point.at <= desk.now and key not in done:
                done.add(key)
                claims.append((ticket, point))
    won = claim_ledger(session, claims, desk.now)
    told: list[_Told] = []
    for ticket, point in claims:
        ledger_id = won.get((ticket.id, point.deadline, point.level.value))
        if ledger_id is None:
            continue  # another scheduler fired it
        if point.deadline == AUTO_CLOSE:
            held = ticket if isinstance(ticket, Ticket) else session.get(Ticket, ticket.id)
            if held is not None:
                close_unconfirmed(desk, held)
                points[ticket.id] = _points(desk, held)  # closed: nothing is pending
        elif point.level is AlertKind.WARNING and point.due <= desk.now:
            pass  # caught up after the deadline itself: the breach says it all
        else:
            told.append(_Told(ticket, point, ledger_id))
    insert_rows(session, _messages(desk, told))
    nexts: list[dict[str, Any]] = []
    for tid, ticket in by_id.items():
        nxt = earliest(points[tid], fired[tid])
        nexts.append({"tid": tid, "nxt": nxt})
        if isinstance(ticket, Ticket):
            set_committed_value(ticket, "next_alert_at", nxt)  # the row is written just below
    table = Ticket.__table__  # type: ignore[attr-defined]
    session.execute(
        update(table).where(table.c.id == bindparam("tid")).values(next_alert_at=bindparam("nxt")),
        nexts,
    )
    return [(t.ticket, t.point) for t in told]


def _points(desk: Desk, ticket: Any) -> list[DueAlert]:
    targets = desk.zone.targets(ticket.category_code, ticket.urgency)
    calendar = desk.zone.calendar_for(targets)
    return pending_points(ticket, targets, calendar, desk.zone.auto_close_after)


# --- who hears an alert ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Told:
    ticket: Any  # a Ticket, or a row of its columns
    point: DueAlert
    ledger_id: int


@dataclass(frozen=True)
class Address:
    """One recipient of alerts: `token` names it in dedupe keys (a person's id, `chat` for
    the managers' chat, `hook<i>` for a webhook), `where` is its outbox columns."""

    token: str
    where: dict[str, Any]


def _addresses(desk: Desk, ticket: Any, point: DueAlert) -> list[Address]:
    """Who hears this alert, in order: the people (a leader who took the ticket on
    personally (领办) first), then the managers' chat and the webhooks when it goes wide.
    Kept per squad, owner, leader and kind of alert: a catch-up asks this thousands of times."""
    key = (ticket.squad_id, ticket.owner_id, ticket.led_by, point.level, point.deadline)
    cache: dict[Any, list[Address]] = desk.session.info.setdefault("alert_addresses", {})
    if key in cache:
        return cache[key]
    people, wide = _usual_recipients(desk, ticket, point)
    leader = desk.person(ticket.led_by)
    if leader is not None:
        people = _unique([leader, *people])
    found = [
        Address(
            str(person.id),
            {"chat_id": person.telegram_user_id, "locale": desk.locale_of(person)},
        )
        for person in people
        if person.telegram_user_id is not None
    ]
    if wide and desk.zone.managers_chat is not None:
        found.append(
            Address("chat", {"chat_id": desk.zone.managers_chat, "locale": desk.zone.language})
        )
    if wide:
        for index, hook in enumerate(desk.zone.webhooks):
            found.append(
                Address(
                    f"hook{index}",
                    {"channel": "webhook", "webhook": dict(hook), "locale": desk.zone.language},
                )
            )
    cache[key] = found
    return found


def _usual_recipients(desk: Desk, ticket: Any, point: DueAlert) -> tuple[list[Person], bool]:
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


# --- what they are told: one message per alert, or a storm's digest --------------------------


def _messages(desk: Desk, told: list[_Told]) -> list[dict[str, Any]]:
    """The outbox rows of these alerts. Per recipient and level, alerts are counted with
    those already queued for that recipient within the zone's storm window: when the count
    passes the storm threshold (and this firing holds at least two of them), the recipient
    gets one digest of this firing's alerts, naming the oldest and most urgent, instead of
    one message per ticket. A lone alert is always told on its own, at once."""
    if not told:
        return []
    groups: dict[tuple[str, str], list[_Told]] = {}
    where: dict[str, dict[str, Any]] = {}
    for alert in told:
        for address in _addresses(desk, alert.ticket, alert.point):
            groups.setdefault((address.token, alert.point.level.value), []).append(alert)
            where[address.token] = address.where
    threshold = desk.zone.storm_threshold
    unsure = {key for key, group in groups.items() if 2 <= len(group) <= threshold}
    before = _recently_told(desk, unsure) if unsure else {}
    storms = {
        key
        for key, group in groups.items()
        if len(group) >= 2 and before.get(key, 0) + len(group) > threshold
    }
    _load_names(desk, told, storms)
    rows: list[dict[str, Any]] = []
    for alert in told:
        params: dict[str, Any] | None = None
        level = alert.point.level.value
        ticket = alert.ticket
        key = f"alert:{ticket.id}:{alert.point.deadline}:{level}:{ticket.cycle}"
        for address in _addresses(desk, ticket, alert.point):
            if (address.token, level) in storms:
                continue
            params = params or _alert_params(desk, ticket, alert.point)
            rows.append(
                outbox_row(
                    desk.now,
                    template=f"alert.{level}",
                    params=params,
                    ticket_id=ticket.id,
                    dedupe_key=f"{key}:{address.token}",
                    **_threaded(address.where),
                )
            )
    window = int(desk.zone.storm_window.total_seconds())
    bucket = int(desk.now.timestamp()) // window * window
    for token, level in sorted(storms):
        group = groups[(token, level)]
        first = min(alert.ledger_id for alert in group)
        rows.append(
            outbox_row(
                desk.now,
                template=f"alert.storm.{level}",
                params=_storm_params(desk, group),
                dedupe_key=f"storm:{level}:{bucket}:{first}:{token}",
                **where[token],
            )
        )
    return rows


def _threaded(where: dict[str, Any]) -> dict[str, Any]:
    """A message about one ticket goes under its card in a chat; a webhook has no thread."""
    return where if where.get("channel") == "webhook" else {**where, "link_role": "thread"}


def _alert_params(desk: Desk, ticket: Any, point: DueAlert) -> dict[str, Any]:
    owner = desk.person(ticket.owner_id)
    return {
        "number": ticket.number,
        "category": category_param(ticket.category_code),
        "deadline": text_key(f"deadline.{point.deadline}"),
        "due": time_param(point.due),
        "owner": owner.name if owner else text_key("owner.none"),
        "squad": _squad_name(desk, ticket.squad_id),
        "description": ticket.description[:200],
    }


def alert_rows(desk: Desk, ticket: Any, point: DueAlert) -> list[dict[str, Any]]:
    """The outbox rows of one alert told on its own, each with a dedupe key naming ticket,
    deadline, level, cycle and recipient."""
    return _messages(desk, [_Told(ticket, point, 0)])


STORM_SHOWN = 10  # a storm's digest names this many tickets; /my lists them all


def _storm_params(desk: Desk, group: list[_Told]) -> dict[str, Any]:
    """The digest of a storm: how many, and the oldest and most urgent tickets named."""
    shown = heapq.nsmallest(
        STORM_SHOWN,
        group,
        key=lambda a: (a.ticket.urgency != "urgent", a.point.due, a.ticket.number),
    )
    hidden = len(group) - len(shown)
    return {
        "count": len(group),
        "lines": lines([nested("alert.storm.line", _line_params(desk, a)) for a in shown]),
        "more": nested("alert.storm.more", {"count": hidden}) if hidden else "",
    }


def _line_params(desk: Desk, alert: _Told) -> dict[str, Any]:
    ticket = alert.ticket
    owner = desk.person(ticket.owner_id)
    return {
        "number": ticket.number,
        "category": category_param(ticket.category_code),
        "squad": _squad_name(desk, ticket.squad_id),
        "deadline": text_key(f"deadline.{alert.point.deadline}"),
        "due": time_param(alert.point.due),
        "owner": owner.name if owner else text_key("owner.none"),
    }


def _squad_name(desk: Desk, squad_id: int) -> str:
    squad = desk.session.get(Squad, squad_id)
    return squad.name if squad is not None else "-"


def _load_names(desk: Desk, told: list[_Told], storms: set[tuple[str, str]]) -> None:
    """The squads and owners the messages will name, into the session in one query each
    (kept in session.info: the identity map only keeps objects someone refers to)."""
    owners = {a.ticket.owner_id for a in told if a.ticket.owner_id is not None}
    if len(owners) > 1000 and storms:
        owners = set()  # a storm names only a few; they are read one by one
    held: list[Any] = list(desk.session.exec(select(Squad)).all())
    if owners:
        held += desk.session.exec(select(Person).where(col(Person.id).in_(list(owners)))).all()
    desk.session.info.setdefault("alert_names", []).extend(held)


def _recently_told(desk: Desk, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """How many alerts of each (recipient, level) were queued within the storm window before
    now: a message each, a digest its count. Read through the outbox's (state, next attempt)
    index: a row's next attempt is never before its creation."""
    since = desk.now - desk.zone.storm_window
    levels = {level for _, level in keys}
    templates = [f"alert.{lv}" for lv in levels] + [f"alert.storm.{lv}" for lv in levels]
    rows = desk.session.execute(
        select(OutboxMessage.template, OutboxMessage.dedupe_key, OutboxMessage.params).where(
            col(OutboxMessage.state).in_(("pending", "sent", "failed")),
            col(OutboxMessage.next_attempt_at) > since,
            col(OutboxMessage.created_at) > since,
            col(OutboxMessage.template).in_(templates),
        )
    ).all()
    counts: dict[tuple[str, str], int] = {}
    for template, dedupe_key, params in rows:
        token = (dedupe_key or "").rsplit(":", 1)[-1]
        level = template.rsplit(".", 1)[-1]
        if (token, level) not in keys:
            continue
        digest = template.count(".") == 2  # alert.storm.<level>, not alert.<level>
        many = json.loads(params).get("count", 1) if digest else 1
        counts[(token, level)] = counts.get((token, level), 0) + int(many)
    return counts


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
