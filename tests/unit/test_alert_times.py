"""The catch-up's arithmetic is the policy's: `AlertTimes` (round the clock done directly,
any other calendar through `alert_points`) gives exactly the points `alert_points` gives,
and `pending_times` on a row of naive UTC times exactly what `pending_points` gives on the
ticket, for every state, clock and plan, on round-the-clock and working-hours calendars
(holidays, make-up days, a zone's own days off). A calendar that has worked out a day's
office periods before answers as a fresh one does. Hypothesis with a fixed seed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from models.deadlines import AUTO_CLOSE, PLAN_TARGET, pending_points, pending_times
from models.lifecycle import State
from models.sla.calendar import BusinessCalendar, RoundTheClock, WorkingHours
from models.sla.policy import AlertKind, AlertTimes, DeadlineKind, SlaTargets, alert_points

SHANGHAI = ZoneInfo("Asia/Shanghai")
# the calendar's own windows are kept between examples, as a running zone keeps them
OFFICE = WorkingHours(SHANGHAI, extra_holidays={date(2026, 10, 13)})
LUNCHLESS = WorkingHours(ZoneInfo("Europe/Berlin"), periods=[(time(8, 0), time(16, 0))])
CALENDARS: list[BusinessCalendar] = [RoundTheClock(), OFFICE, LUNCHLESS]
# Golden Week, its make-up Saturday and a Berlin change of clocks lie in this stretch
FIRST = datetime(2026, 9, 20, tzinfo=UTC)
LAST = datetime(2026, 11, 10, tzinfo=UTC)
EXAMPLES = settings(max_examples=300, deadline=None)


def naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


moments = st.datetimes(min_value=FIRST.replace(tzinfo=None), max_value=LAST.replace(tzinfo=None))
spans = st.timedeltas(min_value=-timedelta(days=1), max_value=timedelta(days=12))
targets = st.builds(
    SlaTargets,
    response=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=2)),
    handling=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=2)),
    plan=st.timedeltas(min_value=timedelta(hours=1), max_value=timedelta(days=5)),
    warn_ratio=st.floats(min_value=0.01, max_value=0.99),
    supervision_after=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=1)),
)


@seed(20261203)
@EXAMPLES
@given(
    policy=targets,
    calendar=st.sampled_from(CALENDARS),
    kind=st.sampled_from(list(DeadlineKind)),
    start=moments,
    span=spans,
)
def test_alert_times_are_the_policys_alert_points(
    policy: SlaTargets,
    calendar: BusinessCalendar,
    kind: DeadlineKind,
    start: datetime,
    span: timedelta,
) -> None:
    due = start + span
    expected = [
        ("clock", p.level, naive(p.at), naive(p.due))
        for p in alert_points(
            kind, start.replace(tzinfo=UTC), due.replace(tzinfo=UTC), policy, calendar
        )
    ]
    times = AlertTimes(policy, calendar)
    assert times("clock", kind, start, due) == expected
    assert times("clock", kind, start, due) == expected  # and again, from what it kept


@seed(20261203)
@EXAMPLES
@given(day=st.dates(min_value=FIRST.date(), max_value=LAST.date()), hours=spans)
def test_a_calendar_that_kept_its_days_answers_as_a_fresh_one(day: date, hours: timedelta) -> None:
    fresh = WorkingHours(SHANGHAI, extra_holidays={date(2026, 10, 13)})
    start = datetime.combine(day, time(11, 7, 3, 120), tzinfo=SHANGHAI)
    amount = abs(hours)
    assert OFFICE.add(start, amount) == fresh.add(start, amount)
    assert OFFICE.elapsed(start, start + hours) == fresh.elapsed(start, start + hours)


def optional(strategy: st.SearchStrategy[datetime]) -> st.SearchStrategy[datetime | None]:
    return st.one_of(st.none(), strategy)


tickets = st.builds(
    SimpleNamespace,
    state=st.sampled_from([s.value for s in State]),
    created_at=moments,
    resolved_at=optional(moments),
    first_response_at=optional(moments),
    response_due=optional(moments),
    handling_due=optional(moments),
    handling_started=optional(moments),
    plan_required=st.booleans(),
    plan_due=optional(moments),
    plan_target=optional(moments),
)


def aware(ticket: SimpleNamespace) -> SimpleNamespace:
    """The same ticket as the ORM holds it: aware UTC times."""
    return SimpleNamespace(
        **{
            name: value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
            for name, value in vars(ticket).items()
        }
    )


@seed(20261203)
@EXAMPLES
@given(
    ticket=tickets,
    policy=targets,
    calendar=st.sampled_from(CALENDARS),
    auto_close=st.sampled_from([None, timedelta(days=3), timedelta(hours=5)]),
)
def test_pending_times_of_a_row_are_the_tickets_pending_points(
    ticket: SimpleNamespace,
    policy: SlaTargets,
    calendar: BusinessCalendar,
    auto_close: timedelta | None,
) -> None:
    expected = [
        (p.deadline, p.level, naive(p.at), naive(p.due))
        for p in pending_points(aware(ticket), policy, calendar, auto_close)  # type: ignore[arg-type]
    ]
    assert pending_times(ticket, AlertTimes(policy, calendar), auto_close) == expected


def test_the_clocks_a_ticket_runs_are_named_as_the_ledger_names_them() -> None:
    """The example the properties stand on: a claimed ticket with a recorded plan runs its
    first reply, its handling and its plan's target; a resolved one only closes itself."""
    filed = datetime(2026, 11, 23, 1, 0)
    ticket = SimpleNamespace(
        state=State.CLAIMED.value,
        created_at=filed,
        resolved_at=None,
        first_response_at=None,
        response_due=filed + timedelta(minutes=10),
        handling_due=filed + timedelta(hours=2),
        handling_started=None,
        plan_required=True,
        plan_due=filed + timedelta(days=1),
        plan_target=filed + timedelta(days=6),
    )
    policy = SlaTargets(timedelta(minutes=10), timedelta(hours=2), timedelta(days=1))
    found = pending_times(ticket, AlertTimes(policy, RoundTheClock()), timedelta(days=3))
    assert [(d, str(lv)) for d, lv, _, _ in found] == [
        ("response", "warning"),
        ("response", "breach"),
        ("handling", "warning"),
        ("handling", "breach"),
        ("handling", "supervision"),
        (PLAN_TARGET, "warning"),
        (PLAN_TARGET, "breach"),
        (PLAN_TARGET, "supervision"),
    ]
    assert found[5][2] == filed + timedelta(days=5)  # 80% of the five days to the target
    ticket.state, ticket.resolved_at = State.RESOLVED.value, filed + timedelta(hours=3)
    assert pending_times(ticket, AlertTimes(policy, RoundTheClock()), timedelta(days=3)) == [
        (
            AUTO_CLOSE,
            AlertKind.BREACH,
            filed + timedelta(days=3, hours=3),
            filed + timedelta(days=3, hours=3),
        )
    ]
