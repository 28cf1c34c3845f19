"""Median and 90th percentile of the times the figures measure, by nearest rank: the
smallest value with at least that share of the values at or below it, i.e. the value at
rank ceil(n * p / 100). The seconds are the ticket's own columns (`first_response_s`,
`resolution_s`), read from the figures' index; no ticket row reaches Python either way.

PostgreSQL computes them itself: percentile_disc picks the same value, per squad and over
the scope in one grouped pass.

SQLite has no percentile function, and groups by sorting, so there the database counts
instead, in two passes:

1. how many values each squad has in each *bucket* of time (TIERS: ten seconds wide up to
   ten minutes, wider as the times grow, six hours beyond a week), so a squad has a few
   hundred buckets however many tickets it has. Each squad's values are counted by a
   SELECT of their own, all in one statement: sorting each squad's share apart costs
   SQLite about half of sorting the whole period at once. Adding the counts up in order
   tells in which bucket each rank falls, for each squad and for the whole scope, and its
   rank within the bucket;
2. how many values each squad has at each second, in those buckets only (for the scope's
   ranks, every squad's values in the scope's buckets).

The answer is exact, not an estimate: the second pass counts the very values the ranks
fall on.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, tuple_, union_all
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from models.ticket import Ticket

PERCENTILES = (50, 90)
# (below this many seconds, buckets this many seconds wide; each tier's span a multiple of
# its width); the last has no limit. Narrow enough that the second pass counts a few
# hundred seconds, few enough that the first returns a few hundred rows a squad.
TIERS: tuple[tuple[int | None, int], ...] = (
    (600, 10),  # ten seconds wide up to ten minutes
    (3600, 30),
    (4 * 3600, 120),
    (86400, 600),
    (7 * 86400, 3600),
    (None, 6 * 3600),  # six hours wide beyond a week
)
# SELECTs in one compound statement: well under SQLite's limits (500 SELECTs; 999 parameters
# in its oldest builds, and a part binds about 25)
PARTS_PER_STATEMENT = 32


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
Counts = dict[int, int]  # bucket, or second -> how many values


def durations() -> dict[str, Any]:
    """The measured times, by name: the ticket's seconds from filing to what ends them."""
    return {
        "first_response": col(Ticket.first_response_s),
        "resolution": col(Ticket.resolution_s),
    }


def spreads(session: Session, squads: Collection[int], filed: ColumnElement[bool]) -> Spreads:
    """Median and p90 of each duration, for each squad with values and over the scope:
    the tickets of `squads` for which `filed` holds."""
    if session.get_bind().dialect.name == "postgresql":
        return _by_percentile_disc(session, squads, filed)
    return _by_buckets(session, squads, filed)


# --- PostgreSQL ----------------------------------------------------------------------------


def _by_percentile_disc(
    session: Session, squads: Collection[int], filed: ColumnElement[bool]
) -> Spreads:
    squad = col(Ticket.squad_id)
    fractions = [p / 100 for p in PERCENTILES]
    columns = [
        expr
        for seconds in durations().values()
        for expr in (func.count(seconds), func.percentile_disc(fractions).within_group(seconds))
    ]
    query = (
        select(squad, func.grouping(squad), *columns)
        .where(squad.in_(list(squads)), filed)
        .group_by(func.grouping_sets(tuple_(squad), tuple_()))
    )
    found: Spreads = {name: ({}, Spread()) for name in durations()}
    for squad_id, whole, *values in session.execute(query):
        for index, name in enumerate(durations()):
            n, picked = values[2 * index : 2 * index + 2]
            if not n:
                continue  # nothing measured (the grouping over everything has a row anyway)
            spread = Spread(int(picked[0]), int(picked[1]), int(n))
            per = found[name][0]
            if whole:
                found[name] = (per, spread)
            else:
                per[int(squad_id)] = spread
    return found


# --- SQLite --------------------------------------------------------------------------------


def _numbered_tiers() -> list[tuple[int | None, int, int]]:
    """(limit, width, first bucket number) of each tier: its numbers follow on from the
    tier before's."""
    found = []
    first, start = 0, 0  # the tier's first bucket number, and the first second it holds
    for limit, width in TIERS:
        found.append((limit, width, first))
        if limit is not None:
            first, start = first + (limit - start) // width, limit
    return found


def bucket(seconds: Any) -> Any:
    """The bucket of a number of seconds, in the widths of TIERS; -1 for any time below
    nought (a clock set back between two moments). Integer division of non-negative
    numbers: the same on both databases."""
    whens: list[tuple[Any, Any]] = [(seconds < 0, -1)]
    start = 0
    beyond: Any = None
    for limit, width, first in _numbered_tiers():
        number = (seconds - start) // width + first
        if limit is None:
            beyond = number
        else:
            whens.append((seconds < limit, number))
            start = limit
    return case(*whens, else_=beyond)


def bounds(number: int) -> tuple[int | None, int | None]:
    """The seconds bucket `number` holds: [low, high), None for no bound."""
    if number < 0:
        return None, 0
    start = 0
    for limit, width, first in _numbered_tiers():
        if limit is None or number < first + (limit - start) // width:
            low = start + (number - first) * width
            return low, low + width
        start = limit
    raise AssertionError("the last tier has no limit")


@dataclass(frozen=True)
class _Rank:
    """Where one percentile of one measure falls, for a squad or (squad None) the scope."""

    measure: str
    squad: int | None
    percent: int
    bucket: int
    within: int  # the 1-based rank among the values in the bucket


