"""The baseline of `bench.figures`: /stats and /ranking as they were computed before the
tickets kept their figures (migration 0008), run on a store at migration 0007 with the same
tickets. Every /stats judged each promise of every ticket of the period from a dozen of its
timestamps, worked out the seconds to the first reply and to the resolution, and on SQLite
sorted those seconds and dealt them out to the squads in Python; PostgreSQL took them to
percentile_disc. The code is that of models/figures.py, models/percentiles.py and
models/promises.py then, kept here unchanged but for its imports, so the bench compares the
two on one machine in one run and checks they give the same figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, null, or_, select, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from models.elapsed import seconds_between
from models.figures import (
    AUTO_CLOSE,
    LEVELS,
    Figures,
    Rate,
    Scope,
    Stats,
    filed_in,
    in_scope,
    squads_in,
)
from models.lifecycle import State
from models.percentiles import PERCENTILES, Spread, nearest_rank
from models.periods import Period
from models.plumbing import AlertRecord
from models.promises import KEPT, MISSED, at
from models.ranking import Ranking, Standing, score
from models.ticket import Ticket
from models.zone.schema import RankingSection

# --- the promises, judged from the ticket's timestamps -------------------------------------


def verdict(done: Any, due: Any, now: ColumnElement[datetime]) -> ColumnElement[int]:
    return case(
        (done <= due, KEPT),
        (done.is_not(None), case((due.is_not(None), MISSED), else_=null())),
        (due < now, MISSED),
        else_=null(),
    )


Branch = tuple[ColumnElement[bool], Any]


@dataclass(frozen=True)
class Promise:
    name: str
    done: Any
    branches: tuple[Branch, ...]
    otherwise: Any

    def verdict(self, now: ColumnElement[datetime]) -> ColumnElement[int]:
        def judged(due: Any) -> Any:
            return null() if due is None else verdict(self.done, due, now)

        if not self.branches:
            return judged(self.otherwise)  # type: ignore[no-any-return]
        return case(
            *((when, judged(due)) for when, due in self.branches), else_=judged(self.otherwise)
        )


def promises() -> list[Promise]:
    t = Ticket
    reply = Promise("reply", col(t.first_response_at), (), col(t.response_due))
    handling = Promise(
        "handling",
        col(t.resolved_at),
        (
            (col(t.resolved_at).is_not(None), col(t.resolve_due)),
            (col(t.plan_target).is_not(None), col(t.plan_target)),
            (col(t.plan_required).is_(True), None),
            ((col(t.state) == State.WAITING) & (col(t.handling_remaining_s) > 0), None),
        ),
        col(t.handling_due),
    )
    plan = Promise(
        "plan",
        col(t.plan_agreed_at),
        (
            (col(t.plan_agreed_at).is_not(None), col(t.plan_agreed_due)),
            (col(t.plan_required).is_(True), col(t.plan_due)),
        ),
        None,
    )
    return [reply, handling, plan]


def verdicts(now: datetime) -> dict[str, ColumnElement[int]]:
    moment = at(now)
    return {p.name: p.verdict(moment) for p in promises()}


# --- the figures ---------------------------------------------------------------------------


def _int(value: Any) -> int:
    return int(value or 0)


def _rate(expr: Any) -> tuple[Any, Any]:
    return func.sum(expr), func.count(expr)


def cohort(session: Session, period: Period, now: datetime, scope: Scope) -> dict[int, Figures]:
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
            first_response=Spread(count=_int(fr)),
            resolution=Spread(count=_int(done)),
            rework=Rate(_int(reworked), _int(ever)),
            rating_sum=_int(rsum),
            rating_count=_int(rcount),
        )
    return found


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


# --- the percentiles -------------------------------------------------------------------------

Spreads = dict[str, tuple[dict[int, Spread], Spread]]


def durations() -> dict[str, Any]:
    return {
        "first_response": col(Ticket.first_response_at),
        "resolution": col(Ticket.resolved_at),
    }


def spreads(session: Session, where: tuple[Any, ...], counts: dict[str, dict[int, int]]) -> Spreads:
    seconds = {
        name: seconds_between(done, col(Ticket.created_at)) for name, done in durations().items()
    }
    if session.get_bind().dialect.name == "postgresql":
        return _spreads_in_postgresql(session, seconds, where)
    found: Spreads = {}
    connection = session.connection()
    for name, done in durations().items():
        d = seconds[name].label("d")
        query = select(col(Ticket.squad_id), d).where(*where, done.is_not(None)).order_by(d)
        rows = connection.execute(query).cursor.fetchall()
        found[name] = _pick_ranks(rows, counts.get(name, {}))
    return found


def _pick_ranks(rows: Any, counts: dict[int, int]) -> tuple[dict[int, Spread], Spread]:
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
                continue
            spread = Spread(int(median), int(p90), int(n))
            per = found[name][0]
            if whole:
                found[name] = (per, spread)
            else:
                per[int(squad_id)] = spread
    return found


# --- /stats and /ranking -----------------------------------------------------------------------


def stats(session: Session, period: Period, now: datetime, scope: Scope = None) -> Stats:
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


def _ranks(
    session: Session, period: Period, now: datetime, rules: RankingSection
) -> tuple[dict[int, Figures], dict[int, float | None], dict[int, int]]:
    found = cohort(session, period, now, None)
    scores = {sid: score(f, rules.weights) for sid, f in found.items()}
    codes = {s.id: s.code for s in squads_in(session, None)}
    eligible = [
        sid for sid, f in found.items() if f.filed >= rules.min_tickets and scores[sid] is not None
    ]
    eligible.sort(key=lambda sid: (-(scores[sid] or 0.0), -found[sid].filed, codes.get(sid, "")))
    return found, scores, {sid: n for n, sid in enumerate(eligible, start=1)}


def ranking(session: Session, period: Period, now: datetime, rules: RankingSection) -> Ranking:
    found, scores, ranks = _ranks(session, period, now, rules)
    _, _, before = _ranks(session, period.previous(), now, rules)
    standings: list[Standing] = []
    for squad in squads_in(session, None):
        sid = squad.id
        assert sid is not None
        if not squad.active and sid not in found:
            continue
        f = found.get(sid) or Figures(sid, squad.code, squad.name)
        rank = ranks.get(sid)
        standings.append(
            Standing(
                squad_id=sid,
                code=squad.code,
                name=squad.name,
                tickets=f.filed,
                reply=f.reply,
                handling=f.handling,
                rating=f.rating,
                rating_count=f.rating_count,
                score=scores.get(sid),
                rank=rank,
                previous=before.get(sid),
                red_flag=rank == 1,
            )
        )
    standings.sort(key=lambda s: (s.rank is None, s.rank or 0, s.code))
    return Ranking(period, rules, standings)
