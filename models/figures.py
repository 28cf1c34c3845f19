"""The managers' figures (/stats, the ranking, the ledger's summary): per squad and for the
zone, counted by the database with GROUP BY and CASE, the same on SQLite and PostgreSQL.
No ticket row is ever loaded here: Python sees one row per squad (or per day, category,
percentile bucket), never one per ticket.

Each ticket's times and verdicts are columns the database keeps up to date from the row's
own timestamps (models/promise_rules.py, models/ticket.py), and `ix_ticket_figures` holds
them in squad and filing order: a period's figures are read from that index alone, squad
by squad, with no sort. A /stats is a handful of statements: the squads, the cohort, the
resolutions and the backlog (`ix_ticket_squad_resolved`), the alert ledger, and the
percentiles (models/percentiles.py).

What is counted over a period (models/periods.py):

- filed: tickets filed in the period; every quality figure below is about these tickets,
  whenever their promises came due (a ticket filed on the 31st and resolved on the 1st
  counts for the month it was filed in);
- resolved: resolutions that happened in the period, whichever month the ticket was filed;
- open: tickets filed before the period's end and not resolved by then (for a period not
  over yet: not resolved now);
- reply, handling, plan: kept / judged, by `models.promises.verdict` (README, "On time");
- first response and resolution times: wall-clock seconds from filing, median and 90th
  percentile by nearest rank (models/percentiles.py);
- alerts by level: the alert ledger's rows for these tickets (warning, breach, supervision);
- rework: tickets sent back at least once (reopened or reworked), of those ever resolved;
- rating: sum and count of the stars given, so the average is exact on both databases.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from models.org import Squad
from models.percentiles import Spread, spreads
from models.periods import Period
from models.plumbing import AlertRecord
from models.promises import PROMISES, at, decided, kept
from models.sla.policy import AlertKind
from models.ticket import Ticket

AUTO_CLOSE = "auto_close"  # ledger rows that are not alerts (an unconfirmed resolution closing)
LEVELS = tuple(level.value for level in AlertKind)

Scope = Collection[int] | None  # squad ids; None: the whole zone


@dataclass(frozen=True)
class Rate:
    kept: int = 0
    judged: int = 0

    @property
    def share(self) -> float | None:
        return self.kept / self.judged if self.judged else None

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.kept + other.kept, self.judged + other.judged)


@dataclass(frozen=True)
class Figures:
    squad_id: int | None  # None: the zone (or the reader's squads together)
    code: str
    name: str
    filed: int = 0
    open: int = 0
    resolved: int = 0
    reply: Rate = Rate()
    handling: Rate = Rate()
    plan: Rate = Rate()
    first_response: Spread = field(default_factory=Spread)
    resolution: Spread = field(default_factory=Spread)
    alerts: Mapping[str, int] = field(default_factory=dict)
    rework: Rate = Rate()  # kept = sent back at least once, judged = ever resolved
    rating_sum: int = 0
    rating_count: int = 0

    @property
    def rating(self) -> float | None:
        return self.rating_sum / self.rating_count if self.rating_count else None

    def __add__(self, other: Figures) -> Figures:
        """Counts and rates add up; spreads cannot, and are left for the caller to fill."""
        levels = set(self.alerts) | set(other.alerts)
        return replace(
            self,
            filed=self.filed + other.filed,
            open=self.open + other.open,
            resolved=self.resolved + other.resolved,
            reply=self.reply + other.reply,
            handling=self.handling + other.handling,
            plan=self.plan + other.plan,
            alerts={lv: self.alerts.get(lv, 0) + other.alerts.get(lv, 0) for lv in levels},
            rework=self.rework + other.rework,
            rating_sum=self.rating_sum + other.rating_sum,
            rating_count=self.rating_count + other.rating_count,
            first_response=Spread(),
            resolution=Spread(),
        )


@dataclass(frozen=True)
class Stats:
    period: Period
    total: Figures  # the zone, or the reader's squads together
    squads: list[Figures]


@dataclass(frozen=True)
class Day:
    day: date
    filed: int
    reply: Rate
    handling: Rate


# --- where -------------------------------------------------------------------------------


def filed_in(period: Period) -> ColumnElement[bool]:
    return and_(col(Ticket.created_at) >= period.start, col(Ticket.created_at) < period.end)


def in_scope(scope: Scope) -> ColumnElement[bool]:
    return col(Ticket.squad_id).in_(list(scope)) if scope is not None else true()


def _int(value: Any) -> int:
    return int(value or 0)


# --- the figures -------------------------------------------------------------------------


def squads_in(session: Session, scope: Scope) -> list[Squad]:
    query = select(Squad).order_by(col(Squad.code))
    if scope is not None:
        query = query.where(col(Squad.id).in_(list(scope)))
    return [row for (row,) in session.execute(query).all()]


def squad_ids(session: Session, scope: Scope) -> list[int]:
    """The scope's squads by id; for the zone, every squad there is. Naming them lets the
    database read each squad's tickets in turn from `ix_ticket_figures`, already grouped."""
    if scope is not None:
        return sorted(scope)
    return sorted(int(sid) for sid in session.execute(select(col(Squad.id))).scalars())


