"""The stretches of time the figures are counted over: a day, a week, a month, always in the
zone's own time, so a ticket filed at 00:30 on the 1st in Shanghai (16:30 UTC the day
before) belongs to the new month. Each period is a half-open span [start, end) of UTC
instants, which is what the database compares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["Period", "PeriodError", "day_period", "month_period", "parse_period", "week_period"]

MONTH = re.compile(r"(\d{4})-(\d{1,2})")
WORDS = {
    "today": "day",
    "今天": "day",
    "今日": "day",
    "week": "week",
    "本周": "week",
    "month": "month",
    "本月": "month",
}


class PeriodError(ValueError):
    """What was asked for is not a period: the user is shown the command's usage."""


@dataclass(frozen=True)
class Period:
    kind: str  # "day" | "week" | "month"
    first_day: date  # in the zone's time
    days: int
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return _midnight(self.first_day, self.tz)

    @property
    def end(self) -> datetime:
        return _midnight(self.first_day + timedelta(days=self.days), self.tz)

    @property
    def label(self) -> str:
        """A name that sorts and reads the same in both languages: 2026-11, 2026-11-05,
        2026-W45."""
        if self.kind == "month":
            return f"{self.first_day:%Y-%m}"
        if self.kind == "week":
            year, week, _ = self.first_day.isocalendar()
            return f"{year}-W{week:02d}"
        return self.first_day.isoformat()

    def day_starts(self) -> list[datetime]:
        """The UTC instant each local day starts, and the period's end: days + 1 values."""
        days = range(self.days + 1)
        return [_midnight(self.first_day + timedelta(days=n), self.tz) for n in days]

    def dates(self) -> list[date]:
        return [self.first_day + timedelta(days=n) for n in range(self.days)]

    def previous(self) -> Period:
        """The period of the same kind just before this one."""
        if self.kind == "month":
            last = self.first_day - timedelta(days=1)
            return month_period(last.year, last.month, self.tz)
        return Period(self.kind, self.first_day - timedelta(days=self.days), self.days, self.tz)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def month_period(year: int, month: int, tz: ZoneInfo) -> Period:
    if not 1 <= month <= 12 or not 2000 <= year <= 2999:
        raise PeriodError(f"{year}-{month:02d} is not a month")
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return Period("month", first, (following - first).days, tz)


def week_period(day: date, tz: ZoneInfo) -> Period:
    """The week (Monday to Sunday, as Chinese offices count it) holding this day."""
    return Period("week", day - timedelta(days=day.weekday()), 7, tz)


def day_period(day: date, tz: ZoneInfo) -> Period:
    return Period("day", day, 1, tz)


def parse_period(text: str | None, now: datetime, tz: ZoneInfo, default: str = "month") -> Period:
    """today | week | month (this one, in the zone's time) | YYYY-MM; nothing: `default`."""
    word = (text or "").strip().lower() or default
    today = now.astimezone(tz).date()
    kind = WORDS.get(word)
    if kind == "day":
        return day_period(today, tz)
    if kind == "week":
        return week_period(today, tz)
    if kind == "month":
        return month_period(today.year, today.month, tz)
    return parse_month(word, tz)


def parse_month(text: str | None, tz: ZoneInfo) -> Period:
    match = MONTH.fullmatch((text or "").strip())
    if match is None:
        raise PeriodError(f"{text!r} is not today, week, month or YYYY-MM")
    return month_period(int(match.group(1)), int(match.group(2)), tz)
