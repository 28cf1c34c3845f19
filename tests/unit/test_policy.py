"""The deadline policy and the duration syntax its config is written in."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.sla.calendar import RoundTheClock, WorkingHours
from models.sla.durations import format_duration, parse_duration
from models.sla.policy import (
    DEFAULT_TARGETS,
    AlertKind,
    AlertPoint,
    DeadlineKind,
    Deadlines,
    SlaTargets,
    alert_points,
    due_after_resume,
    extended,
    initial_deadlines,
    plan_deadline,
    remaining_at_pause,
    resolve_targets,
    warning_at,
)

SH = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
M = timedelta(minutes=1)
ALWAYS = RoundTheClock()
OFFICE = WorkingHours(SH)

WATER_URGENT = SlaTargets(response=5 * M, handling=H, plan=timedelta(hours=4))


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", 10 * M),
        ("2h", 2 * H),
        ("1d", timedelta(days=1)),
        ("1h30m", 90 * M),
        ("1d 2h", timedelta(days=1, hours=2)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 2H ", 2 * H),
        ("600", 10 * M),
        ("1 h 30 m", 90 * M),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "0", "0m", "0h0m", "-5m", "-5", "abc", "2x", "h", "1.5h", "30m1h", "1h1h", "2h!"],
)
def test_parse_duration_rejects_bad_text_and_names_it(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (90 * M, "1h30m"),
        (timedelta(days=1, hours=2), "1d2h"),
        (timedelta(seconds=90), "1m30s"),
        (10 * M, "10m"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


def test_format_then_parse_round_trips() -> None:
    for seconds in (1, 59, 61, 3_600, 5_400, 86_399, 86_400, 93_784, 10 * 86_400 + 7):
        duration = timedelta(seconds=seconds)
        assert parse_duration(format_duration(duration)) == duration


def test_format_duration_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(-M)


# --- targets -----------------------------------------------------------------------------------


def test_default_targets_are_the_published_promise() -> None:
    assert DEFAULT_TARGETS.response == 10 * M
    assert DEFAULT_TARGETS.handling == 2 * H
    assert DEFAULT_TARGETS.plan == timedelta(days=1)
    assert DEFAULT_TARGETS.warn_ratio == 0.8
    assert DEFAULT_TARGETS.supervision_after == H


@pytest.mark.parametrize(
    "changes",
    [
        {"response": timedelta(0)},
        {"handling": -H},
        {"plan": timedelta(0)},
        {"supervision_after": timedelta(0)},
        {"warn_ratio": 0.0},
        {"warn_ratio": 1.0},
        {"warn_ratio": 1.5},
    ],
)
def test_bad_targets_rejected(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {"response": 10 * M, "handling": 2 * H, "plan": 24 * H}
    fields.update(changes)
    with pytest.raises(ValueError):
        SlaTargets(**fields)  # type: ignore[arg-type]


# --- deadlines --------------------------------------------------------------------------------


def test_initial_deadlines_round_the_clock() -> None:
    filed = at(2025, 10, 3, 23, 0)  # a holiday night: squads are always online
    assert initial_deadlines(filed, DEFAULT_TARGETS, ALWAYS) == Deadlines(
        response_due=at(2025, 10, 3, 23, 10),
        handling_due=at(2025, 10, 4, 1, 0),
        plan_due=None,
    )


def test_initial_deadlines_in_working_hours() -> None:
    deadlines = initial_deadlines(at(2025, 11, 14, 16, 30), DEFAULT_TARGETS, OFFICE)
    assert deadlines.response_due == at(2025, 11, 14, 16, 40)
    assert deadlines.handling_due == at(2025, 11, 17, 10, 0)
    assert deadlines.plan_due is None


def test_urgent_water_outage_deadlines() -> None:
    filed = at(2025, 7, 12, 14, 0)  # a Saturday: water for concrete pouring can't wait
    deadlines = initial_deadlines(filed, WATER_URGENT, ALWAYS)
    assert deadlines.response_due == at(2025, 7, 12, 14, 5)
    assert deadlines.handling_due == at(2025, 7, 12, 15, 0)


def test_plan_deadline() -> None:
    filed = at(2025, 11, 12, 10, 0)
    assert plan_deadline(filed, DEFAULT_TARGETS, ALWAYS) == at(2025, 11, 13, 10, 0)
    one_office_day = SlaTargets(response=10 * M, handling=2 * H, plan=7 * H)
    assert plan_deadline(filed, one_office_day, OFFICE) == at(2025, 11, 13, 10, 0)
    # Over National Day 2025 a working-day plan waits for the holiday to end.
    assert plan_deadline(at(2025, 9, 30, 10, 0), one_office_day, OFFICE) == at(2025, 10, 9, 10, 0)


def test_warning_at_round_the_clock() -> None:
    start = at(2025, 11, 12, 10, 0)
    assert warning_at(start, at(2025, 11, 12, 12, 0), DEFAULT_TARGETS, ALWAYS) == at(
        2025, 11, 12, 11, 36
    )


def test_warning_at_counts_only_working_time() -> None:
    # 2h counted from Friday 17:00 to Monday 10:30; 80% is 96m: 30m Friday + 66m Monday.
    start, due = at(2025, 11, 14, 17, 0), at(2025, 11, 17, 10, 30)
    assert warning_at(start, due, DEFAULT_TARGETS, OFFICE) == at(2025, 11, 17, 10, 6)


def test_pause_and_resume_keep_the_counted_time_left() -> None:
    due = at(2025, 11, 17, 10, 0)
    paused = at(2025, 11, 14, 17, 0)
    left = remaining_at_pause(paused, due, OFFICE)
    assert left == 90 * M
    # Resumed Tuesday 11:00: one hour until lunch, 30 minutes after.
    assert due_after_resume(at(2025, 11, 18, 11, 0), left, OFFICE) == at(2025, 11, 18, 14, 0)


def test_pausing_after_breach_gives_no_time_back() -> None:
    assert remaining_at_pause(at(2025, 11, 12, 13), at(2025, 11, 12, 12), ALWAYS) == timedelta(0)
    resumed = at(2025, 11, 12, 15)
    assert due_after_resume(resumed, timedelta(0), ALWAYS) == resumed


def test_extension_is_added_to_old_deadline() -> None:
    due = at(2025, 11, 14, 17, 0)
    assert extended(due, 2 * H, ALWAYS) == at(2025, 11, 14, 19, 0)
    assert extended(due, 2 * H, OFFICE) == at(2025, 11, 17, 10, 30)
    with pytest.raises(ValueError):
        extended(due, timedelta(0), ALWAYS)


# --- alert points -------------------------------------------------------------------------------


def test_response_alerts_have_no_supervision() -> None:
    start, due = at(2025, 7, 12, 14, 0), at(2025, 7, 12, 14, 5)
    assert alert_points(DeadlineKind.RESPONSE, start, due, WATER_URGENT, ALWAYS) == [
        AlertPoint(DeadlineKind.RESPONSE, AlertKind.WARNING, at(2025, 7, 12, 14, 4), due),
        AlertPoint(DeadlineKind.RESPONSE, AlertKind.BREACH, due, due),
    ]


@pytest.mark.parametrize("kind", [DeadlineKind.HANDLING, DeadlineKind.PLAN])
def test_handling_and_plan_alerts_are_supervised(kind: DeadlineKind) -> None:
    start, due = at(2025, 7, 12, 14, 0), at(2025, 7, 12, 15, 0)
    points = alert_points(kind, start, due, WATER_URGENT, ALWAYS)
    assert [(p.level, p.at) for p in points] == [
        (AlertKind.WARNING, at(2025, 7, 12, 14, 48)),
        (AlertKind.BREACH, due),
        (AlertKind.SUPERVISION, at(2025, 7, 12, 16, 0)),
    ]
    assert all(p.kind is kind and p.due == due for p in points)


def test_supervision_waits_for_working_time() -> None:
    start, due = at(2025, 11, 14, 15, 30), at(2025, 11, 14, 17, 30)
    points = alert_points(DeadlineKind.HANDLING, start, due, DEFAULT_TARGETS, OFFICE)
    assert [p.at for p in points] == [
        at(2025, 11, 14, 17, 6),
        due,
        at(2025, 11, 17, 10, 0),  # Friday evening breach, chased Monday morning
    ]


def test_deadline_already_due_gets_no_warning() -> None:
    now = at(2025, 11, 12, 10, 0)
    overdue = at(2025, 11, 12, 9, 0)
    points = alert_points(DeadlineKind.RESPONSE, now, overdue, DEFAULT_TARGETS, ALWAYS)
    assert [p.level for p in points] == [AlertKind.BREACH]


# --- resolving targets -----------------------------------------------------------------------


TABLE: dict[tuple[str | None, str | None], SlaTargets] = {
    (None, None): DEFAULT_TARGETS,
    (None, "urgent"): SlaTargets(response=5 * M, handling=90 * M, plan=12 * H),
    ("water_outage", None): SlaTargets(response=10 * M, handling=90 * M, plan=12 * H),
    ("water_outage", "urgent"): WATER_URGENT,
}


@pytest.mark.parametrize(
    ("category", "urgency", "expected"),
    [
        ("water_outage", "urgent", WATER_URGENT),
        ("water_outage", "normal", TABLE[("water_outage", None)]),
        ("planning_permit", "urgent", TABLE[(None, "urgent")]),
        ("planning_permit", "normal", DEFAULT_TARGETS),
    ],
)
def test_most_specific_targets_win(category: str, urgency: str, expected: SlaTargets) -> None:
    assert resolve_targets(TABLE, category, urgency) == expected


def test_table_without_default_is_rejected() -> None:
    table = {key: value for key, value in TABLE.items() if key != (None, None)}
    with pytest.raises(ValueError, match="default"):
        resolve_targets(table, "water_outage", "urgent")
