"""The figures read what the database keeps on each ticket (models/promise_rules.py): the
seconds to the first reply and to the resolution, each promise's verdict once done and its
deadline while not done. Proved against the rule as the README states it, worked out here
in Python, on a thousand tickets of every shape (paused clocks with and without time left,
plans asked for, agreed and replacing the handling deadline, reworked tickets, missing
deadlines, times on the very deadline, a clock set back) at moments around every
deadline; the percentiles against a plain sort of the same values; and the columns
following one ticket through the domain as it is claimed, paused, resumed, extended,
resolved late, sent back and resolved again. SQLite and PostgreSQL alike."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from models import closure, extensions, handling
from models.clock import FakeClock
from models.desk import Desk
from models.figures import Rate, stats
from models.org import Person, Squad
from models.people import Actor
from models.percentiles import PERCENTILES, TIERS, Spread, bounds, bucket, nearest_rank
from models.periods import month_period
from models.promises import PROMISES, verdicts
from models.ticket import Ticket
from models.zone.load import load_and_apply
from tests.figures_data import SH, sh
from tests.harness import EXAMPLE_ZONE, zone_database
from tests.unit.test_deadlines import MONDAY_9AM, Zone, bind_everyone

NOV = month_period(2026, 11, SH)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


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


# --- the rule, in Python ---------------------------------------------------------------------


def due_in_force(row: dict[str, Any], promise: str) -> tuple[datetime | None, datetime | None]:
    """(what is done, the deadline it is judged by), as README "On time" says."""
    if promise == "reply":
        return row["first_response_at"], row["response_due"]
    if promise == "plan":
        if row["plan_agreed_at"] is not None:
            return row["plan_agreed_at"], row["plan_agreed_due"]
        return None, row["plan_due"] if row["plan_required"] else None
    if row["resolved_at"] is not None:
        return row["resolved_at"], row["resolve_due"]
    if row["plan_target"] is not None:
        return None, row["plan_target"]
    if row["plan_required"]:
        return None, None  # a plan is being agreed: its target will be the deadline
    if row["state"] == "waiting" and (row["handling_remaining_s"] or 0) > 0:
        return None, None  # the clock stands still
    return None, row["handling_due"]


def judged(row: dict[str, Any], promise: str, now: datetime) -> int | None:
    done, due = due_in_force(row, promise)
    if due is None:
        return None
    if done is not None:
        return 1 if done <= due else 0
    return 0 if due < now else None


def whole_seconds(end: datetime | None, start: datetime) -> int | None:
    """Rounded half away from nought, as both databases round."""
    if end is None:
        return None
    exact = (end - start).total_seconds()
    return int(exact + 0.5) if exact >= 0 else -int(-exact + 0.5)


# --- tickets of every shape --------------------------------------------------------------------

EDGES = (0, 1, 599, 600, 601, 3599, 3600, 14400, 86399, 86400, 604799, 604800, 604801)


def offset(rng: random.Random) -> timedelta:
    """Seconds from filing: mostly minutes to hours, some on the tiers' edges, some days
    or weeks, a few before filing (a clock set back); never half a second, which the two
    databases' arithmetic may round either way."""
    roll = rng.random()
    if roll < 0.15:
        seconds: float = rng.choice(EDGES)
    elif roll < 0.2:
        seconds = -rng.randint(1, 300)
    elif roll < 0.3:
        seconds = rng.randint(86400, 30 * 86400)
    else:
        seconds = rng.randint(1, 6 * 3600)
    return timedelta(seconds=seconds + rng.choice((0, 0, 0.2, 0.7)))