def of_squads(squads: Collection[int]) -> ColumnElement[bool]:
    return col(Ticket.squad_id).in_(list(squads))


@dataclass(frozen=True)
class Cohort:
    """The filed tickets' figures by squad, and the lowest and highest of their ids."""

    figures: dict[int, Figures]
    ids: tuple[int, int] | None  # None: no ticket filed


def cohort(session: Session, period: Period, now: datetime, scope: Scope) -> dict[int, Figures]:
    """The filed tickets' promises, rework and ratings, one row per squad."""
    return filed_cohort(session, period, now, squad_ids(session, scope)).figures


def filed_cohort(
    session: Session, period: Period, now: datetime, squads: Collection[int]
) -> Cohort:
    """One pass over the figures' index: for each promise, the kept (SUM of the verdict
    once done: 1 or 0) and the judged (those done with a deadline, and those not done
    whose deadline has passed)."""
    moment = at(now)
    t = Ticket
    promised = [expr for name in PROMISES for expr in _judged(name, moment)]
    query = (
        select(
            col(t.squad_id),
            func.count(),
            *promised,
            func.sum(case((col(t.cycle) > 0, 1), else_=0)),
            func.sum(case((or_(col(t.resolution_s).is_not(None), col(t.cycle) > 0), 1), else_=0)),
            func.sum(col(t.rating)),
            func.count(col(t.rating)),
            func.min(col(t.id)),
            func.max(col(t.id)),
        )
        .where(of_squads(squads), filed_in(period))
        .group_by(col(t.squad_id))
    )
    found: dict[int, Figures] = {}
    lowest: list[int] = []
    highest: list[int] = []
    for row in session.execute(query).all():
        squad_id, filed, *rates, reworked, ever, rsum, rcount, low, high = row
        reply, handling, plan = _rates(rates)
        found[int(squad_id)] = Figures(
            squad_id=int(squad_id),
            code="",
            name="",
            filed=_int(filed),
            reply=reply,
            handling=handling,
            plan=plan,
            rework=Rate(_int(reworked), _int(ever)),
            rating_sum=_int(rsum),
            rating_count=_int(rcount),
        )
        lowest.append(int(low))
        highest.append(int(high))
    return Cohort(found, (min(lowest), max(highest)) if found else None)


def _judged(name: str, moment: ColumnElement[datetime]) -> tuple[Any, Any]:
    """A promise's kept (SUM of the verdict once done: 1 or 0; a missed deadline adds
    nought) and judged (kept or missed by `moment`), read from the ticket's columns."""
    return func.sum(kept(name)), func.count(case((decided(name, moment), 1)))


def _rates(values: Sequence[Any]) -> list[Rate]:
    """The rates from `_judged`'s columns, two a promise."""
    n = [_int(value) for value in values]
    return [Rate(n[i], n[i + 1]) for i in range(0, len(n), 2)]


def _per_squad(session: Session, query: Any) -> dict[int, int]:
    return {int(squad): _int(n) for squad, n in session.execute(query).all()}


def resolved_in(session: Session, period: Period, squads: Collection[int]) -> dict[int, int]:
    """Resolutions made in the period, per squad (from `ix_ticket_squad_resolved`)."""
    resolved = col(Ticket.resolved_at)
    return _per_squad(
        session,
        select(col(Ticket.squad_id), func.count())
        .where(of_squads(squads), resolved >= period.start, resolved < period.end)
        .group_by(col(Ticket.squad_id)),
    )


def open_at_end(session: Session, period: Period, squads: Collection[int]) -> dict[int, int]:
    """Filed before the end and not resolved by then: those not resolved, and those
    resolved after the end, counted apart so that each reads, squad by squad, one range of
    `ix_ticket_squad_resolved` (with OR, the databases' planners choose to read every
    ticket ever filed)."""
    resolved = col(Ticket.resolved_at)
    found: dict[int, int] = {}
    for unresolved in (resolved.is_(None), resolved >= period.end):
        query = (
            select(col(Ticket.squad_id), func.count())
            .where(of_squads(squads), unresolved, col(Ticket.created_at) < period.end)
            .group_by(col(Ticket.squad_id))
        )
        for squad_id, n in _per_squad(session, query).items():
            found[squad_id] = found.get(squad_id, 0) + n
    return found


