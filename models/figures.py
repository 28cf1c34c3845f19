"""The managers' figures (/stats, the ranking, the ledger's summary): per squad and for the
zone, counted by the database with GROUP BY and CASE, the same on SQLite and PostgreSQL.
No ticket row is ever loaded here: Python sees one row per squad (or per day, category,
percentile), never one per ticket.

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

from collections.abc import Collection, Mapping
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
from models.promises import verdicts
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


def cohort(session: Session, period: Period, now: datetime, scope: Scope) -> dict[int, Figures]:
    """The filed tickets' promises, rework and ratings, one row per squad. Each ticket's
    verdicts are worked out once, in an inner query that the database keeps apart (OFFSET
    0), so the grouping sorts a few small numbers per ticket, not its timestamps."""
    v = verdicts(now)
    t = Ticket
    per_ticket = (
        select(
            col(t.squad_id).label("squad_id"),
            v["reply"].label("reply"),
            v["handling"].label("handling"),
            v["plan"].label("plan"),
            case((col(t.cycle) > 0, 1), else_=0).label("reworked"),
            case((or_(col(t.resolved_at).is_not(None), col(t.cycle) > 0), 1), else_=0).label(
                "resolved_ever"
            ),
            col(t.rating).label("rating"),
            case((col(t.first_response_at).is_not(None), 1), else_=0).label("answered"),
            case((col(t.resolved_at).is_not(None), 1), else_=0).label("resolved"),
        )
        .where(filed_in(period), in_scope(scope))
        .offset(0)
        .subquery()
    )
    c = per_ticket.c
    query = select(
        c.squad_id,
        func.count(),
        *(expr for name in ("reply", "handling", "plan") for expr in _rate(c[name])),
        func.sum(c.reworked),
        func.sum(c.resolved_ever),
        func.sum(c.rating),
        func.count(c.rating),
        func.sum(c.answered),
        func.sum(c.resolved),
    ).group_by(c.squad_id)
    found: dict[int, Figures] = {}
    for row in session.execute(query).all():
        squad_id, filed, rk, rj, hk, hj, pk, pj, reworked, ever, rsum, rcount, fr, done = row
        found[int(squad_id)] = Figures(
            squad_id=int(squad_id),
            code="",
            name="",
            filed=_int(filed),
            reply=Rate(_int(rk), _int(rj)),
            handling=Rate(_int(hk), _int(hj)),
            plan=Rate(_int(pk), _int(pj)),
            # the counts of durations, for the percentiles' ranks (see `spreads`)
            first_response=Spread(count=_int(fr)),
            resolution=Spread(count=_int(done)),
            rework=Rate(_int(reworked), _int(ever)),
            rating_sum=_int(rsum),
            rating_count=_int(rcount),
        )
    return found


def _rate(expr: Any) -> tuple[Any, Any]:
    """SUM of a verdict counts the kept (1), COUNT the judged (1 or 0, not NULL)."""
    return func.sum(expr), func.count(expr)


def _per_squad(session: Session, query: Any) -> dict[int, int]:
    return {int(squad): _int(n) for squad, n in session.execute(query).all()}


def resolved_in(session: Session, period: Period, scope: Scope) -> dict[int, int]:
    resolved = col(Ticket.resolved_at)
    return _per_squad(
        session,
        select(col(Ticket.squad_id), func.count())
        .where(resolved >= period.start, resolved < period.end, in_scope(scope))
        .group_by(col(Ticket.squad_id)),
    )


def open_at_end(session: Session, period: Period, scope: Scope) -> dict[int, int]:
    """Filed before the end and not resolved by then: those not resolved, and those
    resolved after the end, counted apart so each count reads the index on resolved_at
    alone. (With OR, or with a range open at one end, the databases' planners choose to
    read every ticket ever filed; bounded by the latest resolution, they do not.)"""
    resolved = col(Ticket.resolved_at)
    latest = select(func.max(resolved)).scalar_subquery()
    found: dict[int, int] = {}
    for unresolved in (resolved.is_(None), resolved.between(period.end, latest)):
        query = (
            select(col(Ticket.squad_id), func.count())
            .where(unresolved, col(Ticket.created_at) < period.end, in_scope(scope))
            .group_by(col(Ticket.squad_id))
        )
        for squad_id, n in _per_squad(session, query).items():
            found[squad_id] = found.get(squad_id, 0) + n
    return found


def alerts_by_level(session: Session, period: Period, scope: Scope) -> dict[int, dict[str, int]]:
    """The ledger's rows of the period's tickets. Tickets are numbered as they are filed, so
    the period's lowest and highest ids bound the ledger rows to read; the join still
    checks each ticket's filing time, so the answer holds even if they were not."""
    lowest, highest = session.execute(
        select(func.min(col(Ticket.id)), func.max(col(Ticket.id))).where(filed_in(period))
    ).one()
    if lowest is None:
        return {}
    query = (
        select(col(Ticket.squad_id), col(AlertRecord.level), func.count())
        .join(Ticket, col(Ticket.id) == col(AlertRecord.ticket_id))
        .where(
            col(AlertRecord.ticket_id).between(lowest, highest),
            filed_in(period),
            in_scope(scope),
            col(AlertRecord.deadline) != AUTO_CLOSE,
        )
        .group_by(col(Ticket.squad_id), col(AlertRecord.level))
    )
    found: dict[int, dict[str, int]] = {}
    for squad_id, level, n in session.execute(query).all():
        found.setdefault(int(squad_id), {})[str(level)] = _int(n)
    return found


def stats(session: Session, period: Period, now: datetime, scope: Scope = None) -> Stats:
    """Every figure of the period for each squad in scope (all of them for the zone, with
    or without tickets), and for the scope as a whole."""
    found = cohort(session, period, now, scope)
    resolved = resolved_in(session, period, scope)
    backlog = open_at_end(session, period, scope)
    alerts = alerts_by_level(session, period, scope)
    counts = {
        "first_response": {sid: f.first_response.count for sid, f in found.items()},
        "resolution": {sid: f.resolution.count for sid, f in found.items()},
    }
    measured = spreads(session, (filed_in(period), in_scope(scope)), counts)
    first, first_all = measured["first_response"]
    done, done_all = measured["resolution"]
    known = {s.id: s for s in squads_in(session, scope) if s.active or s.id in found}
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
    v = verdicts(now)
    query = (
        select(day.label("day"), func.count(), *_rate(v["reply"]), *_rate(v["handling"]))
        .where(filed_in(period), in_scope(scope))
        .group_by(day)
    )
    counted = {int(n): row for n, *row in session.execute(query).all()}
    found = []
    for n, when in enumerate(period.dates()):
        filed, rk, rj, hk, hj = counted.get(n, (0, 0, 0, 0, 0))
        found.append(Day(when, _int(filed), Rate(_int(rk), _int(rj)), Rate(_int(hk), _int(hj))))
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
