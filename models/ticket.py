"""Tickets and everything that hangs off them. History rows are append-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    column,
    event,
)
from sqlalchemy.orm import Mapper, object_session, relationship
from sqlmodel import Field, Relationship, SQLModel

from models.db import UtcDateTime
from models.elapsed import seconds_between
from models.lifecycle import State
from models.promise_rules import promises


def _ts(*, index: bool = False, nullable: bool = True) -> datetime | None:
    stamp: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), index=index, nullable=nullable)
    )
    return stamp


# What the figures count, worked out by the database from the row's own columns whenever the
# row changes (models/promise_rules.py): no code path can leave them stale, whoever writes
# the ticket. PostgreSQL stores them; SQLite computes them on reading, and keeps them in
# ix_ticket_figures, which is what the figures read.
_RULES = {p.name: p for p in promises()}
FIGURE_COLUMNS = (
    "first_response_s",
    "resolution_s",
    *(f"{name}_{part}" for name in _RULES for part in ("kept", "pending_due")),
)


def _computed(type_: Any, expression: Any) -> Any:
    computed: Any = Field(
        default=None, sa_column=Column(type_, Computed(expression, persisted=True))
    )
    return computed


def _since_filed(moment: str) -> Any:
    return _computed(BigInteger, seconds_between(column(moment), column("created_at")))


def _kept(name: str) -> Any:
    return _computed(Integer, _RULES[name].kept())


def _pending_due(name: str) -> Any:
    return _computed(UtcDateTime(), _RULES[name].pending_due())


class Ticket(SQLModel, table=True):
    __table_args__ = (
        Index("ix_ticket_squad_state", "squad_id", "state"),
        # the figures count resolutions in a period, and what was still open at its end,
        # per squad, from this index alone, each squad's in turn
        Index("ix_ticket_squad_resolved", "squad_id", "resolved_at", "created_at"),
        # the figures of a period, per squad, from this index alone: each squad's tickets in
        # filing order, so counting per squad needs no sort
        Index(
            "ix_ticket_figures", "squad_id", "created_at", *FIGURE_COLUMNS, "cycle", "rating", "id"
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=32)
    project_id: int | None = Field(default=None, foreign_key="project.id")
    squad_id: int = Field(foreign_key="squad.id")
    enterprise_id: int = Field(foreign_key="person.id", index=True)
    category_code: str
    urgency: str = "normal"
    description: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default=State.OPEN, index=True)  # moved only by lifecycle.move
    owner_id: int | None = Field(default=None, foreign_key="person.id")
    # a lead or manager who took the ticket on personally (领办): hears its alerts first
    led_by: int | None = Field(default=None, foreign_key="person.id")
    language: str = "zh-CN"
    cycle: int = 0
    # indexed for the figures: a period's tickets are those filed in it
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    first_response_at: datetime | None = _ts()
    response_due: datetime | None = _ts()
    handling_due: datetime | None = _ts()
    handling_started: datetime | None = _ts()
    plan_required: bool = False
    plan_due: datetime | None = _ts()
    plan_target: datetime | None = _ts()
    paused_at: datetime | None = _ts()
    handling_remaining_s: int | None = None
    resolved_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    rating: int | None = None
    # what a kept promise is measured against once it is kept (models/promises.py): the
    # deadline in force when the squad resolved, and when the progress plan was agreed
    resolve_due: datetime | None = _ts()
    plan_agreed_at: datetime | None = _ts()
    plan_agreed_due: datetime | None = _ts()
    # computed by the database (see FIGURE_COLUMNS): seconds from filing to the first reply
    # and to the resolution; each promise's verdict once kept or missed, and while not yet
    # done, the deadline in force
    first_response_s: int | None = _since_filed("first_response_at")
    resolution_s: int | None = _since_filed("resolved_at")
    reply_kept: int | None = _kept("reply")
    reply_pending_due: datetime | None = _pending_due("reply")
    handling_kept: int | None = _kept("handling")
    handling_pending_due: datetime | None = _pending_due("handling")
    plan_kept: int | None = _kept("plan")
    plan_pending_due: datetime | None = _pending_due("plan")
    # the ticket's next alert (models/deadlines.py), kept in a narrow table of its own and
    # loaded with the ticket, as a column would be
    alarm: TicketAlarm | None = Relationship(
        sa_relationship=relationship(
            "TicketAlarm", uselist=False, lazy="selectin", cascade="all, delete-orphan"
        )
    )

    @property
    def next_alert_at(self) -> datetime | None:
        """When the ticket's next alert falls due; None when it has none pending."""
        alarm = self.alarm
        return None if alarm is None else alarm.next_alert_at

    @next_alert_at.setter
    def next_alert_at(self, value: datetime | None) -> None:
        alarm = self.alarm
        if value is None:
            self.alarm = None  # its row goes (delete-orphan)
        elif alarm is None:
            self.alarm = TicketAlarm(next_alert_at=value)
        else:
            alarm.next_alert_at = value


