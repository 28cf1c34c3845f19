"""Business calendars: which stretches of wall-clock time count towards a deadline.

Squads promise "reply in 10 minutes, handle in 2 hours", but a zone may decide the clock
only runs in office hours on working days. Chinese working days are not simply Monday to
Friday: statutory holidays move around, and weekend days are swapped in as make-up working
days (调休), so we follow the `chinese_calendar` package's published schedule.

All arithmetic is done in UTC and converted back at the end, because Python's aware-datetime
arithmetic between two values with the same tzinfo is wall-clock arithmetic, which would be
wrong across a DST change in zones configured outside mainland China.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import chinese_calendar

__all__ = [
    "DEFAULT_PERIODS",
    "DEFAULT_TZ",
    "BusinessCalendar",
    "CalendarMode",
    "RoundTheClock",
    "WorkingHours",
    "build_calendar",
    "is_statutory_workday",
    "statutory_data_covers",
]

logger = logging.getLogger(__name__)

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
DEFAULT_PERIODS: tuple[tuple[time, time], ...] = (
    (time(9, 0), time(12, 0)),
    (time(13, 30), time(17, 30)),
)

_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
# A zone whose config leaves no working day for a whole year is misconfigured; fail instead
# of looping until the end of time.
_MAX_IDLE_DAYS = 366
_KEPT_DAYS = 4096  # days whose office periods a calendar keeps worked out (about 11 years)


@runtime_checkable
class BusinessCalendar(Protocol):
    """What the deadline policy needs from a calendar, whatever counts as working time."""

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The moment at which `amount` of counted time has passed since `start`."""
        ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Counted time between `start` and `end`; zero when `end` is not after `start`."""
        ...


class CalendarMode(StrEnum):
    ROUND_THE_CLOCK = "round_the_clock"
    WORKING_HOURS = "working_hours"


def _require_aware(value: datetime, name: str) -> None:
    # A naive datetime would be read in the server's local zone, which in production is
    # often UTC: every deadline would silently shift by 8 hours.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _require_not_negative(amount: timedelta) -> None:
    if amount < _ZERO:
        raise ValueError(f"amount of time must not be negative, got {amount}")


class RoundTheClock:
    """Every second counts: the default, since squads promise to be always online."""

    def add(self, start: datetime, amount: timedelta) -> datetime:
        _require_aware(start, "start")
        _require_not_negative(amount)
        return (start.astimezone(UTC) + amount).astimezone(start.tzinfo)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        _require_aware(start, "start")
        _require_aware(end, "end")
        return max(end.astimezone(UTC) - start.astimezone(UTC), _ZERO)

    def __repr__(self) -> str:
        return "RoundTheClock()"


_warned_years: set[int] = set()


@lru_cache(maxsize=64)
def statutory_data_covers(day: date) -> bool:
    """Whether `chinese_calendar` holds the State Council's schedule for `day`'s year."""
    try:
        chinese_calendar.is_workday(day)
    except NotImplementedError:
        return False
    return True


@lru_cache(maxsize=4096)
def is_statutory_workday(day: date) -> bool:
    """China's official answer, falling back to Monday-Friday beyond the package's data.

    The fallback keeps the bot running in January before the package is upgraded with the
    new year's State Council notice; the warning tells the operator to upgrade.
    """
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned_years:
            _warned_years.add(day.year)
            logger.warning(
                "chinese_calendar has no holiday data for %d; counting Monday-Friday as "
                "working days: list that year's holidays and make-up working days in the zone "
                "file's extra_holidays and extra_workdays, or upgrade chinesecalendar",
                day.year,
            )
        return day.weekday() < 5


class WorkingHours:
    """Counts only the configured office periods on working days.

    Iterates by day and period, never by minute, so a 30-day deadline costs a few dozen
    steps. The zone's own extra holidays and make-up workdays override the national ones.
    """

    def __init__(
        self,
        tz: ZoneInfo = DEFAULT_TZ,
        periods: Sequence[tuple[time, time]] = DEFAULT_PERIODS,
        extra_holidays: Collection[date] = frozenset(),
        extra_workdays: Collection[date] = frozenset(),
    ) -> None:
        self.tz = tz
        self.periods = _validated_periods(periods)
        self.extra_holidays = frozenset(extra_holidays)
        self.extra_workdays = frozenset(extra_workdays)
        # years beyond the package's data that the zone file supplies itself
        self._zone_years = frozenset(d.year for d in self.extra_holidays | self.extra_workdays)
        # each day's office periods in UTC, worked out once: a catch-up after downtime asks
        # for the same few days for thousands of tickets
        self._day_windows: dict[date, tuple[tuple[datetime, datetime], ...]] = {}
        clash = self.extra_holidays & self.extra_workdays
        if clash:
            days = ", ".join(sorted(d.isoformat() for d in clash))
            raise ValueError(f"dates both extra holiday and extra workday: {days}")

    def __repr__(self) -> str:
        periods = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self.periods)
        return f"WorkingHours(tz={self.tz}, periods=[{periods}])"

    def covers(self, day: date) -> bool:
        """Whether holidays are known for `day`: the package's data, or the zone file lists
        holidays or make-up working days in its year (the operator supplied the year)."""
        return statutory_data_covers(day) or day.year in self._zone_years

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        if day.year in self._zone_years and not statutory_data_covers(day):
            return day.weekday() < 5  # the zone file's list is that year's schedule
        return is_statutory_workday(day)

    def add(self, start: datetime, amount: timedelta) -> datetime:
        _require_aware(start, "start")
        _require_not_negative(amount)
        if amount == _ZERO:
            return start
        cursor = start.astimezone(UTC)
        remaining = amount
        day = start.astimezone(self.tz).date()
        idle_days = 0
        while True:
            if self.is_working_day(day):
                idle_days = 0
                for opens, closes in self._windows(day):
                    if closes <= cursor:
                        continue
                    begin = max(opens, cursor)
                    available = closes - begin
                    if remaining <= available:
                        return (begin + remaining).astimezone(start.tzinfo)
                    remaining -= available
            else:
                idle_days += 1
                if idle_days > _MAX_IDLE_DAYS:
                    raise ValueError(
                        f"no working day within {_MAX_IDLE_DAYS} days after {day.isoformat()}; "
                        "check the zone's extra holidays"
                    )
            day += _ONE_DAY

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        _require_aware(start, "start")
        _require_aware(end, "end")
        lower, upper = start.astimezone(UTC), end.astimezone(UTC)
        if upper <= lower:
            return _ZERO
        total = _ZERO
        day = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            if self.is_working_day(day):
                for opens, closes in self._windows(day):
                    overlap = min(closes, upper) - max(opens, lower)
                    if overlap > _ZERO:
                        total += overlap
            day += _ONE_DAY
        return total

    def _windows(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        found = self._day_windows.get(day)
        if found is None:
            if len(self._day_windows) >= _KEPT_DAYS:
                self._day_windows.clear()
            found = self._day_windows[day] = tuple(
                (
                    datetime.combine(day, opens, tzinfo=self.tz).astimezone(UTC),
                    datetime.combine(day, closes, tzinfo=self.tz).astimezone(UTC),
                )
                for opens, closes in self.periods
            )
        return found


def _validated_periods(periods: Sequence[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
    ordered = tuple(sorted((opens, closes) for opens, closes in periods))
    if not ordered:
        raise ValueError("working hours need at least one period")
    previous_close: time | None = None
    for opens, closes in ordered:
        if opens.tzinfo is not None or closes.tzinfo is not None:
            raise ValueError("working periods are local wall-clock times; drop the tzinfo")
        if opens >= closes:
            raise ValueError(f"working period {opens:%H:%M}-{closes:%H:%M} ends before it starts")
        if previous_close is not None and opens < previous_close:
            raise ValueError(f"working period starting {opens:%H:%M} overlaps the previous one")
        previous_close = closes
    return ordered


def build_calendar(
    mode: str,
    tz: ZoneInfo = DEFAULT_TZ,
    periods: Sequence[tuple[time, time]] | None = None,
    extra_holidays: Collection[date] = frozenset(),
    extra_workdays: Collection[date] = frozenset(),
) -> BusinessCalendar:
    """Turn the zone's config into a calendar; unknown modes fail at load time."""
    try:
        chosen = CalendarMode(mode)
    except ValueError:
        known = ", ".join(m.value for m in CalendarMode)
        raise ValueError(f"unknown calendar mode {mode!r}; expected one of: {known}") from None
    if chosen is CalendarMode.ROUND_THE_CLOCK:
        return RoundTheClock()
    return WorkingHours(
        tz=tz,
        periods=DEFAULT_PERIODS if periods is None else periods,
        extra_holidays=extra_holidays,
        extra_workdays=extra_workdays,
    )
