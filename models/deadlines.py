"""A ticket's deadlines and its next alert, recomputed from the ticket on every change.

Deadlines live on the ticket (indexed `next_alert_at`), never as one scheduler job per
ticket; the timer only needs the earliest `next_alert_at` in the table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from models.lifecycle import ACTIVE_STATES, State
from models.plumbing import AlertRecord
from models.sla.calendar import BusinessCalendar
from models.sla.policy import AlertKind, DeadlineKind, SlaTargets, alert_points
from models.ticket import Ticket

PLAN_TARGET = "plan_target"
AUTO_CLOSE = "auto_close"  # not an alert: the moment an unconfirmed resolution closes itself


@dataclass(frozen=True)
class DueAlert:
    deadline: str  # response | handling | plan | plan_target
    level: AlertKind
    at: datetime
    due: datetime


def pending_points(
    ticket: Ticket,
    targets: SlaTargets,
    calendar: BusinessCalendar,
    auto_close_after: timedelta | None = None,
) -> list[DueAlert]:
    """Every alert the ticket's running clocks can still raise in this cycle; for a resolved
    ticket, the moment it closes itself, so one timer serves both."""
    if ticket.state == State.RESOLVED and ticket.resolved_at and auto_close_after is not None:
        at = ticket.resolved_at + auto_close_after
        return [DueAlert(AUTO_CLOSE, AlertKind.BREACH, at, at)]
    if ticket.state not in ACTIVE_STATES:
        return []
    points: list[DueAlert] = []
    filed = ticket.created_at
    if ticket.first_response_at is None and ticket.response_due is not None:
        for p in alert_points(DeadlineKind.RESPONSE, filed, ticket.response_due, targets, calendar):
            points.append(DueAlert(p.kind.value, p.level, p.at, p.due))
    running = ticket.state != State.WAITING
    if running and ticket.handling_due is not None:
        start = ticket.handling_started or filed
        for p in alert_points(DeadlineKind.HANDLING, start, ticket.handling_due, targets, calendar):
            points.append(DueAlert(p.kind.value, p.level, p.at, p.due))
    if ticket.plan_required and ticket.plan_target is None and ticket.plan_due is not None:
        for p in alert_points(DeadlineKind.PLAN, filed, ticket.plan_due, targets, calendar):
            points.append(DueAlert(p.kind.value, p.level, p.at, p.due))
    if ticket.plan_target is not None and ticket.plan_due is not None:
        for p in alert_points(
            DeadlineKind.PLAN, ticket.plan_due, ticket.plan_target, targets, calendar
        ):
            points.append(DueAlert(PLAN_TARGET, p.level, p.at, p.due))
    return points


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
) -> datetime | None:
    fired = fired_keys(session, ticket) if ticket.id is not None else set()
    points = pending_points(ticket, targets, calendar, auto_close_after)
    ticket.next_alert_at = earliest(points, fired)
    return ticket.next_alert_at
