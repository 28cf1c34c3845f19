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

`verdict` is the rule itself, as a SQL expression, so the database does the counting.
`due_at_resolution` is the same rule in Python, for the moment a ticket is resolved: a
ticket resolved while paused is judged by the deadline its time left would give, so the
paused clock keeps counting as the squad intended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, case, null
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import col

from models.db import UtcDateTime
from models.lifecycle import State
from models.sla.calendar import BusinessCalendar
from models.sla.policy import due_after_resume
from models.ticket import Ticket

KEPT = 1
MISSED = 0

PROMISES = ("reply", "handling", "plan")


def at(moment: datetime, name: str = "now") -> ColumnElement[datetime]:
    """A moment as a SQL parameter, stored the way ticket times are (naive UTC)."""
    return bindparam(name, moment, type_=UtcDateTime(), unique=True)


def verdict(done: Any, due: Any, now: ColumnElement[datetime]) -> ColumnElement[int]:
    """The rule: 1 kept (done by the deadline), 0 missed (done after it, or not done and
    it has passed), NULL not decided (no deadline, or one still running)."""
    return case(
        (done <= due, KEPT),
        (done.is_not(None), case((due.is_not(None), MISSED), else_=null())),
        (due < now, MISSED),
        else_=null(),
    )


Branch = tuple[ColumnElement[bool], Any]  # (when this holds, this is the deadline in force)


@dataclass(frozen=True)
class Promise:
    """What is done, and the deadline in force: the first branch whose condition holds,
    or `otherwise` (None: no deadline)."""

    name: str
    done: Any
    branches: tuple[Branch, ...]
    otherwise: Any

    def due(self) -> Any:
        if not self.branches:
            return self.otherwise if self.otherwise is not None else null()
        return case(*self.branches, else_=self.otherwise)

    def verdict(self, now: ColumnElement[datetime]) -> ColumnElement[int]:
        """`verdict(done, due(), now)`, with the deadline's cases taken outside, so that
        each case compares plain columns: the same answers, and a database that repeats
        an expression each time it is named (SQLite does) reads each column once."""

        def judged(due: Any) -> Any:
            return null() if due is None else verdict(self.done, due, now)

        if not self.branches:
            return judged(self.otherwise)  # type: ignore[no-any-return]
        return case(
            *((when, judged(due)) for when, due in self.branches), else_=judged(self.otherwise)
        )


def promises() -> list[Promise]:
    t = Ticket
    reply = Promise("reply", col(t.first_response_at), (), col(t.response_due))
    handling = Promise(
        "handling",
        col(t.resolved_at),
        (
            (col(t.resolved_at).is_not(None), col(t.resolve_due)),
            (col(t.plan_target).is_not(None), col(t.plan_target)),
            # a plan is being agreed: its target will be the deadline; the plan's clock runs
            (col(t.plan_required).is_(True), None),
            # waiting on the enterprise with time left: the clock stands still
            ((col(t.state) == State.WAITING) & (col(t.handling_remaining_s) > 0), None),
        ),
        col(t.handling_due),
    )
    plan = Promise(
        "plan",
        col(t.plan_agreed_at),
        (
            (col(t.plan_agreed_at).is_not(None), col(t.plan_agreed_due)),
            (col(t.plan_required).is_(True), col(t.plan_due)),
        ),
        None,
    )
    return [reply, handling, plan]


def verdicts(now: datetime) -> dict[str, ColumnElement[int]]:
    """Each promise's verdict for one ticket row, by name."""
    moment = at(now)
    return {p.name: p.verdict(moment) for p in promises()}


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


# --- elapsed time, the same on both databases ---------------------------------------------


class seconds_between(FunctionElement[int]):
    """Whole seconds from `start` to `end`, rounded: SQLite counts in Julian days,
    PostgreSQL in epoch seconds; both give the same integer for the same two moments."""

    type = Integer()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    end, start = list(element.clauses)
    return (
        f"CAST(ROUND((julianday({compiler.process(end, **kw)}) - "
        f"julianday({compiler.process(start, **kw)})) * 86400.0) AS INTEGER)"
    )


@compiles(seconds_between)  # PostgreSQL's, and any other database's (and str(query))
@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    end, start = list(element.clauses)
    return (
        f"CAST(ROUND(EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - "
        f"{compiler.process(start, **kw)}))) AS BIGINT)"
    )


__all__ = [
    "KEPT",
    "MISSED",
    "PROMISES",
    "Promise",
    "at",
    "due_at_resolution",
    "promises",
    "seconds_between",
    "verdict",
    "verdicts",
]
