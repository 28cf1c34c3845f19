"""The calendar jobs on a fake clock: the morning digest's figures, and both the digest and
the monthly ranking hook happening once per period whatever calls them (the minute tick, a
restart, a second process), never before their time and never when switched off."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.application import ZoneCache, build_application
from bot.i18n import render
from bot.service import Service
from models import filing, handling
from models.clock import FakeClock
from models.db import make_engine
from models.desk import Desk
from models.org import Person
from models.people import Actor, active_memberships
from models.plumbing import OutboxMessage, ScheduledRun
from models.ticket import Ticket
from models.zone.config import ZoneConfig, read_zone
from models.zone.load import load_and_apply
from scheduler.deadline_timer import DeadlineTimer
from scheduler.digests import (
    CalendarJobs,
    digest_day,
    publish_monthly_ranking,
    ranking_month,
    send_morning_digest,
)
from tests.harness import EXAMPLE_ZONE, FAST, Harness, zone_database, zone_variant

SH = ZoneInfo("Asia/Shanghai")
READERS = {"wang.fang": 7001, "zhao.qiang": 7002, "liu.yang": 7003, "ma.lin": 7004}


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SH)


def bind(engine: Engine, ids: dict[str, int] = READERS) -> None:
    with Session(engine) as session:
        for key, telegram_id in ids.items():
            person = session.exec(select(Person).where(Person.key == key)).one()
            person.telegram_user_id = telegram_id
            session.add(person)
        session.commit()


def actor(session: Session, key: str) -> Actor:
    person = session.exec(select(Person).where(Person.key == key)).one()
    assert person.id is not None
    return Actor(person=person, memberships=active_memberships(session, person.id))


def file(engine: Engine, at: datetime, who: str) -> int:
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, at, read_zone(session))
        ent = actor(session, who)
        filing.start_draft(desk, ent)
        filing.choose_category(desk, ent, "planning_permit")
        filing.describe(desk, ent, "规划许可")
        filing.choose_urgency(desk, ent, "normal")
        ticket = filing.submit(desk, ent)
        session.commit()
        assert ticket.id is not None
        return ticket.id


def act(engine: Engine, at: datetime, key: str, fn: Callable[..., object], *args: object) -> None:
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, at, read_zone(session))
        fn(desk, actor(session, key), *args)
        session.commit()


def ticket_of(desk: Desk, tid: int) -> Ticket | None:
    return desk.session.get(Ticket, tid)


def fire(engine: Engine, at: datetime) -> None:
    DeadlineTimer(engine, FakeClock(at), read_zone).fire_due()


def digests(engine: Engine) -> dict[int, list[dict[str, Any]]]:
    """The queued digests' parameters, by chat."""
    with Session(engine) as session:
        rows = session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.template == "digest.morning")
            .order_by(col(OutboxMessage.id))
        ).all()
    found: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        assert row.chat_id is not None
        found.setdefault(row.chat_id, []).append({**json.loads(row.params), "_locale": row.locale})
    return found


def zone_reader(session: Session) -> ZoneConfig:
    return read_zone(session)


DAY = date(2026, 11, 23)  # a Monday


def test_when_the_jobs_are_due() -> None:
    zone = ZoneConfig()
    assert digest_day(zone, local(DAY, 8, 29)) is None
    assert digest_day(zone, local(DAY, 8, 30)) == DAY
    assert digest_day(zone, local(DAY, 23, 59)) == DAY
    assert digest_day(zone, local(DAY, 0, 5)) is None
    assert digest_day(ZoneConfig(digest_at=None), local(DAY, 23, 59)) is None
    first = date(2026, 12, 1)
    assert ranking_month(zone, local(first, 8, 59)) is None
    assert ranking_month(zone, local(first, 9, 0)) == date(2026, 11, 1)
    assert ranking_month(zone, local(date(2026, 12, 7), 3, 0)) == date(2026, 11, 1)  # caught up
    assert ranking_month(zone, local(date(2026, 12, 8), 9, 0)) is None  # too late to publish
    assert ranking_month(zone, local(date(2027, 1, 1), 9, 0)) == date(2026, 12, 1)
    assert ranking_month(ZoneConfig(monthly_ranking_at=None), local(first, 12, 0)) is None


