"""The set-based firing (`models.alerts.fire_due`: the start-up catch-up and every timer
firing, in chunks within one transaction) does what the object path (`fire_due_batch`:
ORM tickets, `pending_points` one by one) does, on the same generated tickets: open,
claimed, waiting (paused), resolved past and before their auto-close, closed; first replies
given or not; plans asked for, recorded with a target, extended deadlines; reopened cycles
with the old cycle's ledger; alerts fired before the restart, and one whose key was fired
before its deadline moved. Round the clock, on working hours over Golden Week, and a rule of
its own in a round-the-clock zone; storms and alerts told alone; the managers' chat and a
webhook. Same ledger, same messages (a storm's digest named by the same alert), same next
alert times, and those are what `refresh_next_alert` computes. On SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import random
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col

import models.alert_store
import models.alerts
from migrations.runner import upgrade
from models.alerts import due_tickets, fire_due, fire_due_batch
from models.clock import FakeClock
from models.db import is_transient, make_engine
from models.deadlines import earliest, pending_points, refresh_next_alert
from models.desk import Desk
from models.org import Category, Membership, Project, Role
from models.plumbing import AlertRecord, OutboxMessage
from models.ticket import Ticket, TicketAlarm, TicketEvent
from models.zone.config import read_zone
from models.zone.load import load_and_apply
from scheduler.deadline_timer import DeadlineTimer
from tests.conftest import PG_DSN
from tests.harness import EXAMPLE_ZONE, zone_database, zone_variant
from tests.unit.test_deadlines import MONDAY_9AM, bind_everyone, race_two_schedulers

# Thursday 8 October 2026, 10:00 in the zone: the first working morning after Golden Week
NOW = datetime(2026, 10, 8, 2, 0, tzinfo=UTC)
HOOK = '    - {kind: wecom, url: "https://qyapi.example.invalid/send?key=k"}'
WIDE = {
    "  webhooks: []\n": f"  webhooks:\n{HOOK}\n",
    "  managers_chat: null": "  managers_chat: -1009",
}
OFFICE = {"clock: round_the_clock": "clock: working_hours"}
PERMITS_IN_OFFICE_HOURS = {
    "    - {category: water, urgency: urgent, response: 5m, handling: 1h}": (
        "    - {category: water, urgency: urgent, response: 5m, handling: 1h}\n"
        "    - {category: planning_permit, clock: working_hours}"
    )
}
ROUND_THE_CLOCK = "round the clock, storms of 3, managers' chat and a webhook"
SCENARIOS = {
    ROUND_THE_CLOCK: {
        **WIDE,
        "managers:\n": "alerts: {storm_threshold: 3}\nmanagers:\n",
    },
    "working hours over Golden Week, storms of 4": {
        **OFFICE,
        "extra_holidays: []": 'extra_holidays: ["2026-10-13"]',
        "managers:\n": "alerts: {storm_threshold: 4}\nmanagers:\n",
    },
    "a rule counting office hours in a round-the-clock zone, storms of 4": {
        **PERMITS_IN_OFFICE_HOURS,
        "managers:\n": "alerts: {storm_threshold: 4}\nmanagers:\n",
    },
}
STATES = ("open", "claimed", "claimed", "waiting", "resolved", "closed")


# --- generated tickets ------------------------------------------------------------------------


def generate(engine: Engine, n: int, seed: int) -> None:
    """`n` tickets of every kind, their ledger before the restart, and the next alert time
    `refresh_next_alert` would have stored then; all written with explicit ids, so two
    databases generated alike hold the same rows."""
    rng = random.Random(seed)
    with Session(engine) as session:
        zone = read_zone(session)
        people: dict[int, list[int]] = {}
        leaders: list[int] = []
        contacts: dict[int, int] = {}
        for m in session.execute(select(Membership).where(col(Membership.active))).scalars():
            if m.role in (Role.MEMBER, Role.LEAD) and m.squad_id is not None:
                people.setdefault(m.squad_id, []).append(m.person_id)
            if m.role in (Role.LEAD, Role.MANAGER):
                leaders.append(m.person_id)
            if m.role == Role.ENTERPRISE and m.project_id is not None:
                contacts.setdefault(m.project_id, m.person_id)
        projects = [
            (p.id, p.squad_id)
            for p in session.execute(select(Project).order_by(col(Project.id))).scalars()
            if p.squad_id is not None and p.id in contacts and p.squad_id in people
        ]
        categories = sorted(c.code for c in session.execute(select(Category)).scalars())
    tickets: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    for tid in range(1, n + 1):
        project_id, squad_id = rng.choice(projects)
        category, urgency = rng.choice(categories), rng.choice(("normal", "normal", "urgent"))
        policy = zone.targets(category, urgency)
        calendar = zone.calendar_for(policy)
        # filed on whole 7-minute steps: many tickets share their times exactly
        filed = NOW - timedelta(minutes=7 * rng.randrange(0, 3000))
        state = rng.choice(STATES)
        cycle = rng.choice((0, 0, 0, 1, 2))
        row: dict[str, Any] = {
            "id": tid,
            "number": f"{rng.choice(('YZ', 'AB', 'QX'))}-{rng.randrange(100):02d}-{tid:05d}",
            "project_id": project_id,
            "squad_id": squad_id,
            "enterprise_id": contacts[project_id],
            "category_code": category,
            "urgency": urgency,
            "description": f"问题 {tid}: " + "细节" * rng.randrange(0, 150),
            "state": state,
            "owner_id": None if state == "open" else rng.choice(people[squad_id]),
            "led_by": rng.choice(leaders) if rng.random() < 0.15 else None,
            "language": "zh-CN",
            "cycle": cycle,
            "created_at": filed,
            "updated_at": filed,
            "response_due": calendar.add(filed, policy.response),
            "first_response_at": None,
            "handling_started": None,
            "handling_due": None,
            "plan_required": False,
            "plan_due": None,
            "plan_target": None,
            "paused_at": None,
            "handling_remaining_s": None,
            "resolved_at": None,
            "closed_at": None,
        }
        if state != "open" and rng.random() < 0.8:
            row["first_response_at"] = filed + timedelta(minutes=rng.randrange(1, 30))
        start = filed
        if cycle and state != "open":  # reopened: handling counts again from the reopening
            start = row["handling_started"] = filed + timedelta(hours=rng.randrange(1, 48))
        if state in ("claimed", "waiting") and rng.random() < 0.3:
            row["plan_required"] = True
            row["plan_due"] = calendar.add(filed, policy.plan)
            if rng.random() < 0.5:
                row["plan_target"] = row["plan_due"] + timedelta(hours=rng.randrange(1, 120))
        else:
            extra = timedelta(hours=rng.randrange(1, 6)) if rng.random() < 0.1 else timedelta()
            row["handling_due"] = calendar.add(start, policy.handling + extra)
        if state == "waiting":
            row["paused_at"] = start + timedelta(minutes=rng.randrange(1, 90))
            row["handling_remaining_s"] = rng.randrange(60, 7200)
        if state in ("resolved", "closed"):
            row["resolved_at"] = filed + timedelta(hours=rng.randrange(1, 130))
        if state == "closed":
            row["closed_at"] = row["resolved_at"] + timedelta(hours=1)
        ticket = SimpleNamespace(**row)
        points = pending_points(ticket, policy, calendar, zone.auto_close_after)  # type: ignore[arg-type]
        last_up = NOW - timedelta(minutes=rng.randrange(0, 240))
        fired: set[tuple[str, str]] = set()
        for point in points:
            early = rng.random() < 0.05  # its key fired before its deadline was moved
            if (point.at <= last_up and rng.random() < 0.9) or early:
                fired.add((point.deadline, point.level.value))
                ledger.append(
                    {
                        "ticket_id": tid,
                        "deadline": point.deadline,
                        "level": point.level.value,
                        "cycle": cycle,
                        "due_at": point.due,
                        "fired_at": min(point.at, last_up),
                    }
                )
            if cycle and rng.random() < 0.5:  # the same alert in the cycle before
                ledger.append(
                    {
                        "ticket_id": tid,
                        "deadline": point.deadline,
                        "level": point.level.value,
                        "cycle": cycle - 1,
                        "due_at": point.due - timedelta(days=2),
                        "fired_at": point.at - timedelta(days=2),
                    }
                )
        armed = earliest(points, fired)
        if armed is not None:
            alarms.append({"ticket_id": tid, "next_alert_at": armed})
        tickets.append(row)
    with engine.begin() as conn:
        conn.execute(Ticket.__table__.insert(), tickets)  # type: ignore[attr-defined]
        conn.execute(TicketAlarm.__table__.insert(), alarms)  # type: ignore[attr-defined]
        conn.execute(AlertRecord.__table__.insert(), ledger)  # type: ignore[attr-defined]


# --- firing both ways --------------------------------------------------------------------------


def fire_set_based(engine: Engine) -> int:
    with Session(engine, expire_on_commit=False) as session:
        told = fire_due(Desk(session, NOW, read_zone(session)))
        session.commit()
    return told


def fire_object_by_object(engine: Engine) -> int:
    """The due tickets as objects, in id order: the order the set-based path claims in, so
    the lowest ledger id of a storm (its digest's key) is the same alert's."""
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, NOW, read_zone(session))
        due = sorted(due_tickets(session, NOW, limit=1_000_000), key=lambda t: t.id or 0)
        told = fire_due_batch(desk, due)
        session.commit()
    return len(told)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything firing writes, with ledger ids (which follow the order of insertion)
    replaced by the alert they number."""
    with Session(engine) as session:
        records = session.execute(select(AlertRecord)).scalars().all()
        alert = {r.id: (r.ticket_id, r.deadline, r.level, r.cycle) for r in records}
        outbox = []
        for m in session.execute(select(OutboxMessage)).scalars():
            key = m.dedupe_key or ""
            if key.startswith("storm:"):
                storm, level, bucket, first, token = key.split(":")
                key = f"{storm}:{level}:{bucket}:{alert[int(first)]}:{token}"
            where = (m.channel, m.chat_id, m.webhook, m.locale, m.link_role)
            outbox.append(
                (m.template, *where, m.ticket_id, m.params, key, m.priority, m.created_at)
            )
        return {
            "ledger": Counter(
                (r.ticket_id, r.deadline, r.level, r.cycle, r.due_at, r.fired_at) for r in records
            ),
            "tickets": {
                t.id: (t.state, t.next_alert_at, t.closed_at)
                for t in session.execute(select(Ticket)).scalars()
            },
            "outbox": Counter(outbox),
            "events": Counter(
                (e.ticket_id, e.action, e.from_state, e.to_state, e.at)
                for e in session.execute(select(TicketEvent)).scalars()
            ),
        }


def assert_rearmed_as_refresh_would(engine: Engine) -> None:
    with Session(engine) as session:
        desk = Desk(session, NOW, read_zone(session))
        for ticket in session.execute(select(Ticket)).scalars():
            stored = ticket.next_alert_at
            found = refresh_next_alert(
                session,
                ticket,
                desk.targets(ticket),
                desk.calendar(ticket),
                desk.zone.auto_close_after,
            )
            assert stored == found, ticket.id
            assert found is None or found > NOW
        session.rollback()


def assert_covers_every_case(found: dict[str, Any]) -> None:
    """The generated load really went through every branch being compared."""
    templates = Counter(row[0] for row in found["outbox"].elements())
    assert any(t.startswith("alert.storm.") for t in templates), templates
    assert any(t in ("alert.warning", "alert.breach", "alert.supervision") for t in templates)
    assert templates["ticket.auto_closed"] > 0
    fired_now = [key for key in found["ledger"] if key[5] == NOW]
    levels = Counter(level for _, _, level, _, _, _ in fired_now)
    assert set(levels) == {"warning", "breach", "supervision"}
    silent = [k for k in fired_now if k[2] == "warning" and k[4] <= NOW]
    assert silent, "a warning caught up after its deadline"
    assert {k[3] for k in fired_now} == {0, 1, 2}
    assert "auto_close" in {k[1] for k in fired_now}


# SQLite reads the due tickets in id order when most of the table is due, else one by one
READS = {"the table in id order": 10**9, "each due ticket by its id": 0}


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("chunk", [5000, 37])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_set_based_firing_matches_the_object_path(
    tmp_path: Path, scenario: str, chunk: int, read: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.alerts, "CHUNK", chunk)
    monkeypatch.setattr(models.alert_store, "DENSE", READS[read])
    source = zone_variant(tmp_path, **SCENARIOS[scenario])
    engine = zone_database(tmp_path, source)
    bind_everyone(engine)
    generate(engine, 400, seed=len(scenario))
    engine.dispose()
    objects = tmp_path / "objects.db"
    shutil.copy(tmp_path / "squadbot.db", objects)
    by_rows, by_objects = engine, make_engine(f"sqlite:///{objects}")
    try:
        assert fire_set_based(by_rows) == fire_object_by_object(by_objects)
        found = snapshot(by_rows)
        assert found == snapshot(by_objects)
        assert_covers_every_case(found)
        assert_rearmed_as_refresh_would(by_rows)
        assert fire_set_based(by_rows) == 0  # all fired: nothing twice
        assert snapshot(by_rows) == found
    finally:
        by_rows.dispose()
        by_objects.dispose()


def test_a_limited_firing_takes_the_earliest_due_tickets(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    bind_everyone(engine)
    generate(engine, 200, seed=5)
    with Session(engine) as session:
        due: dict[int | None, datetime] = {
            t.id: t.next_alert_at
            for t in due_tickets(session, NOW, limit=1_000_000)
            if t.next_alert_at is not None
        }
    assert len(due) > 3
    try:
        with Session(engine, expire_on_commit=False) as session:
            fire_due(Desk(session, NOW, read_zone(session)), limit=3)
            session.commit()
        with Session(engine) as session:
            left = {t.id for t in due_tickets(session, NOW, limit=1_000_000)}
        fired = set(due) - left
        assert len(fired) == 3 and left < set(due)
        assert max(due[tid] for tid in fired) <= min(due[tid] for tid in left)
    finally:
        engine.dispose()


def test_two_schedulers_racing_through_a_chunked_catch_up_fire_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two schedulers start at once on one SQLite file, then one restarts: the first to take
    the write lock fires the whole catch-up, chunk by chunk, exactly as one alone would; the
    others find nothing left."""
    monkeypatch.setattr(models.alerts, "CHUNK", 37)
    engine = zone_database(tmp_path, zone_variant(tmp_path, **SCENARIOS[ROUND_THE_CLOCK]))
    bind_everyone(engine)
    generate(engine, 400, seed=11)
    engine.dispose()
    alone = tmp_path / "alone.db"
    shutil.copy(tmp_path / "squadbot.db", alone)
    racing = [make_engine(f"sqlite:///{tmp_path / 'squadbot.db'}") for _ in range(2)]
    by_one = make_engine(f"sqlite:///{alone}")
    clock = FakeClock(NOW)
    try:
        timers = [DeadlineTimer(e, clock, read_zone) for e in racing]
        threads = [threading.Thread(target=t.sweep) for t in timers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        DeadlineTimer(racing[1], clock, read_zone).sweep()  # the restart
        one = DeadlineTimer(by_one, clock, read_zone)
        one.sweep()
        assert sorted(t.fired for t in timers) == [0, one.fired]
        assert one.fired > 0
        assert snapshot(racing[0]) == snapshot(by_one)
    finally:
        for engine in (*racing, by_one):
            engine.dispose()


def test_schedulers_firing_over_and_over_in_chunks_send_each_alert_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two-scheduler race of `test_deadlines`, with every firing split in chunks of 3."""
    monkeypatch.setattr(models.alerts, "CHUNK", 3)
    first = zone_database(tmp_path)
    bind_everyone(first)
    second = make_engine(str(first.url))
    try:
        race_two_schedulers(first, second, FakeClock(MONDAY_9AM))
    finally:
        first.dispose()
        second.dispose()


def alarm_indexes(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = 'ticketalarm' ORDER BY name"
        )
        return [(str(name), str(sql)) for name, sql in found]


def test_a_big_firing_gives_back_the_page_cache_the_collector_and_the_alarm_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A firing over more than one chunk enlarges SQLite's page cache and pauses the cyclic
    collector, and when most of the alarm table is due it drops the table's index and builds
    it again at the end; the pooled connection, the process and the file get all three back
    as they were, and the timer's query finds the earliest deadline through the index."""
    monkeypatch.setattr(models.alerts, "CHUNK", 20)
    monkeypatch.setattr(models.alert_store, "DENSE", READS["the table in id order"])
    engine = zone_database(tmp_path)
    bind_everyone(engine)
    generate(engine, 300, seed=7)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.connect() as conn:
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    indexes = alarm_indexes(engine)
    assert [name for name, _ in indexes] == ["ix_ticketalarm_next_alert_at"]
    assert gc.isenabled()
    try:
        assert fire_set_based(engine) > 0
        assert sum(sql.startswith("DROP INDEX") for sql in statements) == 1
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT min(next_alert_at) FROM ticketalarm"
            ).all()
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert "ix_ticketalarm_next_alert_at" in str(plan)
        assert alarm_indexes(engine) == indexes
        assert gc.isenabled()
        assert_rearmed_as_refresh_would(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("aborted", [False, True], ids=["transaction open", "aborted"])
def test_a_big_firing_that_fails_half_way_leaves_the_alarms_and_their_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aborted: bool
) -> None:
    """The store fails while the third chunk is rearmed (the index dropped, two chunks
    written): nothing of the firing is kept, the alarm index included, and the failure
    reaches the caller as itself (transient: the sweep tries again), also when SQLite rolled
    the transaction back on its own, as it does on a full disk or an I/O error."""
    monkeypatch.setattr(models.alerts, "CHUNK", 20)
    monkeypatch.setattr(models.alert_store, "DENSE", READS["the table in id order"])
    engine = zone_database(tmp_path)
    bind_everyone(engine)
    generate(engine, 300, seed=7)
    indexes = alarm_indexes(engine)
    found = snapshot(engine)
    rearmed = 0
    set_next = models.alert_store.AlertStore.set_next

    def failing(store: models.alert_store.AlertStore, nexts: Any) -> None:
        nonlocal rearmed
        rearmed += 1
        if rearmed == 3:
            if aborted:
                store.connection.exec_driver_sql("ROLLBACK")
            raise OperationalError("UPDATE ticketalarm", {}, Exception("disk I/O error"))
        set_next(store, nexts)

    monkeypatch.setattr(models.alert_store.AlertStore, "set_next", failing)
    try:
        with pytest.raises(OperationalError) as failed:
            fire_set_based(engine)
        assert "disk I/O error" in str(failed.value) and is_transient(failed.value)
        assert rearmed == 3
        assert alarm_indexes(engine) == indexes
        assert snapshot(engine) == found
        monkeypatch.setattr(models.alert_store.AlertStore, "set_next", set_next)
        assert fire_set_based(engine) > 0
        assert alarm_indexes(engine) == indexes
    finally:
        engine.dispose()


# --- PostgreSQL ------------------------------------------------------------------------------


@contextmanager
def pg_schema() -> Iterator[Engine]:
    """A migrated PostgreSQL schema of its own with the example zone, dropped afterwards."""
    assert PG_DSN
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_DSN)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = create_engine(
        PG_DSN, connect_args={"options": f"-csearch_path={schema}"}, pool_pre_ping=True
    )
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.mark.postgres
def test_schedulers_firing_in_chunks_on_postgresql_send_each_alert_once(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FOR UPDATE SKIP LOCKED and ON CONFLICT DO NOTHING RETURNING, chunk by chunk."""
    monkeypatch.setattr(models.alerts, "CHUNK", 3)
    load_and_apply(pg_engine, EXAMPLE_ZONE)
    bind_everyone(pg_engine)
    with Session(pg_engine) as session:
        schema = session.execute(text("SELECT current_schema()")).scalar_one()
    second = create_engine(
        pg_engine.url, pool_pre_ping=True, connect_args={"options": f"-csearch_path={schema}"}
    )
    try:
        race_two_schedulers(pg_engine, second, FakeClock(MONDAY_9AM))
    finally:
        second.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("chunk", [5000, 37])
def test_set_based_firing_matches_the_object_path_on_postgresql(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.alerts, "CHUNK", chunk)
    source = zone_variant(tmp_path, **SCENARIOS[ROUND_THE_CLOCK])
    with pg_schema() as by_rows, pg_schema() as by_objects:
        for engine in (by_rows, by_objects):
            load_and_apply(engine, source)
            bind_everyone(engine)
            generate(engine, 400, seed=3)
        assert fire_set_based(by_rows) == fire_object_by_object(by_objects)
        found = snapshot(by_rows)
        assert found == snapshot(by_objects)
        assert_covers_every_case(found)
        assert_rearmed_as_refresh_would(by_rows)
        assert fire_set_based(by_rows) == 0
