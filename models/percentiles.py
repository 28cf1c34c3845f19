"""Median and 90th percentile of the times the figures measure, by nearest rank: the
smallest value with at least that share of the values at or below it, i.e. the value at
rank ceil(n * p / 100). PostgreSQL's percentile_disc picks the same value; SQLite has no
percentile function, so there the database sorts the seconds and the ranks are read by
index, for the whole and for each squad's share dealt out in order. Either way the database
does the sorting and only (squad, seconds) pairs or their percentiles come back, never
ticket rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlmodel import Session, col

from models.promises import seconds_between
from models.ticket import Ticket

PERCENTILES = (50, 90)


@dataclass(frozen=True)
class Spread:
    """Seconds: median and 90th percentile (nearest rank) of `count` values."""

    median: int | None = None
    p90: int | None = None
    count: int = 0


def nearest_rank(count: int, percent: int) -> int:
    """The 1-based rank of the nearest-rank percentile: ceil(count * p / 100), in integers
    (PostgreSQL's percentile_disc picks the same row)."""
    return (count * percent + 99) // 100


Spreads = dict[str, tuple[dict[int, Spread], Spread]]  # measure -> (per squad, over the scope)


def durations() -> dict[str, Any]:
    """The measured times, by name: from filing to what ends them."""
    return {
        "first_response": col(Ticket.first_response_at),
        "resolution": col(Ticket.resolved_at),
    }


def spreads(session: Session, where: tuple[Any, ...], counts: dict[str, dict[int, int]]) -> Spreads:
    """Median and p90 of each duration, per squad and over the scope. PostgreSQL computes
    them itself (percentile_disc over grouping sets, both durations in one pass). SQLite
    has no percentile function and its window functions sort the month twice per
    duration: it sorts a narrow column (squad, seconds) once per duration, and the ranks
    are picked as the sorted values stream past, knowing each squad's count (`counts`,
    from the cohort). No ticket row reaches Python either way."""
    seconds = {
        name: seconds_between(done, col(Ticket.created_at)) for name, done in durations().items()
    }
    if session.get_bind().dialect.name == "postgresql":
        return _spreads_in_postgresql(session, seconds, where)
    found: Spreads = {}
    connection = session.connection()
    for name, done in durations().items():
        d = seconds[name].label("d")
        query = (
            select(col(Ticket.squad_id), d)
            .where(*where, done.is_not(None))
            .order_by(d)  # by its label: the seconds are worked out once per ticket
        )
        # the driver's own tuples: two plain numbers a row need no result processing, and
        # a month of them is read at C speed
        rows = connection.execute(query).cursor.fetchall()
        found[name] = _pick_ranks(rows, counts.get(name, {}))
    return found


def _pick_ranks(rows: Any, counts: dict[int, int]) -> tuple[dict[int, Spread], Spread]:
    """From (squad, seconds) rows sorted by seconds: the whole's ranks are read by index,
    and each squad's values, dealt out in that order, are sorted runs read the same way.
    `counts` says which squads to report."""
    if not rows:
        return {}, Spread(count=0)
    runs: dict[int, list[Any]] = {sid: [] for sid, n in counts.items() if n}
    for sid, value in rows:
        run = runs.get(sid)
        if run is not None:
            run.append(value)
    values = [value for _sid, value in rows]
    return {sid: _spread_of(run) for sid, run in runs.items()}, _spread_of(values)


def _spread_of(ordered: Sequence[Any]) -> Spread:
    """Nearest-rank median and p90 of values already in order."""
    n = len(ordered)
    if not n:
        return Spread(count=0)
    median, p90 = (int(ordered[nearest_rank(n, p) - 1]) for p in PERCENTILES)
    return Spread(median, p90, n)


def _spreads_in_postgresql(
    session: Session, seconds: dict[str, Any], where: tuple[Any, ...]
) -> Spreads:
    inner = (
        select(col(Ticket.squad_id).label("squad_id"), *(d.label(n) for n, d in seconds.items()))
        .where(*where)
        .subquery()
    )
    c = inner.c
    columns = [
        expr
        for name in seconds
        for expr in (
            func.count(c[name]),
            *(func.percentile_disc(p / 100).within_group(c[name]) for p in PERCENTILES),
        )
    ]
    query = select(c.squad_id, func.grouping(c.squad_id), *columns).group_by(
        func.grouping_sets(tuple_(c.squad_id), tuple_())
    )
    found: Spreads = {name: ({}, Spread()) for name in seconds}
    for squad_id, whole, *values in session.execute(query):
        for index, name in enumerate(seconds):
            n, median, p90 = values[3 * index : 3 * index + 3]
            if not n:
                continue  # nothing measured (the grouping over everything has a row anyway)
            spread = Spread(int(median), int(p90), int(n))
            per = found[name][0]
            if whole:
                found[name] = (per, spread)
            else:
                per[int(squad_id)] = spread
    return found