class TicketAlarm(SQLModel, table=True):
    """A ticket's next alert time, while it has one: a row per armed ticket, indexed by the
    time, which is all the deadline timer reads. Its own table, not a column of the wide
    ticket row, so that rearming writes a narrow row: a catch-up after downtime rearms 100k
    tickets in one transaction."""

    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", primary_key=True)
    next_alert_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))


# the earliest alert time a session wrote, in its `info` under this key: the unit of work
# hands it to the deadline timer after the commit, so the timer knows of a nearer deadline
# without reading the table again (scheduler/deadline_timer.py)
EARLIEST_ARMED = "earliest_armed"


def earliest_armed(info: dict[str, Any]) -> datetime | None:
    """The earliest alert time written in the session whose `info` this is, if any."""
    value = info.get(EARLIEST_ARMED)
    return value if isinstance(value, datetime) else None


def _armed(_mapper: Mapper[Any], _connection: Any, alarm: TicketAlarm) -> None:
    session = object_session(alarm)
    value = alarm.next_alert_at
    if session is None or not isinstance(value, datetime):
        return
    known = earliest_armed(session.info)
    if known is None or value < known:
        session.info[EARLIEST_ARMED] = value


event.listen(TicketAlarm, "after_insert", _armed)
event.listen(TicketAlarm, "after_update", _armed)


class TicketEvent(SQLModel, table=True):
    """The history log: who did what, when, from which state. Never updated or deleted."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    actor_id: int | None = Field(default=None, foreign_key="person.id")
    action: str
    from_state: str | None = None
    to_state: str | None = None
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    draft_person_id: int | None = Field(default=None, index=True)
    event_id: int | None = Field(default=None, foreign_key="ticketevent.id")
    kind: str
    file_id: str | None = None
    file_unique_id: str | None = None
    file_name: str | None = None
    mime_type: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    local_path: str | None = None
    added_by: int | None = Field(default=None, foreign_key="person.id")
    added_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    # the process fetching its file, and until when unless renewed (models/leases.py)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class ProgressPlan(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    steps: str = Field(sa_column=Column(Text, nullable=False))
    target: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    recorded_by: int = Field(foreign_key="person.id")
    recorded_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Extension(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    deadline: str
    extra_s: int
    reason: str = Field(sa_column=Column(Text, nullable=False))
    requested_by: int = Field(foreign_key="person.id")
    requested_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = "pending"
    decided_by: int | None = Field(default=None, foreign_key="person.id")
    decided_at: datetime | None = _ts()


class MessageLink(SQLModel, table=True):
    """Which ticket a chat message belongs to, so replies to it find their thread."""

    __table_args__ = (UniqueConstraint("chat_id", "message_id"),)
    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    message_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    role: str = "thread"


class TicketCounter(SQLModel, table=True):
    prefix: str = Field(primary_key=True, max_length=8)
    period: str = Field(primary_key=True, max_length=4)
    last: int = 0


class Draft(SQLModel, table=True):
    """A ticket being filed, kept in the database so a restart mid-conversation loses nothing."""

    person_id: int = Field(primary_key=True, foreign_key="person.id")
    step: str
    category_code: str | None = None
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    urgency: str | None = None
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ButtonAction(SQLModel, table=True):
    """An opaque callback_data token: the press is looked up and re-checked, never trusted."""

    token: str = Field(primary_key=True, max_length=24)
    action: str
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    person_id: int | None = None
    arg: str | None = None
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
