"""The managers' figures on a month worked out by hand (tests/figures_data.py describes each
ticket): counts, on-time rates with paused clocks, extensions, plans and rework, nearest-rank
percentiles, the alert ledger, a squad with no tickets, an empty month, and the month's
edges at midnight in Shanghai; the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from models.figures import Figures, Rate, category_mix, daily, stats
from models.percentiles import Spread
from models.periods import PeriodError, month_period, parse_period
from models.zone.load import load_and_apply
from tests.figures_data import HOUR, MIN, SH, Book, November, november, sh
from tests.harness import EXAMPLE_ZONE, zone_database

NOW = sh(12, 5, 12)  # the month is over; every deadline of November has passed
NOV = month_period(2026, 11, SH)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        pg: Engine = request.getfixturevalue("pg_engine")
        load_and_apply(pg, EXAMPLE_ZONE)
        yield pg
        return
    sqlite = zone_database(tmp_path)
    yield sqlite
    sqlite.dispose()


@pytest.fixture
def month(engine: Engine) -> tuple[Book, November]:
    book = Book(engine)
    return book, november(book)


def by_code(found: list[Figures]) -> dict[str, Figures]:
    return {f.code: f for f in found}


def session(engine: Engine):  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    return Session(engine)


def test_a_squad_s_month_by_hand(engine: Engine, month: tuple[Book, November]) -> None:
    with session(engine) as s:
        pv = by_code(stats(s, NOV, NOW).squads)["PV"]
    assert (pv.filed, pv.open, pv.resolved) == (7, 2, 6)
    assert pv.reply == Rate(5, 7)  # P2 and P7 answered after 10 minutes
    # P3 (paused) and P4 (extended) kept; P2, P5 (plan target passed), P6 (rework) missed
    assert pv.handling == Rate(4, 7)
    assert pv.plan == Rate(1, 1)
    # replies 60 120 180 300 300 900 900 s: rank ceil(7 * .5) = 4, ceil(7 * .9) = 7
    assert pv.first_response == Spread(300, 900, 7)
    # resolutions 1 h, 70 min, 3 h, 4 h, 5 h, 30 h: ranks 3 and 6
    assert pv.resolution == Spread(3 * 3600, 30 * 3600, 6)
    assert pv.alerts == {"warning": 1, "breach": 2, "supervision": 0}
    assert pv.rework == Rate(1, 6)
    assert (pv.rating_sum, pv.rating_count, pv.rating) == (14, 4, 3.5)


def test_the_other_squad_and_one_without_tickets(
    engine: Engine, month: tuple[Book, November]
) -> None:
    with session(engine) as s:
        found = by_code(stats(s, NOV, NOW).squads)
    hv = found["HV"]
    assert (hv.filed, hv.open, hv.resolved) == (4, 3, 1)
    assert hv.reply == Rate(3, 4)
    # H1 never claimed, H3 paused after its deadline: missed; H2 paused with time left
    assert hv.handling == Rate(1, 3)
    assert hv.plan == Rate(0, 0) and hv.plan.share is None
    assert hv.first_response == Spread(300, 480, 3)
    assert hv.resolution == Spread(3600, 3600, 1)
    # the auto-close row of H4 is not an alert
    assert hv.alerts == {"warning": 2, "breach": 2, "supervision": 1}
    assert hv.rework == Rate(0, 1)
    assert hv.rating == 5.0
    ev = found["EV"]
    assert ev == Figures(
        ev.squad_id,
        "EV",
        ev.name,
        alerts={"warning": 0, "breach": 0, "supervision": 0},
    )
    assert ev.rating is None and ev.reply.share is None
    # every squad of the zone is listed, with or without tickets
    assert set(found) == {"WINDOW", "PV", "HV", "EV", "H2", "ESS", "CHIP", "PORT"}


def test_the_zone_adds_up_and_ranks_its_own_percentiles(
    engine: Engine, month: tuple[Book, November]
) -> None:
    with session(engine) as s:
        zone = stats(s, NOV, NOW).total
    assert (zone.filed, zone.open, zone.resolved) == (11, 5, 7)
    assert (zone.reply, zone.handling, zone.plan) == (Rate(8, 11), Rate(5, 10), Rate(1, 1))
    # 60 120 180 300 300 300 300 480 900 900: ranks 5 and 9
    assert zone.first_response == Spread(300, 900, 10)
    # 1 h, 1 h, 70 min, 3 h, 4 h, 5 h, 30 h: ranks 4 and 7
    assert zone.resolution == Spread(3 * 3600, 30 * 3600, 7)
    assert zone.alerts == {"warning": 3, "breach": 4, "supervision": 1}
    assert zone.rework == Rate(1, 7)
    assert (zone.rating_sum, zone.rating_count) == (19, 5)


def test_a_lead_s_scope_is_their_squad(engine: Engine, month: tuple[Book, November]) -> None:
    book, _ = month
    with session(engine) as s:
        found = stats(s, NOV, NOW, {book.squads["HV"]})
    assert [f.code for f in found.squads] == ["HV"]
    assert found.total.filed == 4 and found.total.first_response == Spread(300, 480, 3)


def test_midnight_in_shanghai_decides_the_month(
    engine: Engine, month: tuple[Book, November]
) -> None:
    """O1 (23:59 on 31 Oct, Shanghai) is October's though it is 15:59 UTC; D1 (00:00 on
    1 Dec, Shanghai) is December's though it is still 30 Nov in UTC. P7 was filed in
    November and resolved in December: November counts it as filed and open at the
    month's end, December as resolved."""
    with session(engine) as s:
        october = by_code(stats(s, month_period(2026, 10, SH), NOW).squads)["PV"]
        december = by_code(stats(s, month_period(2026, 12, SH), NOW).squads)["PV"]
    assert (october.filed, october.resolved, october.open) == (1, 0, 1)
    assert (december.filed, december.resolved) == (1, 1)
    assert december.reply == Rate(0, 1)  # D1, unanswered
    # open at December's end (or now): P5 and D1
    assert december.open == 2