def _by_buckets(session: Session, squads: Collection[int], filed: ColumnElement[bool]) -> Spreads:
    measures = durations()
    histograms = _counted(session, squads, filed, measures)
    ranks: list[_Rank] = []
    totals: dict[tuple[str, int | None], int] = {}
    for name in measures:
        per_squad = histograms.get(name, {})
        for sid, counts in [*per_squad.items(), (None, _merged(per_squad.values()))]:
            total = totals[name, sid] = sum(counts.values())
            for percent in PERCENTILES if total else ():
                key, within = _locate(counts, nearest_rank(total, percent))
                ranks.append(_Rank(name, sid, percent, key, within))
    seconds = _seconds_in(session, squads, filed, measures, ranks)
    chosen: dict[tuple[str, int | None], dict[int, int]] = {}
    for rank in ranks:
        low, high = bounds(rank.bucket)
        measured = seconds.get(rank.measure, {})
        squads_counted = measured.values() if rank.squad is None else [measured.get(rank.squad, {})]
        values = {
            value: n for value, n in _merged(squads_counted).items() if _holds(low, high, value)
        }
        value, _ = _locate(values, rank.within)
        chosen.setdefault((rank.measure, rank.squad), {})[rank.percent] = value
    found: Spreads = {name: ({}, Spread()) for name in measures}
    for (name, sid), picked in chosen.items():
        spread = Spread(picked[50], picked[90], totals[name, sid])
        per = found[name][0]
        if sid is None:
            found[name] = (per, spread)
        else:
            per[sid] = spread
    return found


def _counted(
    session: Session, squads: Collection[int], filed: ColumnElement[bool], measures: dict[str, Any]
) -> dict[str, dict[int, Counts]]:
    """First pass: measure -> squad -> bucket -> how many values."""
    names = list(measures)
    parts = []
    for index, seconds in enumerate(measures.values()):
        b = bucket(seconds)
        for squad in squads:
            parts.append(
                select(literal(index), literal(squad), b, func.count())
                .where(col(Ticket.squad_id) == squad, filed, seconds.is_not(None))
                .group_by(b)
            )
    found: dict[str, dict[int, Counts]] = {}
    for start in range(0, len(parts), PARTS_PER_STATEMENT):
        chunk = parts[start : start + PARTS_PER_STATEMENT]
        for m, squad, key, n in session.execute(union_all(*chunk)).all():
            found.setdefault(names[m], {}).setdefault(int(squad), {})[int(key)] = int(n)
    return found


def _seconds_in(
    session: Session,
    squads: Collection[int],
    filed: ColumnElement[bool],
    measures: dict[str, Any],
    ranks: list[_Rank],
) -> dict[str, dict[int, Counts]]:
    """Second pass: measure -> squad -> second -> how many values, for the seconds of the
    buckets the ranks fall in: each squad's own, and the scope's (which every squad's
    values make). One SELECT a squad and measure again, each testing a couple of spans."""
    names = list(measures)
    parts = []
    for index, (name, seconds) in enumerate(measures.items()):
        scope = {r.bucket for r in ranks if r.measure == name and r.squad is None}
        for squad in squads:
            own = {r.bucket for r in ranks if r.measure == name and r.squad == squad}
            if not own:
                continue  # no values: nothing to count, for the scope either
            within = [_between(seconds, low, high) for low, high in _spans(own | scope)]
            parts.append(
                select(literal(index), literal(squad), seconds, func.count())
                .where(col(Ticket.squad_id) == squad, filed, or_(*within))
                .group_by(seconds)
            )
    found: dict[str, dict[int, Counts]] = {}
    for start in range(0, len(parts), PARTS_PER_STATEMENT):
        chunk = parts[start : start + PARTS_PER_STATEMENT]
        for m, squad_id, value, n in session.execute(union_all(*chunk)).all():
            found.setdefault(names[m], {}).setdefault(int(squad_id), {})[int(value)] = int(n)
    return found


def _spans(numbers: Iterable[int]) -> list[tuple[int | None, int | None]]:
    """The seconds the buckets hold, neighbouring buckets joined into one span."""
    spans: list[tuple[int | None, int | None]] = []
    for low, high in (bounds(number) for number in sorted(numbers)):
        if spans and spans[-1][1] == low:
            spans[-1] = (spans[-1][0], high)
        else:
            spans.append((low, high))
    return spans


def _between(seconds: Any, low: int | None, high: int | None) -> ColumnElement[bool]:
    held = [*([] if low is None else [seconds >= low]), *([] if high is None else [seconds < high])]
    return and_(*held)


def _holds(low: int | None, high: int | None, value: int) -> bool:
    return (low is None or value >= low) and (high is None or value < high)


def _merged(counts: Iterable[Counts]) -> Counts:
    total: Counts = {}
    for each in counts:
        for key, n in each.items():
            total[key] = total.get(key, 0) + n
    return total


def _locate(counts: Counts, rank: int) -> tuple[int, int]:
    """The key (bucket or second) holding the 1-based `rank` when the counted values are
    taken in order, and the value's rank among those of that key."""
    below = 0
    for key in sorted(counts):
        if below + counts[key] >= rank:
            return key, rank - below
        below += counts[key]
    raise ValueError(f"rank {rank} beyond the {below} values counted")
