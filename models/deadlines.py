"""A ticket's deadlines and its next alert, recomputed from the ticket on every change.

Deadlines live on the ticket, its next alert time in `ticketalarm` (`Ticket.next_alert_at`),
never as one scheduler job per ticket; the timer only needs the earliest time there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from models.lifecycle import ACTIVE_STATES, State
from models.plumbing import AlertRecord
from models.sla.calendar import BusinessCalendar
from models.sla.policy import AlertKind, AlertTimes, DeadlineKind, SlaTargets, alert_points
from models.ticket import Ticket

PLAN_TARGET = "plan_target"
AUTO_CLOSE = "auto_close"  # not an alert: the moment an unconfirmed resolution closes itself


@dataclass(frozen=True)
class DueAlert:
    deadline: str  # response | handling | plan | plan_target
    level: AlertKind
    at: datetime
    due: datetime


# a running clock: (the deadline's name in the ledger, its kind, when it started, when due)
Clock = tuple[str, DeadlineKind, datetime, datetime]
# an alert point as plain values: (deadline, level, at, due)
PointTimes = tuple[str, AlertKind, datetime, datetime]


def pending_points(
    ticket: Ticket,
    targets: SlaTargets,
    calendar: BusinessCalendar,
    auto_close_after: timedelta | None = None,
) -> list[DueAlert]:
    """Every alert the ticket's running clocks can still raise in this cycle; for a resolved
    ticket, the moment it closes itself, so one timer serves both."""
    closes = closing_time(ticket, auto_close_after)
    if closes is not None:
        return [DueAlert(AUTO_CLOSE, AlertKind.BREACH, closes, closes)]
    return [
        DueAlert(name, p.level, p.at, p.due)
        for name, kind, start, due in running_clocks(ticket)
        for p in alert_points(kind, start, due, targets, calendar)
    ]


def pending_times(
    ticket: Any, times: AlertTimes, auto_close_after: timedelta | None = None
) -> list[PointTimes]:
    """`pending_points` of a row whose times are naive UTC, as plain tuples: what a catch-up
    works out for every due ticket (`times` is the ticket's policy and calendar)."""
    closes = closing_time(ticket, auto_close_after)
    if closes is not None:
        return [(AUTO_CLOSE, AlertKind.BREACH, closes, closes)]
    found: list[PointTimes] = []
    for clock in running_clocks(ticket):
        found += times(*clock)
    return found


# read once: a catch-up asks for them per ticket, and an enum's attribute costs a lookup
_RESOLVED, _WAITING = State.RESOLVED, State.WAITING
_RESPONSE, _HANDLING, _PLAN = DeadlineKind.RESPONSE, DeadlineKind.HANDLING, DeadlineKind.PLAN
_ACTIVE = frozenset(ACTIVE_STATES)


def closing_time(ticket: Any, auto_close_after: timedelta | None) -> datetime | None:
    """When a resolution nobody confirmed closes itself; None for any other ticket."""
    if ticket.state == _RESOLVED and ticket.resolved_at and auto_close_after is not None:
        closes: datetime = ticket.resolved_at + auto_close_after
        return closes
    return None


def running_clocks(ticket: Any) -> list[Clock]:
    """The clocks an open ticket runs in this cycle: the first reply until someone answers,
    handling unless it waits on the enterprise, the plan until one is recorded, then the
    plan's own target."""
    state = ticket.state
    if state not in _ACTIVE:
        return []
    clocks: list[Clock] = []
    filed = ticket.created_at
    if ticket.first_response_at is None and ticket.response_due is not None:
        clocks.append((_RESPONSE_NAME, _RESPONSE, filed, ticket.response_due))
    if state != _WAITING and ticket.handling_due is not None:
        start = ticket.handling_started or filed
        clocks.append((_HANDLING_NAME, _HANDLING, start, ticket.handling_due))
    plan_due, plan_target = ticket.plan_due, ticket.plan_target
    if plan_due is not None:
        if plan_target is not None:
            clocks.append((PLAN_TARGET, _PLAN, plan_due, plan_target))
        elif ticket.plan_required:
            clocks.append((_PLAN_NAME, _PLAN, filed, plan_due))
    return clocks


_RESPONSE_NAME, _HANDLING_NAME, _PLAN_NAME = _RESPONSE.value, _HANDLING.value, _PLAN.value


def fired_keys(session: Session, ticket: Ticket) -> set[tuple[str, str]]:
    rows = session.exec(
        select(AlertRecord.deadline, AlertRecord.level).where(
            AlertRecord.ticket_id == ticket.id, AlertRecord.cycle == ticket.cycle
        )
    ).all()
    return {(d, lv) for d, lv in rows}


def earliest(points: list[DueAlert], fired: set[tuple[str, str]]) -> datetime | None:
    return min((p.at for p in points if (p.deadline, p.level) not in fired), default=None)


def refresh_next_alert(
    session: Session,
    ticket: Ticket,
    targets: SlaTargets,
    calendar: BusinessCalendar,
    auto_close_after: timedelta | None = None,
    *,
    filed_now: bool = False,
) -> datetime | None:
    """The ticket's next alert time, from its running clocks and the alerts already fired
    in its cycle (`filed_now`: none can have been, nothing to read)."""
    fired = fired_keys(session, ticket) if ticket.id is not None and not filed_now else set()
    points = pending_points(ticket, targets, calendar, auto_close_after)
    ticket.next_alert_at = earliest(points, fired)
    return ticket.next_alert_at
