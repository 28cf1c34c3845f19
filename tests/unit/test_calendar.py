"""Business calendars against China's real 2025 and 2026 schedules."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from models.sla import calendar as calendar_module
from models.sla.calendar import (
    BusinessCalendar,
    RoundTheClock,
    WorkingHours,
    build_calendar,
    is_statutory_workday,
    statutory_data_covers,
)

SH = ZoneInfo("Asia/Shanghai")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


H = timedelta(hours=1)
M = timedelta(minutes=1)


@pytest.fixture
def office() -> WorkingHours:
    return WorkingHours(SH)


# --- the package's own data, so a wrong assumption about the schedule fails loudly -------


def test_package_data_for_2025_national_day_and_make_up_days() -> None:
    for offset in range(8):
        assert not chinese_calendar.is_workday(date(2025, 10, 1) + timedelta(days=offset))
    assert date(2025, 9, 28).weekday() == 6 and chinese_calendar.is_workday(date(2025, 9, 28))
    assert date(2025, 10, 11).weekday() == 5 and chinese_calendar.is_workday(date(2025, 10, 11))


def test_package_data_for_2026_spring_festival() -> None:
    for offset in range(9):  # 2026-02-15 (Sun) .. 2026-02-23 (Mon)
        day = date(2026, 2, 15) + timedelta(days=offset)
        assert chinese_calendar.is_holiday(day), day
    assert date(2026, 2, 14).weekday() == 5 and chinese_calendar.is_workday(date(2026, 2, 14))
    assert date(2026, 2, 28).weekday() == 5 and chinese_calendar.is_workday(date(2026, 2, 28))
    assert chinese_calendar.is_workday(date(2026, 2, 24))


# --- WorkingHours.add ----------------------------------------------------------------------


def test_two_hours_filed_friday_afternoon_lands_next_working_morning(office: WorkingHours) -> None:
    # Friday 2025-11-14 16:30: one hour today, one hour from Monday 09:00.
    assert office.add(at(2025, 11, 14, 16, 30), 2 * H) == at(2025, 11, 17, 10, 0)


def test_five_hours_filed_friday_afternoon_crosses_monday_lunch(office: WorkingHours) -> None:
    # 1h Friday, 3h Monday morning, then the lunch gap, then 1h: 14:30.
    assert office.add(at(2025, 11, 14, 16, 30), 5 * H) == at(2025, 11, 17, 14, 30)


def test_two_hours_filed_friday_1630_with_day_ending_at_1700() -> None:
    # Friday 2025-11-14 16:30 with a day ending 17:00: 30m Friday, Monday 09:00-10:30.
    zone = WorkingHours(SH, periods=[(time(9), time(12)), (time(13, 30), time(17))])
    assert zone.add(at(2025, 11, 14, 16, 30), 2 * H) == at(2025, 11, 17, 10, 30)


def test_lunch_gap_is_skipped(office: WorkingHours) -> None:
    assert office.add(at(2025, 11, 12, 11, 0), 2 * H) == at(2025, 11, 12, 14, 30)


def test_deadline_reaching_end_of_period_stays_there(office: WorkingHours) -> None:
    assert office.add(at(2025, 11, 12, 10, 0), 2 * H) == at(2025, 11, 12, 12, 0)
    assert office.add(at(2025, 11, 12, 15, 30), 2 * H) == at(2025, 11, 12, 17, 30)


@pytest.mark.parametrize(
    ("filed", "expected"),
    [
        (at(2025, 11, 12, 12, 15), at(2025, 11, 12, 13, 40)),  # lunch
        (at(2025, 11, 12, 22, 0), at(2025, 11, 13, 9, 10)),  # night
        (at(2025, 11, 13, 6, 0), at(2025, 11, 13, 9, 10)),  # early morning
        (at(2025, 11, 15, 10, 0), at(2025, 11, 17, 9, 10)),  # ordinary Saturday
    ],
)
def test_counting_starts_at_next_period(
    office: WorkingHours, filed: datetime, expected: datetime
) -> None:
    assert office.add(filed, 10 * M) == expected


def test_national_day_2025_is_not_counted(office: WorkingHours) -> None:
    # Tuesday 2025-09-30 16:30: one hour that day, then Oct 1-8 off; Oct 9 (Thu) 10:00.
    assert office.add(at(2025, 9, 30, 16, 30), 2 * H) == at(2025, 10, 9, 10, 0)


def test_make_up_sunday_2025_09_28_is_counted(office: WorkingHours) -> None:
    assert office.add(at(2025, 9, 27, 10, 0), 2 * H) == at(2025, 9, 28, 11, 0)


def test_make_up_saturday_2025_10_11_is_counted(office: WorkingHours) -> None:
    assert office.add(at(2025, 10, 10, 17, 0), 2 * H) == at(2025, 10, 11, 10, 30)


def test_spring_festival_2026(office: WorkingHours) -> None:
    # Friday 2026-02-13 17:00 -> make-up Saturday 2026-02-14.
    assert office.add(at(2026, 2, 13, 17, 0), 2 * H) == at(2026, 2, 14, 10, 30)
    # Filed on the make-up Saturday evening -> whole festival skipped, Tuesday 2026-02-24.
    assert office.add(at(2026, 2, 14, 17, 0), 2 * H) == at(2026, 2, 24, 10, 30)
    # Filed in the middle of the festival.
    assert office.add(at(2026, 2, 17, 11, 0), 10 * M) == at(2026, 2, 24, 9, 10)
    assert office.elapsed(at(2026, 2, 14, 17, 30), at(2026, 2, 24, 9, 0)) == timedelta(0)


def test_zero_amount_is_start(office: WorkingHours) -> None:
    night = at(2025, 11, 12, 22, 0)
    assert office.add(night, timedelta(0)) == night


def test_negative_amount_rejected(office: WorkingHours) -> None:
    with pytest.raises(ValueError, match="negative"):
        office.add(at(2025, 11, 12, 10), -M)


def test_result_is_in_start_timezone(office: WorkingHours) -> None:
    filed_utc = at(2025, 11, 14, 16, 30).astimezone(UTC)
    due = office.add(filed_utc, 2 * H)
    assert due.tzinfo is UTC
    assert due == at(2025, 11, 17, 10, 0)
    assert due.hour == 2  # 10:00 in Shanghai


def test_extra_holidays_and_workdays_override_national_schedule() -> None:
    zone = WorkingHours(SH, extra_holidays={date(2025, 11, 17)}, extra_workdays={date(2025, 10, 8)})
    # The zone's own day off on Monday pushes the Friday deadline to Tuesday.
    assert zone.add(at(2025, 11, 14, 16, 30), 2 * H) == at(2025, 11, 18, 10, 0)
    # The zone works on the last day of the national holiday.
    assert zone.add(at(2025, 9, 30, 16, 30), 2 * H) == at(2025, 10, 8, 10, 0)


def test_conflicting_extra_days_rejected() -> None:
    with pytest.raises(ValueError, match="2025-10-08"):
        WorkingHours(SH, extra_holidays={date(2025, 10, 8)}, extra_workdays={date(2025, 10, 8)})


@pytest.mark.parametrize(
    "periods",
    [
        [],
        [(time(12), time(9))],
        [(time(9), time(12)), (time(11), time(17))],
        [(time(9, tzinfo=UTC), time(12))],
    ],
)
def test_bad_periods_rejected(periods: list[tuple[time, time]]) -> None:
    with pytest.raises(ValueError):
        WorkingHours(SH, periods=periods)


def test_unordered_periods_are_sorted() -> None:
    zone = WorkingHours(SH, periods=[(time(13, 30), time(17, 30)), (time(9), time(12))])
    assert zone.add(at(2025, 11, 12, 11, 0), 2 * H) == at(2025, 11, 12, 14, 30)


def test_no_working_day_in_a_year_fails_instead_of_looping() -> None:
    year = {date(2025, 1, 1) + timedelta(days=n) for n in range(800)}
    zone = WorkingHours(SH, extra_holidays=year)
    with pytest.raises(ValueError, match="no working day"):
        zone.add(at(2025, 1, 1, 10), H)


class CountingHours(WorkingHours):
    def __init__(self) -> None:
        super().__init__(SH)
        self.days_looked_at = 0

    def is_working_day(self, day: date) -> bool:
        self.days_looked_at += 1
        return super().is_working_day(day)


def test_thirty_days_are_added_by_day_not_by_minute() -> None:
    zone = CountingHours()
    start = at(2025, 9, 1, 9, 0)
    due = zone.add(start, timedelta(days=30))
    # 720 counted hours at 7 a day: 102 full working days, then 6 hours into the 103rd,
    # which chinese_calendar.get_workdays() says is 2026-01-28.
    assert zone.days_looked_at < 200
    assert due == at(2026, 1, 28, 16, 30)
    assert zone.elapsed(start, due) == timedelta(days=30)


# --- WorkingHours.elapsed ------------------------------------------------------------------


def test_elapsed_over_one_working_day(office: WorkingHours) -> None:
    assert office.elapsed(at(2025, 11, 12), at(2025, 11, 13)) == 7 * H


def test_elapsed_is_zero_when_end_not_after_start(office: WorkingHours) -> None:
    assert office.elapsed(at(2025, 11, 12, 11), at(2025, 11, 12, 10)) == timedelta(0)
    assert office.elapsed(at(2025, 11, 12, 11), at(2025, 11, 12, 11)) == timedelta(0)


def test_elapsed_over_national_day_week(office: WorkingHours) -> None:
    # Sun 9/28 (make-up) + Mon 9/29 + Tue 9/30, nothing Oct 1-8, Thu 10/9 + Fri 10/10,
    # Sat 10/11 (make-up): six working days.
    assert office.elapsed(at(2025, 9, 28), at(2025, 10, 12)) == 6 * 7 * H


def test_elapsed_is_inverse_of_add(office: WorkingHours) -> None:
    amounts = [M, 10 * M, 2 * H, 3 * H, 7 * H, timedelta(days=1), timedelta(days=5)]
    start = at(2025, 9, 25, 0, 0)
    checked = 0
    while start < at(2025, 10, 14):
        for amount in amounts:
            due = office.add(start, amount)
            assert office.elapsed(start, due) == amount, (start, amount, due)
            checked += 1
        start += 97 * M
    assert checked > 1000


def test_add_is_inverse_of_elapsed_inside_working_time(office: WorkingHours) -> None:
    start = at(2025, 9, 30, 16, 0)
    end = at(2025, 10, 11, 14, 5)
    assert office.add(start, office.elapsed(start, end)) == end


# --- fallback beyond the package's data ------------------------------------------------------


def test_years_without_data_fall_back_to_weekdays_and_warn_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(calendar_module, "_warned_years", set())
    is_statutory_workday.cache_clear()
    caplog.set_level(logging.WARNING, logger="models.sla.calendar")
    try:
        assert is_statutory_workday(date(2099, 1, 1))  # Thursday
        assert not is_statutory_workday(date(2099, 1, 3))  # Saturday
        zone = WorkingHours(SH)
        assert zone.add(datetime(2099, 1, 2, 16, 30, tzinfo=SH), 2 * H) == datetime(
            2099, 1, 5, 10, 0, tzinfo=SH
        )
        assert is_statutory_workday(date(2098, 6, 2))  # Monday
    finally:
        is_statutory_workday.cache_clear()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().count("2099") for r in warnings] == [1, 0]
    assert "2098" in warnings[1].getMessage()


# --- naive datetimes and RoundTheClock -------------------------------------------------------


@pytest.mark.parametrize("calendar", [RoundTheClock(), WorkingHours(SH)])
def test_naive_datetimes_rejected(calendar: BusinessCalendar) -> None:
    naive = datetime(2025, 11, 12, 10, 0)
    aware = at(2025, 11, 12, 10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.add(naive, H)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.elapsed(naive, aware)
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.elapsed(aware, naive)


def test_round_the_clock_is_plain_arithmetic() -> None:
    clock = RoundTheClock()
    filed = at(2025, 10, 1, 23, 55)  # a holiday night still counts
    assert clock.add(filed, 10 * M) == at(2025, 10, 2, 0, 5)
    assert clock.elapsed(filed, at(2025, 10, 2, 1, 55)) == 2 * H
    assert clock.elapsed(at(2025, 10, 2), filed) == timedelta(0)


def test_round_the_clock_uses_real_time_across_dst() -> None:
    new_york = ZoneInfo("America/New_York")
    before = datetime(2025, 3, 9, 1, 30, tzinfo=new_york)
    after = datetime(2025, 3, 9, 3, 30, tzinfo=new_york)  # clocks jumped 02:00 -> 03:00
    clock = RoundTheClock()
    assert clock.add(before, H) == after
    assert clock.add(before, H).tzinfo is new_york
    assert clock.elapsed(before, after) == H


def test_build_calendar() -> None:
    assert isinstance(build_calendar("round_the_clock"), RoundTheClock)
    zone = build_calendar(
        "working_hours",
        tz=SH,
        periods=[(time(8), time(12))],
        extra_holidays={date(2025, 11, 17)},
        extra_workdays=set(),
    )
    assert isinstance(zone, WorkingHours)
    assert zone.add(at(2025, 11, 14, 11, 0), 2 * H) == at(2025, 11, 18, 9, 0)
    assert isinstance(zone, BusinessCalendar)
    with pytest.raises(ValueError, match="office_hours"):
        build_calendar("office_hours")


def test_a_year_the_zone_file_supplies_counts_its_days_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(calendar_module, "_warned_years", set())
    is_statutory_workday.cache_clear()
    caplog.set_level(logging.WARNING, logger="models.sla.calendar")
    assert statutory_data_covers(date(2026, 12, 31))
    assert not statutory_data_covers(date(2097, 1, 1))
    zone = WorkingHours(
        SH,
        extra_holidays=[date(2097, 1, 1), date(2097, 1, 2)],  # Tuesday, Wednesday
        extra_workdays=[date(2097, 1, 5)],  # Saturday
    )
    assert zone.covers(date(2097, 6, 1)) and not zone.covers(date(2096, 6, 1))
    # Monday 31 December 16:30, 2 h: 1 h that day, then the holidays, the Thursday morning
    start = datetime(2096, 12, 31, 16, 30, tzinfo=SH)
    assert zone.add(start, 2 * H) == datetime(2097, 1, 3, 10, 0, tzinfo=SH)
    assert zone.is_working_day(date(2097, 1, 5)) and not zone.is_working_day(date(2097, 1, 6))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "2097" in w] == []
    assert len([w for w in warnings if "2096" in w]) == 1
    assert "extra_holidays" in warnings[0]
    is_statutory_workday.cache_clear()