def alerts_by_level(
    session: Session, period: Period, squads: Collection[int], ids: tuple[int, int] | None
) -> dict[int, dict[str, int]]:
    """The ledger's rows of the period's tickets, by level: each squad's tickets read in
    turn from the figures' index, and their ledger rows from the ledger's own. Tickets are
    numbered as they are filed, so the period's lowest and highest ids (`ids`, from the
    cohort) bound the ledger rows a database may choose to read in bulk; the join still
    checks each ticket's filing time, so the answer holds even if they were not."""
    if ids is None:
        return {}
    lowest, highest = ids
    level = col(AlertRecord.level)
    query = (
        select(col(Ticket.squad_id), *(func.count(case((level == lv, 1))) for lv in LEVELS))
        .join(AlertRecord, col(AlertRecord.ticket_id) == col(Ticket.id))
        .where(
            of_squads(squads),
            filed_in(period),
            col(AlertRecord.ticket_id).between(lowest, highest),
            col(AlertRecord.deadline) != AUTO_CLOSE,
        )
        .group_by(col(Ticket.squad_id))
    )
    return {
        int(squad_id): dict(zip(LEVELS, map(_int, counts), strict=True))
        for squad_id, *counts in session.execute(query).all()
    }


def stats(session: Session, period: Period, now: datetime, scope: Scope = None) -> Stats:
    """Every figure of the period for each squad in scope (all of them for the zone, with
    or without tickets), and for the scope as a whole."""
    squads = squads_in(session, scope)
    ids = sorted(scope) if scope is not None else [s.id for s in squads if s.id is not None]
    filed = filed_cohort(session, period, now, ids)
    found = filed.figures
    resolved = resolved_in(session, period, ids)
    backlog = open_at_end(session, period, ids)
    alerts = alerts_by_level(session, period, ids, filed.ids)
    measured = spreads(session, ids, filed_in(period))
    first, first_all = measured["first_response"]
    done, done_all = measured["resolution"]
    known = {s.id: s for s in squads if s.active or s.id in found}
    rows: list[Figures] = []
    for squad_id, squad in known.items():
        assert squad_id is not None
        base = found.get(squad_id) or Figures(squad_id, "", "")
        rows.append(
            replace(
                base,
                code=squad.code,
                name=squad.name,
                open=backlog.get(squad_id, 0),
                resolved=resolved.get(squad_id, 0),
                alerts={lv: alerts.get(squad_id, {}).get(lv, 0) for lv in LEVELS},
                first_response=first.get(squad_id, Spread()),
                resolution=done.get(squad_id, Spread()),
            )
        )
    total = Figures(None, "", "", alerts=dict.fromkeys(LEVELS, 0))
    for row in rows:
        total = total + row
    total = replace(total, first_response=first_all, resolution=done_all)
    return Stats(period, total, rows)


# --- for the charts ----------------------------------------------------------------------


def daily(session: Session, period: Period, now: datetime, scope: Scope = None) -> list[Day]:
    """Tickets filed each local day, and how their reply and handling promises went. The
    day is found by comparing with each local midnight, so it is right in any time zone."""
    starts = period.day_starts()
    created = col(Ticket.created_at)
    day = case(*((created < starts[n + 1], n) for n in range(period.days)), else_=period.days)
    moment = at(now)
    query = (
        select(
            day.label("day"),
            func.count(),
            *_judged("reply", moment),
            *_judged("handling", moment),
        )
        .where(filed_in(period), in_scope(scope))
        .group_by(day)
    )
    counted = {int(n): (filed, *rates) for n, filed, *rates in session.execute(query).all()}
    found = []
    for n, when in enumerate(period.dates()):
        filed, *rates = counted.get(n, (0,) * 5)
        reply, handling = _rates(rates)
        found.append(Day(when, _int(filed), reply, handling))
    return found


def category_mix(session: Session, period: Period, scope: Scope = None) -> list[tuple[str, int]]:
    """(category code, tickets filed), most frequent first."""
    n = func.count().label("n")
    query = (
        select(col(Ticket.category_code), n)
        .where(filed_in(period), in_scope(scope))
        .group_by(col(Ticket.category_code))
        .order_by(n.desc(), col(Ticket.category_code))
    )
    return [(str(code), _int(count)) for code, count in session.execute(query).all()]


def category_names(session: Session) -> dict[str, tuple[str, str]]:
    """Every category's (Chinese, English) name by code, for labelling charts and sheets."""
    from models.org import Category

    query = select(col(Category.code), col(Category.name_zh), col(Category.name_en))
    rows = session.execute(query).all()
    return {str(code): (str(zh), str(en)) for code, zh, en in rows}