def test_an_empty_month(engine: Engine, month: tuple[Book, November]) -> None:
    with session(engine) as s:
        found = stats(s, month_period(2026, 9, SH), NOW)
    assert found.total.filed == 0 and found.total.resolved == 0 and found.total.open == 0
    assert found.total.reply.share is None and found.total.first_response == Spread()
    assert len(found.squads) == 8 and all(f.filed == 0 for f in found.squads)


def test_a_month_under_way_judges_only_what_is_due(engine: Engine) -> None:
    """A deadline still running counts neither way: B, filed at 11:00 and not answered,
    is undecided at 11:05, its reply missed at 11:12, its handling missed at 13:01."""
    book = Book(engine)
    book.ticket("PV", sh(11, 3, 10), first=5 * MIN, resolved=HOUR)
    book.ticket("PV", sh(11, 3, 11))
    seen = []
    for moment in (sh(11, 3, 11, 5), sh(11, 3, 11, 12), sh(11, 3, 13, 1)):
        with session(engine) as s:
            pv = by_code(stats(s, NOV, moment).squads)["PV"]
        seen.append((pv.reply, pv.handling, pv.open))
    assert seen == [
        (Rate(1, 1), Rate(1, 1), 1),
        (Rate(1, 2), Rate(1, 1), 1),
        (Rate(1, 2), Rate(1, 2), 1),
    ]


def test_daily_counts_use_the_local_day(engine: Engine, month: tuple[Book, November]) -> None:
    book, _ = month
    # 07:30 on 15 Nov in Shanghai is 23:30 on the 14th in UTC
    book.ticket("EV", sh(11, 15, 7, 30), first=5 * MIN, resolved=HOUR)
    with session(engine) as s:
        days = {d.day.day: d for d in daily(s, NOV, NOW)}
    assert len(days) == 30
    assert days[14].filed == 0 and days[15].filed == 1
    assert days[3].filed == 2 and days[3].reply == Rate(1, 2) and days[3].handling == Rate(1, 2)
    assert days[30].filed == 1  # P7; D1 is December's
    assert sum(d.filed for d in days.values()) == 12


def test_category_mix(engine: Engine, month: tuple[Book, November]) -> None:
    book, _ = month
    book.ticket("EV", sh(11, 16, 9), category="labour")
    book.ticket("EV", sh(11, 17, 9), category="labour")
    book.ticket("EV", sh(11, 18, 9), category="energy")
    with session(engine) as s:
        assert category_mix(s, NOV) == [("water", 11), ("labour", 2), ("energy", 1)]
        assert category_mix(s, NOV, {book.squads["EV"]}) == [("labour", 2), ("energy", 1)]


def test_periods_in_the_zone_s_time() -> None:
    now = sh(11, 4, 0, 30)  # Wednesday 4 Nov, 00:30 in Shanghai: 3 Nov in UTC
    assert parse_period("today", now, SH).first_day.isoformat() == "2026-11-04"
    week = parse_period("week", now, SH)
    assert (week.first_day.isoformat(), week.days, week.label) == ("2026-11-02", 7, "2026-W45")
    assert parse_period(None, now, SH).label == "2026-11"
    assert parse_period("本月", now, SH) == parse_period("month", now, SH)
    feb = parse_period("2028-02", now, SH)
    assert (feb.days, feb.start, feb.end) == (29, sh(2, 1, year=2028), sh(3, 1, year=2028))
    assert month_period(2026, 1, SH).previous().label == "2025-12"
    assert feb.start.utcoffset() == timedelta(0)
    for bad in ("2026-13", "yesterday", "2026/11", "11"):
        with pytest.raises(PeriodError):
            parse_period(bad, now, SH)