def test_the_digest_counts_yesterday_and_lists_what_is_overdue(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    bind(engine)
    before = file(engine, local(DAY - timedelta(days=1), 9), "qian.hao")  # PV, the day before
    fire(engine, local(DAY - timedelta(days=1), 12))
    resolved = file(engine, local(DAY, 9), "qian.hao")  # PV
    act(
        engine,
        local(DAY, 9, 5),
        "zhou.jun",
        lambda d, a: handling.claim(d, a, ticket_of(d, resolved)),
    )
    act(
        engine,
        local(DAY, 9, 40),
        "zhou.jun",
        lambda d, a: handling.resolve(d, a, ticket_of(d, resolved), "已办结"),
    )
    late = file(engine, local(DAY, 10), "yang.fan")  # HV, nobody claims it
    fire(engine, local(DAY, 10, 10))  # its reply deadline is missed
    fire(engine, local(DAY, 12))  # and its handling deadline

    clock = FakeClock(local(DAY + timedelta(days=1), 8, 30))
    assert send_morning_digest(engine, clock, zone_reader) == 4
    told = digests(engine)
    assert set(told) == set(READERS.values())
    zone = told[READERS["wang.fang"]][0]
    assert zone["scope"] == {"key": "digest.zone"} and zone["day"] == {"date": "2026-11-23"}
    assert (zone["filed"], zone["resolved"], zone["breaches"], zone["overdue"]) == (2, 1, 2, 2)
    assert told[READERS["zhao.qiang"]][0]["filed"] == 2
    pv = told[READERS["liu.yang"]][0]  # a lead: their squad
    assert pv["scope"] == {"inline": ["光伏组件项目服务专班"]}
    assert (pv["filed"], pv["resolved"], pv["breaches"], pv["overdue"]) == (1, 1, 0, 1)
    hv = told[READERS["ma.lin"]][0]
    assert (hv["filed"], hv["resolved"], hv["breaches"], hv["overdue"]) == (1, 0, 2, 1)

    with Session(engine) as session:
        numbers = {t.id: t.number for t in session.exec(select(Ticket)).all()}
    for locale in ("zh-CN", "en"):
        text = render(locale, "digest.morning", zone, SH, lambda code, _locale: code)
        assert "{" not in text, text
        assert text.index(numbers[before]) < text.index(numbers[late])  # oldest first
        assert numbers[resolved] not in text
    text = render("zh-CN", "digest.morning", zone, SH, lambda code, _locale: code)
    assert text.startswith("☀️ 每日简报｜全区｜11月23日\n")
    assert "新收 2 件，办结 1 件，超时 2 次" in text and "当前超时未办结：2 件" in text
    assert "首次响应时限 11月22日 09:10｜负责人：无人认领" in text


def test_the_digest_goes_once_a_day_across_restarts_and_processes(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    bind(engine)
    clock = FakeClock(local(DAY, 8, 29))
    assert send_morning_digest(engine, clock, zone_reader) == 0  # not yet
    clock.set(local(DAY, 8, 30))
    assert send_morning_digest(engine, clock, zone_reader) == 4
    assert send_morning_digest(engine, clock, zone_reader) == 0
    clock.set(local(DAY, 17, 0))
    restarted = make_engine(str(engine.url))  # another process on the same database
    assert send_morning_digest(restarted, clock, zone_reader) == 0
    assert all(len(rows) == 1 for rows in digests(engine).values())

    # the next morning, two processes at once: one of them sends
    clock.set(local(DAY + timedelta(days=1), 8, 30))
    start = threading.Barrier(2)
    results: list[int] = []

    def run(e: Engine) -> None:
        start.wait()
        results.append(send_morning_digest(e, clock, zone_reader))

    threads = [threading.Thread(target=run, args=(e,)) for e in (engine, restarted)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 4]
    assert all(len(rows) == 2 for rows in digests(engine).values())
    with Session(engine) as session:
        keys = sorted(r.key for r in session.exec(select(ScheduledRun)).all())
    assert keys == ["digest:2026-11-23", "digest:2026-11-24"]
    restarted.dispose()


def test_the_digest_goes_once_on_postgres_too(pg_engine: Engine) -> None:
    load_and_apply(pg_engine, EXAMPLE_ZONE)
    bind(pg_engine)
    clock = FakeClock(local(DAY, 9, 0))
    start = threading.Barrier(3)
    results: list[int] = []

    def run() -> None:
        start.wait()
        results.append(send_morning_digest(pg_engine, clock, zone_reader))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 0, 4]
    assert all(len(rows) == 1 for rows in digests(pg_engine).values())


def test_a_digest_switched_off_never_goes(tmp_path: Path) -> None:
    zone_file = zone_variant(tmp_path, **{'digest: "08:30"': "digest: off"})
    engine = zone_database(tmp_path, zone_file)
    bind(engine)
    clock = FakeClock(local(DAY, 0, 0))
    for _ in range(48):
        clock.advance(timedelta(minutes=30))
        assert send_morning_digest(engine, clock, zone_reader) == 0
    assert digests(engine) == {}
    with Session(engine) as session:
        assert session.exec(select(ScheduledRun)).all() == []


def test_a_digest_moved_goes_at_its_new_time(tmp_path: Path) -> None:
    zone_file = zone_variant(tmp_path, **{'digest: "08:30"': 'digest: "07:15"'})
    engine = zone_database(tmp_path, zone_file)
    bind(engine)
    clock = FakeClock(local(DAY, 7, 14))
    assert send_morning_digest(engine, clock, zone_reader) == 0
    clock.set(local(DAY, 7, 15))
    assert send_morning_digest(engine, clock, zone_reader) == 4


# --- the monthly ranking hook ------------------------------------------------------------------


class FakeRanking:
    """Stands in for the ranking: remembers each call and queues one message through the
    desk, so the test sees that the message and the run's record commit together."""

    def __init__(self, fail: int = 0) -> None:
        self.months: list[date] = []
        self.fail = fail

    def __call__(self, desk: Desk, month: date) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("ranking not ready")
        self.months.append(month)
        desk.notify.tell_chat(-100777, "digest.zone", dedupe_key=f"ranking-test:{month}")


def test_the_monthly_ranking_runs_once_a_month(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    ranking = FakeRanking()
    clock = FakeClock(local(date(2026, 11, 30), 23, 59))
    assert publish_monthly_ranking(engine, clock, zone_reader, ranking) is None
    clock.set(local(date(2026, 12, 1), 8, 59))
    assert publish_monthly_ranking(engine, clock, zone_reader, ranking) is None
    clock.set(local(date(2026, 12, 1), 9, 0))
    assert publish_monthly_ranking(engine, clock, zone_reader, ranking) == date(2026, 11, 1)
    for minutes in range(1, 5):  # the minute ticks that follow
        clock.set(local(date(2026, 12, 1), 9, minutes))
        assert publish_monthly_ranking(engine, clock, zone_reader, ranking) is None
    restarted = make_engine(str(engine.url))
    clock.set(local(date(2026, 12, 5), 9, 0))
    assert publish_monthly_ranking(restarted, clock, zone_reader, ranking) is None
    clock.set(local(date(2027, 1, 3), 14, 0))  # down on the 1st: caught up when back
    assert publish_monthly_ranking(restarted, clock, zone_reader, ranking) == date(2026, 12, 1)
    assert ranking.months == [date(2026, 11, 1), date(2026, 12, 1)]
    with Session(engine) as session:
        keys = sorted(r.key for r in session.exec(select(ScheduledRun)).all())
        queued = session.exec(select(OutboxMessage).where(OutboxMessage.chat_id == -100777)).all()
    assert keys == ["monthly_ranking:2026-11", "monthly_ranking:2026-12"]
    assert len(queued) == 2
    restarted.dispose()


def test_a_ranking_that_fails_is_tried_again_and_a_switched_off_one_never_runs(
    tmp_path: Path,
) -> None:
    engine = zone_database(tmp_path)
    failing = FakeRanking(fail=1)
    jobs = CalendarJobs(
        engine, FakeClock(local(date(2026, 12, 1), 9, 0)), zone_reader, monthly_ranking=failing
    )
    jobs.tick()  # the ranking fails: logged, nothing recorded
    with Session(engine) as session:
        assert session.get(ScheduledRun, "monthly_ranking:2026-11") is None
    jobs.tick()
    jobs.tick()
    assert failing.months == [date(2026, 11, 1)]

    off = zone_variant(tmp_path, **{'monthly_ranking: "09:00"': "monthly_ranking: off"})
    folder = tmp_path / "off"
    folder.mkdir()
    quiet = zone_database(folder, off)
    never = FakeRanking()
    clock = FakeClock(local(date(2026, 12, 1), 0, 0))
    for _ in range(40):
        clock.advance(timedelta(hours=1))
        assert publish_monthly_ranking(quiet, clock, zone_reader, never) is None
    assert never.months == []


# --- through the running service -------------------------------------------------------------


async def restart(h: Harness) -> None:
    """The service stops and a new one starts on the same database (the emulator stays)."""
    await h.service.stop()
    app = build_application(
        h.emu.token, base_url=f"{h.emu.url}/bot", base_file_url=f"{h.emu.url}/file/bot"
    )
    h.service = Service(
        app,
        h.engine,
        h.clock,
        ZoneCache(ttl=0),
        limits=FAST,
        long_poll=1,
        data_dir=h.service.data_dir,
    )
    await h.service.start()


async def test_the_running_service_sends_the_digest_once_across_a_restart(
    harness: Harness,
) -> None:
    h = harness
    manager = await h.join("wang.fang", "manager")
    lead = await h.join("liu.yang", "lead", squad="PV")
    file(h.engine, h.clock.now(), "qian.hao")
    tomorrow = h.clock.now().astimezone(SH).date() + timedelta(days=1)
    h.clock.set(local(tomorrow, 8, 29))
    await asyncio.to_thread(h.service.calendar.tick)
    await h.settle()
    assert not any("每日简报" in t for t in h.texts(manager))

    h.clock.set(local(tomorrow, 8, 30))
    await asyncio.to_thread(h.service.calendar.tick)  # what APScheduler runs every minute
    digest = await h.said(manager, "☀️ 每日简报｜全区")
    assert "新收 1 件" in digest["text"]
    await h.said(lead, "☀️ 每日简报｜光伏组件项目服务专班")

    await restart(h)  # the start-up catch-up finds today's digest sent
    await asyncio.to_thread(h.service.calendar.tick)
    await h.settle()
    assert sum("每日简报" in t for t in h.texts(manager)) == 1
    assert sum("每日简报" in t for t in h.texts(lead)) == 1

    h.clock.set(local(tomorrow + timedelta(days=1), 9, 0))
    await restart(h)  # down at 08:30: the digest goes out when the bot is back
    await h.said(manager, "每日简报", count=2)
    await h.settle()
    assert sum("每日简报" in t for t in h.texts(manager)) == 2