def shapes(rng: random.Random, squads: list[int], person: int, count: int) -> list[dict[str, Any]]:
    rows = []
    start, span = NOV.start - 2 * HOUR, (NOV.end - NOV.start) + 4 * HOUR
    for n in range(count):
        filed = start + timedelta(seconds=rng.randint(0, int(span.total_seconds())))
        filed = filed.replace(microsecond=rng.choice((0, 0, 300_000)))

        def maybe(chance: float, value: datetime) -> datetime | None:
            return value if rng.random() < chance else None

        resolved = maybe(0.6, filed + offset(rng))
        response_due = maybe(0.95, filed + 10 * MIN)
        first = maybe(0.8, filed + offset(rng))
        if first is not None and response_due is not None and rng.random() < 0.1:
            first = response_due  # on the very deadline: kept
        handling_due = maybe(0.9, filed + 2 * HOUR)
        plan_required = rng.random() < 0.25
        agreed = maybe(0.5, filed + offset(rng)) if plan_required else None
        rows.append(
            {
                "number": f"T-{n:05d}",
                "squad_id": rng.choice(squads),
                "enterprise_id": person,
                "category_code": "water",
                "description": "shape",
                "state": rng.choice(("open", "claimed", "waiting", "resolved", "closed")),
                "cycle": rng.choice((0, 0, 0, 1, 2)),
                "created_at": filed,
                "updated_at": filed,
                "first_response_at": first,
                "response_due": response_due,
                "handling_due": handling_due,
                "handling_remaining_s": rng.choice((None, 0, 3600)),
                "plan_required": plan_required,
                "plan_due": maybe(0.9, filed + 20 * HOUR) if plan_required else None,
                "plan_target": maybe(0.5, filed + offset(rng)),
                "plan_agreed_at": agreed,
                "plan_agreed_due": maybe(0.9, filed + 24 * HOUR) if agreed else None,
                "resolved_at": resolved,
                "resolve_due": maybe(0.8, filed + offset(rng)) if resolved else None,
                "rating": rng.choice((None, 1, 3, 5)),
            }
        )
    return rows


