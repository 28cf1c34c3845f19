"""The deadline policy: the one place that says what a deadline is.

Everything here is pure: the ticket service decides *when* to call these functions (on
filing, pausing, resuming, approving an extension) and stores the results on the ticket,
so deadlines can be recomputed after any change and tested without a database or a bot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from models.sla.calendar import BusinessCalendar, RoundTheClock

__all__ = [
    "DEFAULT_TARGETS",
    "AlertKind",
    "AlertPoint",
    "AlertTimes",
    "DeadlineKind",
    "Deadlines",
    "SlaTargets",
    "alert_points",
    "due_after_resume",
    "extended",
    "initial_deadlines",
    "plan_deadline",
    "remaining_at_pause",
    "resolve_targets",
    "warning_at",
]

_ZERO = timedelta(0)


@dataclass(frozen=True)
class SlaTargets:
    """How much counted time a squad has for each promise, and when to nudge and chase.

    Validated on construction so a bad zone config fails at load time, not at 3 a.m. when
    the first alert would have been computed.
    """

    response: timedelta
    handling: timedelta
    plan: timedelta
    warn_ratio: float = 0.8
    supervision_after: timedelta = timedelta(hours=1)
    clock: str | None = None  # "round_the_clock" | "working_hours"; None: the zone's own

    def __post_init__(self) -> None:
        if self.clock not in (None, "round_the_clock", "working_hours"):
            raise ValueError(f"unknown clock mode {self.clock!r}")
        for name in ("response", "handling", "plan", "supervision_after"):
            value: timedelta = getattr(self, name)
            if value <= _ZERO:
                raise ValueError(f"SLA target {name} must be positive, got {value}")
        if not 0 < self.warn_ratio < 1:
            raise ValueError(f"warn_ratio must be between 0 and 1, got {self.warn_ratio}")


# The zone's published promise: 10分钟回复、2小时处理、1天内敲定推进计划.
DEFAULT_TARGETS = SlaTargets(
    response=timedelta(minutes=10),
    handling=timedelta(hours=2),
    plan=timedelta(days=1),
)


@dataclass(frozen=True)
class Deadlines:
    response_due: datetime | None
    handling_due: datetime | None
    plan_due: datetime | None


class AlertKind(StrEnum):
    WARNING = "warning"
    BREACH = "breach"
    SUPERVISION = "supervision"


class DeadlineKind(StrEnum):
    RESPONSE = "response"
    HANDLING = "handling"
    PLAN = "plan"


@dataclass(frozen=True)
class AlertPoint:
    kind: DeadlineKind
    level: AlertKind
    at: datetime
    due: datetime


def initial_deadlines(
    filed_at: datetime, targets: SlaTargets, calendar: BusinessCalendar
) -> Deadlines:
    """Both clocks start when the enterprise files; the plan clock only starts when a
    ticket turns out to need one, so it is left unset here."""
    return Deadlines(
        response_due=calendar.add(filed_at, targets.response),
        handling_due=calendar.add(filed_at, targets.handling),
        plan_due=None,
    )


def plan_deadline(filed_at: datetime, targets: SlaTargets, calendar: BusinessCalendar) -> datetime:
    """Counted from filing, not from when a plan was asked for: the promise to the
    enterprise is "a plan within a day of reporting", not a day after the squad noticed."""
    return calendar.add(filed_at, targets.plan)


def warning_at(
    start: datetime, due: datetime, targets: SlaTargets, calendar: BusinessCalendar
) -> datetime:
    """Measured on counted time, so a deadline spanning a weekend warns on Monday morning
    rather than on Saturday when nobody can act."""
    total = calendar.elapsed(start, due)
    return calendar.add(start, total * targets.warn_ratio)


def remaining_at_pause(now: datetime, due: datetime, calendar: BusinessCalendar) -> timedelta:
    """Counted time left when a ticket waits on the enterprise; never negative, because an
    already-breached ticket that is paused must not gain time back."""
    return calendar.elapsed(now, due)


def due_after_resume(now: datetime, remaining: timedelta, calendar: BusinessCalendar) -> datetime:
    return calendar.add(now, remaining)


def extended(due: datetime, extra: timedelta, calendar: BusinessCalendar) -> datetime:
    """An approved extension (延期) adds counted time to the old deadline, not to now, so
    approving late does not hand out more time than the manager granted."""
    if extra <= _ZERO:
        raise ValueError(f"an extension must be positive, got {extra}")
    return calendar.add(due, extra)


_SUPERVISED = frozenset({DeadlineKind.HANDLING, DeadlineKind.PLAN})


def alert_points(
    kind: DeadlineKind,
    start: datetime,
    due: datetime,
    targets: SlaTargets,
    calendar: BusinessCalendar,
) -> list[AlertPoint]:
    """The alerts one deadline should raise, in time order.

    A missed first reply is a lead's matter; only handling and plan breaches go on to a
    formal supervision notice (督办). Supervision waits `supervision_after` of counted time,
    so the chase lands when the office can act on it. A deadline already due at `start`
    (e.g. restored after a long outage) gets no warning, only its breach.
    """
    points: list[AlertPoint] = []
    if calendar.elapsed(start, due) > _ZERO:
        points.append(
            AlertPoint(kind, AlertKind.WARNING, warning_at(start, due, targets, calendar), due)
        )
    points.append(AlertPoint(kind, AlertKind.BREACH, due, due))
    if kind in _SUPERVISED:
        supervise_at = calendar.add(due, targets.supervision_after)
        points.append(AlertPoint(kind, AlertKind.SUPERVISION, supervise_at, due))
    return points


class AlertTimes:
    """`alert_points` of one policy and calendar as plain (deadline, level, at, due) tuples on
    naive UTC times, for a catch-up over thousands of tickets. Round the clock it is the same
    sum done directly (start + counted time x warn_ratio, due, due + supervision_after) with
    no calendar call and no object per point; any other calendar goes through
    `alert_points` itself."""

    def __init__(self, targets: SlaTargets, calendar: BusinessCalendar) -> None:
        self.targets = targets
        self.calendar = calendar
        self._direct = type(calendar) is RoundTheClock
        self._ratio = targets.warn_ratio
        self._supervise = targets.supervision_after
        # counted time to the warning, by the deadline's length: tickets of one policy
        # mostly share a few lengths, and the product is exact (microseconds, half to even)
        self._warn_after: dict[timedelta, timedelta] = {}

    def __call__(
        self, deadline: str, kind: DeadlineKind, start: datetime, due: datetime
    ) -> list[tuple[str, AlertKind, datetime, datetime]]:
        """The points of the clock named `deadline` (its name in the ledger)."""
        if not self._direct:
            return [
                (deadline, p.level, _naive(p.at), _naive(p.due))
                for p in alert_points(
                    kind,
                    start.replace(tzinfo=UTC),
                    due.replace(tzinfo=UTC),
                    self.targets,
                    self.calendar,
                )
            ]
        if due > start:
            length = due - start
            warn_after = self._warn_after.get(length)
            if warn_after is None:
                if len(self._warn_after) >= _KEPT_LENGTHS:
                    self._warn_after.clear()
                warn_after = self._warn_after[length] = length * self._ratio
            found = [(deadline, _WARNING, start + warn_after, due), (deadline, _BREACH, due, due)]
        else:
            found = [(deadline, _BREACH, due, due)]
        if kind in _SUPERVISED:
            found.append((deadline, _SUPERVISION, due + self._supervise, due))
        return found


# read once: `AlertTimes` names them per ticket, and an enum's attribute costs a lookup
_WARNING, _BREACH, _SUPERVISION = AlertKind.WARNING, AlertKind.BREACH, AlertKind.SUPERVISION
_KEPT_LENGTHS = 4096


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def resolve_targets(
    table: Mapping[tuple[str | None, str | None], SlaTargets], category: str, urgency: str
) -> SlaTargets:
    """Most specific entry wins: (category, urgency) > (category, any) > (any, urgency) >
    default. A category rule beats an urgency rule because a category like water outage
    (停水) carries its own physical urgency that a generic "urgent" rule does not know."""
    if (None, None) not in table:
        raise ValueError("SLA table needs a default entry for (None, None)")
    for key in ((category, urgency), (category, None), (None, urgency)):
        found = table.get(key)
        if found is not None:
            return found
    return table[(None, None)]
