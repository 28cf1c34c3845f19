"""Alert storms: when many alerts fall due for one recipient at once (after downtime, a long
holiday, a mass breach), the recipient gets one digest per level instead of one message per
ticket, while the ledger stays one row per ticket and level; a lone alert still comes on its
own, at once. Driven on a migrated database with the injected clock, never sleeping."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from bot.i18n import LOCALES, render
from models.clock import FakeClock
from models.db import is_busy, make_engine
from models.plumbing import AlertRecord, OutboxMessage
from models.ticket import Ticket, TicketAlarm
from models.zone.config import describe_org, read_zone
from scheduler.deadline_timer import DeadlineTimer
from tests.harness import zone_database, zone_variant
from tests.unit.test_deadlines import MONDAY_9AM, Zone, bind_everyone

MANAGERS = ("wang.fang", "zhao.qiang", "sun.li")
SQUAD = ("liu.yang", "zhou.jun", "xu.hui", "wu.gang")  # squad PV, liu.yang its lead


def storms_zone(tmp_path: Path, clock: FakeClock, alerts: str | None = None) -> Zone:
    source = zone_variant(
        tmp_path, **({"managers:\n": f"alerts: {alerts}\nmanagers:\n"} if alerts else {})
    )
    engine = zone_database(tmp_path, source)
    bind_everyone(engine)
    return Zone(engine, clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_9AM)


@pytest.fixture
def zone(tmp_path: Path, clock: FakeClock) -> Any:
    found = storms_zone(tmp_path, clock)
    yield found
    found.engine.dispose()


def clones(zone: Zone, ticket_id: int, count: int, step: timedelta) -> list[int]:
    """`count` more tickets like this one, each filed `step` after the one before."""
    table = Ticket.__table__  # type: ignore[attr-defined]
    alarms = TicketAlarm.__table__  # type: ignore[attr-defined]
    moved = ("created_at", "updated_at", "response_due", "handling_due")
    with zone.engine.begin() as conn:
        last = conn.execute(core_select(func.max(table.c.id))).scalar_one()
        base = dict(
            conn.execute(core_select(table).where(table.c.id == ticket_id)).mappings().one()
        )
        armed = conn.execute(
            core_select(alarms.c.next_alert_at).where(alarms.c.ticket_id == ticket_id)
        ).scalar()
        rows = []
        for i in range(1, count + 1):
            # the database works out the figure columns for each clone (models/ticket.py)
            row = {k: v for k, v in base.items() if k != "id" and table.c[k].computed is None}
            row["number"] = f"{base['number']}-{i:04d}"
            for name in moved:
                if row[name] is not None:
                    row[name] = row[name] + step * i
            rows.append(row)
        conn.execute(table.insert(), rows)
        found = conn.execute(core_select(table.c.id).where(table.c.id > last).order_by(table.c.id))
        ids = [int(r[0]) for r in found]
        if armed is not None:
            conn.execute(
                alarms.insert(),
                [
                    {"ticket_id": tid, "next_alert_at": armed + step * i}
                    for i, tid in enumerate(ids, 1)
                ],
            )
        return [ticket_id, *ids]


def messages(zone: Zone, key: str | None = None) -> list[OutboxMessage]:
    rows = zone.alert_rows()
    return rows if key is None else [r for r in rows if r.chat_id == zone.chat_of(key)]


def digests(zone: Zone) -> list[OutboxMessage]:
    return [r for r in zone.alert_rows() if r.template.startswith("alert.storm.")]


def rendered(zone: Zone, row: OutboxMessage) -> dict[str, str]:
    """The message as each language renders it."""
    with Session(zone.engine) as session:
        tz = read_zone(session).tz
    params = json.loads(row.params)
    return {
        locale: render(locale, row.template, params, tz, lambda code, _: code) for locale in LOCALES
    }


def numbers(zone: Zone, ids: list[int]) -> list[str]:
    return [zone.ticket(tid).number for tid in ids]


# --- a storm -------------------------------------------------------------------------------


def test_a_storm_of_50_breaches_gives_one_digest_per_level(zone: Zone) -> None:
    filed = zone.clock.now()
    ids = clones(zone, zone.file("qian.hao", "planning_permit"), 49, timedelta(seconds=1))
    assert len(ids) == 50

    # the squad's 50 first-reply warnings fall due within the minute: one digest each
    told = zone.at(filed + timedelta(minutes=8, seconds=49))
    assert told == 50
    for key in SQUAD:
        (row,) = messages(zone, key)
        assert row.template == "alert.storm.warning"
        assert json.loads(row.params)["count"] == 50
        assert row.ticket_id is None
    assert Counter(zone.ledger()) == Counter({("response", "warning", 0): 50})

    # then the 50 breaches, the lead's matter: one digest naming the oldest first
    assert zone.at(filed + timedelta(minutes=10, seconds=49)) == 50
    lead = [r for r in messages(zone, "liu.yang") if r.template == "alert.storm.breach"]
    assert len(lead) == 1
    params = json.loads(lead[0].params)
    assert params["count"] == 50
    named = [line["text"]["params"]["number"] for line in params["lines"]["lines"]]
    assert named == numbers(zone, ids[:10])  # the oldest ten, oldest first
    assert params["more"]["text"]["params"] == {"count": 40}
    assert Counter(zone.ledger()) == Counter(
        {("response", "warning", 0): 50, ("response", "breach", 0): 50}
    )
    for tid in ids:
        assert zone.ledger(tid) == [("response", "warning", 0), ("response", "breach", 0)]
    # nothing per ticket: the squad has 4 + the lead 1 messages in all
    assert len(zone.alert_rows()) == 5
    for key in MANAGERS:
        assert messages(zone, key) == []

    for locale, text in rendered(zone, lead[0]).items():
        assert "{" not in text and "}" not in text, (locale, text)
        assert "50" in text and "/my" in text and "40" in text
        assert numbers(zone, ids[:1])[0] in text and numbers(zone, ids[10:11])[0] not in text
    zh = rendered(zone, lead[0])["zh-CN"]
    assert "50 项时限已过" in zh and "另有 40 件" in zh
    assert "overdue" in rendered(zone, lead[0])["en"]


def test_every_digest_renders_in_both_languages(zone: Zone) -> None:
    filed = zone.clock.now()
    clones(zone, zone.file("qian.hao", "planning_permit"), 29, timedelta(seconds=1))
    zone.at(filed + timedelta(hours=4))  # response and handling breaches, supervision
    found = {r.template for r in digests(zone)}
    assert found == {"alert.storm.breach", "alert.storm.supervision"}
    for row in digests(zone):
        for locale, text in rendered(zone, row).items():
            assert "{" not in text and "}" not in text, (locale, text)
            assert str(json.loads(row.params)["count"]) in text, (locale, text)
    with Session(zone.engine) as session:
        hook_or_chat = session.exec(
            select(OutboxMessage).where(col(OutboxMessage.template).startswith("alert.storm."))
        ).all()
    assert {r.locale for r in hook_or_chat} == {"zh-CN"}


# --- alone and at once ---------------------------------------------------------------------


def test_a_single_breach_still_arrives_alone_and_at_once(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    assert zone.at(filed + timedelta(minutes=10) - timedelta(seconds=1)) == 1  # the warning
    assert zone.at(filed + timedelta(minutes=10)) == 1
    assert zone.alerts_to("liu.yang", tid) == [
        ("alert.warning", "response"),
        ("alert.breach", "response"),
    ]
    assert digests(zone) == []

    # a lone alert right after a storm is still told on its own
    zone.clock.set(filed + timedelta(hours=1))
    others = clones(zone, zone.file("qian.hao", "planning_permit"), 29, timedelta(seconds=1))
    start = zone.ticket(others[0]).created_at
    # 29 breaches (their warnings came too late to be told) and the last one's warning
    assert zone.at(start + timedelta(minutes=10, seconds=28)) == 30
    assert [r.template for r in digests(zone)] == ["alert.storm.breach"]
    assert zone.at(start + timedelta(minutes=10, seconds=29)) == 1
    assert zone.alerts_to("liu.yang", others[-1]) == [
        ("alert.warning", "response"),
        ("alert.breach", "response"),
    ]


# --- the zone file's threshold and window --------------------------------------------------


def test_threshold_and_window_come_from_the_zone_file(tmp_path: Path, clock: FakeClock) -> None:
    zone = storms_zone(tmp_path, clock, "{storm_threshold: 3, storm_window: 5m}")
    with Session(zone.engine) as session:
        config = read_zone(session)
        assert (config.storm_threshold, config.storm_window) == (3, timedelta(minutes=5))
        assert describe_org(session)["zone"]["alerts"] == {
            "storm_threshold": 3,
            "storm_window": "5m",
        }
    filed = clock.now()
    ids = clones(zone, zone.file("qian.hao", "planning_permit"), 4, timedelta(minutes=1))
    # silence the warnings: only breaches matter here
    zone.at(filed + timedelta(minutes=8))
    for offset in (1, 2, 3, 4):
        zone.at(filed + timedelta(minutes=8 + offset))
    zone.at(filed + timedelta(minutes=10, seconds=30))  # first breach: alone
    zone.at(filed + timedelta(minutes=12, seconds=30))  # two together: 3 in the window
    assert [r.template for r in messages(zone, "liu.yang") if "breach" in r.template] == [
        "alert.breach"
    ] * 3
    zone.at(filed + timedelta(minutes=14, seconds=30))  # two more: 5 in the window, > 3
    breaches = [r for r in messages(zone, "liu.yang") if "breach" in r.template]
    assert [r.template for r in breaches] == ["alert.breach"] * 3 + ["alert.storm.breach"]
    assert json.loads(breaches[-1].params)["count"] == 2
    assert Counter(d for d, lv, _ in zone.ledger() if lv == "breach") == {"response": len(ids)}
    zone.engine.dispose()


def test_a_short_window_forgets_what_came_before(tmp_path: Path, clock: FakeClock) -> None:
    zone = storms_zone(tmp_path, clock, "{storm_threshold: 3, storm_window: 90s}")
    filed = clock.now()
    clones(zone, zone.file("qian.hao", "planning_permit"), 4, timedelta(minutes=1))
    zone.at(filed + timedelta(minutes=12, seconds=30))  # warnings, three breaches: alone
    zone.at(filed + timedelta(minutes=14, seconds=30))  # two more; the first three are gone
    breaches = [r.template for r in messages(zone, "liu.yang") if "breach" in r.template]
    assert breaches == ["alert.breach"] * 5
    zone.engine.dispose()


def test_the_default_threshold_is_20(zone: Zone) -> None:
    filed = zone.clock.now()
    clones(zone, zone.file("qian.hao", "planning_permit"), 19, timedelta(seconds=1))
    zone.at(filed + timedelta(minutes=10, seconds=30))
    lead = [r.template for r in messages(zone, "liu.yang") if "breach" in r.template]
    assert lead == ["alert.breach"] * 20


# --- catch-up after downtime ---------------------------------------------------------------


def _fire_tolerating_busy(timer: DeadlineTimer) -> None:
    try:
        timer.sweep()
    except Exception as exc:  # pragma: no cover - sweep already swallows it
        if not is_busy(exc):
            raise


def test_catch_up_after_downtime_sends_each_digest_once(tmp_path: Path, clock: FakeClock) -> None:
    zone = storms_zone(tmp_path, clock)
    filed = clock.now()
    ids = clones(zone, zone.file("qian.hao", "planning_permit"), 1999, timedelta(seconds=1))
    # the bot was down for four hours; two schedulers start at once, then one restarts
    clock.set(filed + timedelta(hours=4))
    second = make_engine(str(zone.engine.url))
    timers = [DeadlineTimer(e, clock, read_zone) for e in (zone.engine, second)]
    threads = [threading.Thread(target=_fire_tolerating_busy, args=(t,)) for t in timers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    DeadlineTimer(second, clock, read_zone).sweep()  # the restart
    _fire_tolerating_busy(timers[0])
    second.dispose()

    ledger = Counter(zone.ledger())
    assert ledger == Counter(
        {
            ("response", "warning", 0): 2000,
            ("response", "breach", 0): 2000,
            ("handling", "warning", 0): 2000,
            ("handling", "breach", 0): 2000,
            ("handling", "supervision", 0): 2000,
        }
    )
    assert sum(t.fired for t in timers) == 3 * len(ids)
    rows = zone.alert_rows()
    # per recipient and level one digest: the lead's breaches (both deadlines in one) and
    # supervision, each manager's breach, the top manager's supervision
    assert all(r.template.startswith("alert.storm.") for r in rows)
    told = Counter((r.chat_id, r.template) for r in rows)
    assert max(told.values()) == 1
    expected = {
        (zone.chat_of("liu.yang"), "alert.storm.breach"),
        (zone.chat_of("liu.yang"), "alert.storm.supervision"),
        (zone.chat_of("wang.fang"), "alert.storm.supervision"),
        *((zone.chat_of(key), "alert.storm.breach") for key in MANAGERS),
    }
    assert set(told) == expected
    lead = next(r for r in rows if r.chat_id == zone.chat_of("liu.yang") and "breach" in r.template)
    assert json.loads(lead.params)["count"] == 2 * 2000  # first reply and handling
    with Session(zone.engine) as session:
        assert session.exec(select(TicketAlarm)).all() == []
        assert len(session.exec(select(AlertRecord)).all()) == 5 * 2000
    zone.engine.dispose()