def load(engine: Engine, seed: int, count: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        squads = sorted(int(sid) for sid in session.execute(select(col(Squad.id))).scalars())
        person = session.execute(select(col(Person.id))).scalars().first()
    assert person is not None
    rows = shapes(random.Random(seed), squads, int(person), count)
    with engine.begin() as conn:
        conn.execute(Ticket.__table__.insert(), rows)  # type: ignore[attr-defined]
    with Session(engine) as session:
        found = session.execute(select(col(Ticket.number), col(Ticket.id))).all()
        ids = {str(number): int(tid) for number, tid in found}
    return [{**row, "id": ids[row["number"]]} for row in rows]


# --- the columns against the rule ---------------------------------------------------------------


def test_every_verdict_and_time_is_the_rule_s(engine: Engine) -> None:
    rows = load(engine, seed=8, count=1000)
    moments = [NOV.start, sh(11, 15, 12), NOV.end, NOV.end + timedelta(days=30)]
    # and the very deadlines of a sample of tickets: due < now, not due <= now
    for row in rows[:40]:
        moments += [m for m in (row["response_due"], row["handling_due"]) if m is not None]
    by_id = {row["id"]: row for row in rows}
    mismatches: list[tuple[Any, ...]] = []
    with Session(engine) as session:
        for now in moments:
            v = verdicts(now)
            query = select(col(Ticket.id), *(v[name] for name in PROMISES))
            for tid, *found in session.execute(query):
                expected = [judged(by_id[tid], name, now) for name in PROMISES]
                if found != expected:
                    mismatches.append((by_id[tid]["number"], now, found, expected))
        times = select(col(Ticket.id), col(Ticket.first_response_s), col(Ticket.resolution_s))
        for tid, first, resolution in session.execute(times):
            row = by_id[tid]
            expected_times = (
                whole_seconds(row["first_response_at"], row["created_at"]),
                whole_seconds(row["resolved_at"], row["created_at"]),
            )
            if (first, resolution) != expected_times:
                mismatches.append((row["number"], None, (first, resolution), expected_times))
    assert mismatches == []
    # the sample has every verdict in it, for every promise
    seen = {(name, judged(row, name, NOV.end)) for row in rows for name in PROMISES}
    assert seen == {(name, kept) for name in PROMISES for kept in (0, 1, None)}


def spread_of(values: list[int]) -> Spread:
    ordered = sorted(values)
    if not ordered:
        return Spread()
    picked = [ordered[nearest_rank(len(ordered), p) - 1] for p in PERCENTILES]
    return Spread(picked[0], picked[1], len(ordered))


def test_percentiles_are_a_plain_sort_s(engine: Engine) -> None:
    rows = load(engine, seed=5, count=1500)
    filed = [row for row in rows if NOV.start <= row["created_at"] < NOV.end]
    with Session(engine) as session:
        found = stats(session, NOV, NOV.end)
    for measure, end in (("first_response", "first_response_at"), ("resolution", "resolved_at")):
        values: dict[int, list[int]] = {}
        for row in filed:
            seconds = whole_seconds(row[end], row["created_at"])
            if seconds is not None:
                values.setdefault(row["squad_id"], []).append(seconds)
        every = [v for per in values.values() for v in per]
        assert any(v < 0 for v in every) and any(v in EDGES for v in every)
        assert getattr(found.total, measure) == spread_of(every)
        for squad in found.squads:
            assert squad.squad_id is not None
            assert getattr(squad, measure) == spread_of(values.get(squad.squad_id, []))


def test_a_zone_of_many_squads_is_counted_in_several_statements(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each squad's buckets are a SELECT of their own; past PARTS_PER_STATEMENT of them,
    SQLite gets them in several statements, with the same answer."""
    import models.percentiles

    load(engine, seed=21, count=400)
    with Session(engine) as session:
        whole = stats(session, NOV, NOV.end)
    monkeypatch.setattr(models.percentiles, "PARTS_PER_STATEMENT", 3)
    with Session(engine) as session:
        chunked = stats(session, NOV, NOV.end)
    assert chunked == whole
    assert whole.total.first_response.count > 0


def test_a_lead_s_percentiles_are_their_squads_alone(engine: Engine) -> None:
    rows = load(engine, seed=13, count=600)
    scope = sorted({row["squad_id"] for row in rows})[:2]
    with Session(engine) as session:
        found = stats(session, NOV, NOV.end, set(scope))
    mine = [
        s
        for row in rows
        if row["squad_id"] in scope and NOV.start <= row["created_at"] < NOV.end
        for s in [whole_seconds(row["resolved_at"], row["created_at"])]
        if s is not None
    ]
    assert found.total.resolution == spread_of(mine)


@pytest.mark.parametrize("values", [[5], [5, 5], [0, 600], [-3, -3, 7], [86400] * 3 + [1]])
def test_few_values_and_ties(engine: Engine, values: list[int]) -> None:
    with Session(engine) as session:
        squad = session.execute(select(col(Squad.id)).order_by(col(Squad.id))).scalars().first()
        person = session.execute(select(col(Person.id))).scalars().first()
    filed = sh(11, 10, 9)
    with engine.begin() as conn:
        conn.execute(
            Ticket.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "number": f"F-{n}",
                    "squad_id": squad,
                    "enterprise_id": person,
                    "category_code": "water",
                    "description": "few",
                    "created_at": filed,
                    "updated_at": filed,
                    "first_response_at": filed + timedelta(seconds=value),
                }
                for n, value in enumerate(values)
            ],
        )
    with Session(engine) as session:
        found = stats(session, NOV, NOV.end)
    assert found.total.first_response == spread_of(values)
    assert found.total.resolution == Spread()


# --- buckets -------------------------------------------------------------------------------


def test_buckets_hold_what_their_bounds_say_and_never_go_back() -> None:
    """`bucket` is SQL; evaluated here by SQLite itself, with `bounds` from Python."""
    from sqlalchemy import create_engine, literal

    seconds = sorted(
        {
            *range(-700, 4000, 7),
            *(edge + d for edge in EDGES for d in (-1, 0, 1)),
            *range(0, 40 * 86400, 997),
            10**9,
        }
    )
    memory = create_engine("sqlite://")
    with memory.connect() as conn:
        numbers = [conn.execute(select(bucket(literal(s)))).scalar_one() for s in seconds]
    assert numbers == sorted(numbers)
    for value, number in zip(seconds, numbers, strict=True):
        low, high = bounds(number)
        assert (low is None or low <= value) and (high is None or value < high), value
    # each tier's buckets are as wide as it says, and a week and more is still bucketed
    widths = {width for limit, width in TIERS}
    assert {(high or 0) - (low or 0) for low, high in map(bounds, numbers) if low} <= widths


# --- one ticket through the domain -----------------------------------------------------------


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[Zone]:
    engine = zone_database(tmp_path)
    bind_everyone(engine)
    yield Zone(engine, FakeClock(MONDAY_9AM))
    engine.dispose()


def pv_figures(zone: Zone, now: datetime) -> tuple[Rate, Rate, Rate, Spread]:
    period = month_period(2026, 11, SH)
    with Session(zone.engine) as session:
        pv = next(f for f in stats(session, period, now).squads if f.code == "PV")
    return pv.reply, pv.handling, pv.rework, pv.resolution


def test_the_figures_follow_a_ticket_through_its_life(zone: Zone) -> None:
    """Claimed at 5 min, paused at 30 min with 90 min left, resumed after a day, due
    90 min later, four more hours approved, resolved late anyway, sent back, resolved in
    time: at each step the figures say what the rule says, with no code of their own."""
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    assert zone.ticket(tid).squad_id is not None

    def at(delta: timedelta) -> datetime:
        zone.clock.set(filed + delta)
        return filed + delta

    assert pv_figures(zone, at(5 * MIN)) == (Rate(0, 0), Rate(0, 0), Rate(0, 0), Spread())
    zone.act("zhou.jun", handling.claim, tid)
    assert pv_figures(zone, at(11 * MIN))[0] == Rate(1, 1)

    def ask(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
        return handling.wait_for_enterprise(desk, actor, ticket, "请提供规划总平面图")

    at(30 * MIN)
    zone.act("zhou.jun", ask, tid)
    # paused with 90 minutes left: past the first deadline, handling is not judged
    assert pv_figures(zone, at(3 * HOUR))[1] == Rate(0, 0)

    def answer(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
        return handling.enterprise_message(desk, actor, ticket, "图纸已上传")

    at(26 * HOUR)
    zone.act("qian.hao", answer, tid)
    assert pv_figures(zone, at(26 * HOUR + 89 * MIN))[1] == Rate(0, 0)

    def extend(desk: Desk, actor: Actor, ticket: Ticket) -> Any:
        return extensions.request_extension(desk, actor, ticket, 4 * HOUR, "等待自来水公司排期")

    request = zone.act("zhou.jun", extend, tid)

    def approve(desk: Desk, actor: Actor, ticket: Ticket) -> Any:
        return extensions.decide_extension(desk, actor, ticket, f"{request.id}:approve")

    zone.act("wang.fang", approve, tid)
    # 90 min after resuming the old deadline has passed, the extended one has not
    assert pv_figures(zone, at(26 * HOUR + 91 * MIN))[1] == Rate(0, 0)
    assert pv_figures(zone, at(26 * HOUR + 5 * HOUR + 31 * MIN))[1] == Rate(0, 1)

    def resolve(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
        return handling.resolve(desk, actor, ticket, "已协调")

    zone.act("zhou.jun", resolve, tid)
    late = 26 * HOUR + 5 * HOUR + 31 * MIN
    reply, handled, rework, resolution = pv_figures(zone, at(32 * HOUR))
    assert (handled, rework) == (Rate(0, 1), Rate(0, 1))
    assert resolution == Spread(int(late.total_seconds()), int(late.total_seconds()), 1)

    zone.act("qian.hao", lambda d, a, t: closure.confirm(d, a, t, True), tid)
    zone.act("qian.hao", lambda d, a, t: closure.rate(d, a, t, 2), tid)  # sent back
    reopened = zone.ticket(tid)
    assert (reopened.cycle, reopened.resolved_at, reopened.resolution_s) == (1, None, None)
    assert reopened.handling_pending_due == reopened.handling_due
    reply, handled, rework, resolution = pv_figures(zone, at(32 * HOUR + MIN))
    assert (handled, rework, resolution) == (Rate(0, 0), Rate(1, 1), Spread())

    at(33 * HOUR)
    zone.act("zhou.jun", resolve, tid)
    reply, handled, rework, resolution = pv_figures(zone, at(40 * HOUR))
    assert (reply, handled, rework) == (Rate(1, 1), Rate(1, 1), Rate(1, 1))
    assert resolution == Spread(33 * 3600, 33 * 3600, 1)


# --- what SQLite reads -------------------------------------------------------------------------


def test_sqlite_reads_the_figures_from_the_indexes_squad_by_squad(tmp_path: Path) -> None:
    """Every statement of /stats reads the tickets through `ix_ticket_figures` (or, for
    the resolutions and the backlog, `ix_ticket_squad_resolved`), and the cohort needs no
    sort: the index hands it each squad's tickets in turn. Checked on a store without
    statistics, as a new zone's is."""
    from sqlalchemy import event

    engine = zone_database(tmp_path)
    load(engine, seed=3, count=300)
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", keep)
    with Session(engine) as session:
        stats(session, NOV, NOV.end)
    event.remove(engine, "before_cursor_execute", keep)
    plans = []
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        for statement, params in seen:
            if "FROM ticket" not in statement:
                continue
            plan = [row[3] for row in cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            plans.append((statement, plan))
    assert len(plans) >= 6
    for statement, plan in plans:
        index = (
            "ix_ticket_squad_resolved" if "ticket.resolved_at" in statement else "ix_ticket_figures"
        )
        reads = [step for step in plan if " ticket " in f" {step} "]
        assert reads and all(index in step for step in reads), (statement, plan)
    cohort = next(plan for statement, plan in plans if "max(ticket.id)" in statement)
    assert not any("TEMP B-TREE" in step for step in cohort), cohort
    engine.dispose()
