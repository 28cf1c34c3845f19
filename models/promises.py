"""When a promise counts as kept: the one definition of "on time" that every figure, the
overdue list and the ledger use (README, "On time").

A promise is kept when the thing promised happened no later than the deadline in force at
that moment. The deadline in force already carries what the squad may legitimately count
on: time spent waiting on the enterprise (the handling clock is paused, and resuming moves
the deadline by the time that stood still) and approved extensions (the deadline moves by
the time granted). A deadline that passed with the thing still undone is missed; a deadline
still running, or a promise that does not apply, counts neither way.

The three promises, as (what is done, the deadline it is measured against):

    reply     first_response_at   response_due
    handling  resolved_at         the handling deadline in force, or the plan's target
                                  when a plan replaced it (`resolve_due` once resolved)
    plan      plan_agreed_at      the plan deadline in force (`plan_agreed_due` once agreed)

The rules themselves are models/promise_rules.py, over a row's own columns; the database
keeps what they say of each ticket as its columns `<promise>_kept` (the verdict once done)
and `<promise>_pending_due` (the deadline in force while not done). `verdicts` judges those
at a moment, as SQL, so the database does the counting. `due_at_resolution` is the rule in
Python for the moment a ticket is resolved: a ticket resolved while paused is judged by the
deadline its time left would give, so the paused clock keeps counting as the squad
intended.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from models.db import UtcDateTime
from models.lifecycle import State
from models.promise_rules import KEPT, MISSED, PROMISES
from models.sla.calendar import BusinessCalendar
from models.sla.policy import due_after_resume
from models.ticket import Ticket


def at(moment: datetime, name: str = "now") -> ColumnElement[datetime]:
    """A moment as a SQL parameter, stored the way ticket times are (naive UTC)."""
    return bindparam(name, moment, type_=UtcDateTime(), unique=True)


def kept(name: str) -> Any:
    """The ticket's column: this promise's verdict once done (1 kept, 0 missed), else NULL."""
    return col(getattr(Ticket, f"{name}_kept"))


def pending_due(name: str) -> Any:
    """The ticket's column: while this promise is not done, the deadline in force."""
    return col(getattr(Ticket, f"{name}_pending_due"))


def missed_by(name: str, now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """Not done, and the deadline in force has passed."""
    missed: ColumnElement[bool] = pending_due(name) < now
    return missed


def decided(name: str, now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """Kept or missed by `now`: done against a deadline, or not done and past it."""
    return or_(kept(name).is_not(None), missed_by(name, now))


def verdict(name: str, now: ColumnElement[datetime]) -> ColumnElement[int]:
    """1 kept, 0 missed (done late, or not done and the deadline has passed), NULL not
    decided (no deadline, or one still running)."""
    return func.coalesce(kept(name), case((missed_by(name, now), MISSED)))


def verdicts(now: datetime) -> dict[str, ColumnElement[int]]:
    """Each promise's verdict for one ticket row, by name."""
    moment = at(now)
    return {name: verdict(name, moment) for name in PROMISES}


def due_at_resolution(ticket: Ticket, now: datetime, calendar: BusinessCalendar) -> datetime | None:
    """The deadline in force when the squad resolves: the plan's target if one was agreed;
    the plan deadline if a plan was asked for and none agreed yet; while paused on the
    enterprise, the deadline the time left would give from now (an already-breached
    ticket that was paused keeps its passed deadline); otherwise the handling deadline."""
    if ticket.plan_target is not None:
        return ticket.plan_target
    if ticket.plan_required:
        return ticket.plan_due
    if ticket.state == State.WAITING and (ticket.handling_remaining_s or 0) > 0:
        left = timedelta(seconds=ticket.handling_remaining_s or 0)
        return due_after_resume(now, left, calendar)
    return ticket.handling_due


__all__ = [
    "KEPT",
    "MISSED",
    "PROMISES",
    "at",
    "decided",
    "due_at_resolution",
    "kept",
    "missed_by",
    "pending_due",
    "verdict",
    "verdicts",
]
