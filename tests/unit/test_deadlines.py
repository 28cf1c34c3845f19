"""Deadlines that bite (issue 3), proved on a migrated database with the injected clock: the
per-category targets, the 80% warning, what ends or pauses each clock, plans, extensions,
working hours with holidays and make-up days (调休), rework cycles, and the alert ledger that
fires each level exactly once, across restarts and between two schedulers.

Long because each clock, pause and escalation level has its own proof.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, create_engine, select

from models import closure, extensions, filing, handling
from models.alerts import due_tickets
from models.clock import FakeClock
from models.db import is_busy, make_engine
from models.desk import Desk, DeskError
from models.org import Person
from models.people import Actor, actor_for
from models.plumbing import AlertRecord, OutboxMessage
from models.ticket import Ticket, earliest_armed
from models.zone.config import read_zone
from models.zone.load import load_and_apply
from scheduler.deadline_timer import DeadlineTimer
from tests.harness import EXAMPLE_ZONE, zone_database, zone_variant

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 23 November 2026, 09:00 in the zone: an ordinary working morning.
MONDAY_9AM = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
TG_BASE = 700_000
T = TypeVar("T")


def bind_everyone(engine: Engine) -> None:
    """Everyone in the zone file gets a Telegram chat, so every message has a recipient."""
    with Session(engine) as session:
        session.execute(update(Person).values(telegram_user_id=col(Person.id) + TG_BASE))
        session.commit()


class Zone:
    """The domain driven directly: each call is one transaction at the fake clock's time."""

    def __init__(self, engine: Engine, clock: FakeClock) -> None:
        self.engine = engine
        self.clock = clock
        self.timer = DeadlineTimer(engine, clock, read_zone)

    def run(self, action: Callable[[Desk], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            desk = Desk(session, self.clock.now(), read_zone(session))
            result = action(desk)
            session.commit()
            return result

    def actor(self, session: Session, key: str) -> Actor:
        person = session.exec(select(Person).where(Person.key == key)).one()
        assert person.telegram_user_id is not None
        found = actor_for(session, person.telegram_user_id)
        assert found is not None
        return found

    def act(self, key: str, action: Callable[[Desk, Actor, Ticket], T], ticket_id: int) -> T:
        def step(desk: Desk) -> T:
            ticket = desk.session.get(Ticket, ticket_id)
            assert ticket is not None
            return action(desk, self.actor(desk.session, key), ticket)

        return self.run(step)

    def file(self, who: str, category: str, urgency: str = "normal", text: str = "工地停水") -> int:
        def step(desk: Desk) -> int:
            actor = self.actor(desk.session, who)
            filing.start_draft(desk, actor)
            filing.choose_category(desk, actor, category)
            filing.describe(desk, actor, text)
            filing.choose_urgency(desk, actor, urgency)
            ticket = filing.submit(desk, actor)
            assert ticket.id is not None
            return ticket.id

        return self.run(step)

    def ticket(self, ticket_id: int) -> Ticket:
        with Session(self.engine) as session:
            found = session.get(Ticket, ticket_id)
            assert found is not None
            return found

    def chat_of(self, key: str) -> int:
        with Session(self.engine) as session:
            person = session.exec(select(Person).where(Person.key == key)).one()
            assert person.telegram_user_id is not None
            return person.telegram_user_id

    def ledger(self, ticket_id: int | None = None) -> list[tuple[str, str, int]]:
        with Session(self.engine) as session:
            query = select(AlertRecord).order_by(col(AlertRecord.id))
            if ticket_id is not None:
                query = query.where(AlertRecord.ticket_id == ticket_id)
            return [(r.deadline, r.level, r.cycle) for r in session.exec(query).all()]

    def alert_rows(self, ticket_id: int | None = None) -> list[OutboxMessage]:
        with Session(self.engine) as session:
            query = (
                select(OutboxMessage)
                .where(col(OutboxMessage.template).startswith("alert."))
                .order_by(col(OutboxMessage.id))
            )
            if ticket_id is not None:
                query = query.where(OutboxMessage.ticket_id == ticket_id)
            return list(session.exec(query).all())

    def alerts_to(self, key: str, ticket_id: int | None = None) -> list[tuple[str, str]]:
        """(template, deadline) of every alert queued for this person, in order."""
        chat = self.chat_of(key)
        return [
            (row.template, json.loads(row.params)["deadline"]["key"].removeprefix("deadline."))
            for row in self.alert_rows(ticket_id)
            if row.chat_id == chat
        ]

    def at(self, when: datetime) -> int:
        """Move the clock to `when` and let the timer fire what is due; returns how many."""
        self.clock.set(when)
        return self.timer.fire_due()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MONDAY_9AM)


@pytest.fixture
def zone(tmp_path: Path, clock: FakeClock) -> Iterator[Zone]:
    engine = zone_database(tmp_path)
    bind_everyone(engine)
    yield Zone(engine, clock)
    engine.dispose()


# --- targets -------------------------------------------------------------------------------


def test_targets_follow_category_and_urgency_and_reach_the_acknowledgement(zone: Zone) -> None:
    filed = zone.clock.now()
    urgent_water = zone.ticket(zone.file("qian.hao", "water", "urgent"))
    assert urgent_water.response_due == filed + timedelta(minutes=5)
    assert urgent_water.handling_due == filed + timedelta(hours=1)

    normal_water = zone.ticket(zone.file("qian.hao", "water", "normal"))
    assert normal_water.response_due == filed + timedelta(minutes=10)
    assert normal_water.handling_due == filed + timedelta(hours=2)

    urgent_line = zone.ticket(zone.file("qian.hao", "power_line", "urgent"))
    assert urgent_line.response_due == filed + timedelta(minutes=5)
    assert urgent_line.handling_due == filed + timedelta(hours=1, minutes=30)

    urgent_permit = zone.ticket(zone.file("qian.hao", "planning_permit", "urgent"))
    assert urgent_permit.response_due == filed + timedelta(minutes=10)
    assert urgent_permit.handling_due == filed + timedelta(hours=2)

    with Session(zone.engine) as session:
        ack = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.ticket_id == urgent_water.id, OutboxMessage.template == "ticket.filed"
            )
        ).one()
    params = json.loads(ack.params)
    assert params["response_due"] == {"time": (filed + timedelta(minutes=5)).isoformat()}
    assert params["handling_due"] == {"time": (filed + timedelta(hours=1)).isoformat()}


def test_warning_at_80_percent_then_breach_to_the_lead(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    assert zone.ticket(tid).next_alert_at == filed + timedelta(minutes=8)

    assert zone.at(filed + timedelta(minutes=7, seconds=59)) == 0
    assert zone.at(filed + timedelta(minutes=8)) == 1
    assert zone.ledger(tid) == [("response", "warning", 0)]
    # nobody claimed it: the whole squad is warned, managers are not
    for key in ("liu.yang", "zhou.jun", "xu.hui", "wu.gang"):
        assert zone.alerts_to(key, tid) == [("alert.warning", "response")]
    assert zone.alerts_to("wang.fang", tid) == []

    assert zone.at(filed + timedelta(minutes=9, seconds=59)) == 0
    assert zone.at(filed + timedelta(minutes=10)) == 1
    assert zone.alerts_to("liu.yang", tid)[-1] == ("alert.breach", "response")
    assert zone.alerts_to("zhou.jun", tid) == [("alert.warning", "response")]
    assert zone.alerts_to("wang.fang", tid) == []

    # handling: warning at 80% of 2h, breach at 2h to lead and every manager
    assert zone.at(filed + timedelta(hours=1, minutes=35, seconds=59)) == 0
    assert zone.at(filed + timedelta(hours=1, minutes=36)) == 1
    assert zone.at(filed + timedelta(hours=2) - timedelta(seconds=1)) == 0
    assert zone.at(filed + timedelta(hours=2)) == 1
    for key in ("liu.yang", "wang.fang", "zhao.qiang", "sun.li"):
        assert zone.alerts_to(key, tid)[-1] == ("alert.breach", "handling")
    assert ("alert.breach", "handling") not in zone.alerts_to("zhou.jun", tid)

    # still open an hour later: supervision to the top manager, copied to the lead
    assert zone.at(filed + timedelta(hours=3) - timedelta(seconds=1)) == 0
    assert zone.at(filed + timedelta(hours=3)) == 1
    assert zone.alerts_to("wang.fang", tid)[-1] == ("alert.supervision", "handling")
    assert zone.alerts_to("liu.yang", tid)[-1] == ("alert.supervision", "handling")
    assert ("alert.supervision", "handling") not in zone.alerts_to("zhao.qiang", tid)
    assert zone.ticket(tid).next_alert_at is None


def test_warning_point_supervision_delay_and_seconds_come_from_the_zone_file(
    tmp_path: Path, clock: FakeClock
) -> None:
    variant = zone_variant(
        tmp_path,
        **{
            "default: {response: 10m, handling: 2h, plan: 1d, warn_at: 80%, "
            "supervision_after: 1h}": "default: {response: 90s, handling: 20m, plan: 1d, "
            "warn_at: 50%, supervision_after: 5m}",
        },
    )
    engine = zone_database(tmp_path, variant)
    bind_everyone(engine)
    zone = Zone(engine, clock)
    try:
        filed = clock.now()
        tid = zone.file("qian.hao", "planning_permit")
        assert zone.ticket(tid).response_due == filed + timedelta(seconds=90)
        assert zone.at(filed + timedelta(seconds=44)) == 0
        assert zone.at(filed + timedelta(seconds=45)) == 1  # half of 90 seconds
        assert zone.at(filed + timedelta(seconds=90)) == 1
        assert zone.at(filed + timedelta(minutes=10)) == 1  # half of the 20-minute handling
        assert zone.at(filed + timedelta(minutes=20)) == 1
        assert zone.at(filed + timedelta(minutes=25) - timedelta(seconds=1)) == 0
        assert zone.at(filed + timedelta(minutes=25)) == 1
        assert zone.ledger(tid)[-1] == ("handling", "supervision", 0)
        # the urgent water rule keeps its own 5m/1h and inherits the rest from the default
        water = zone.ticket(zone.file("qian.hao", "water", "urgent"))
        assert water.response_due == zone.clock.now() + timedelta(minutes=5)
        assert water.next_alert_at == zone.clock.now() + timedelta(minutes=2, seconds=30)
    finally:
        engine.dispose()


def test_fired_at_is_the_deadline_itself(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "water", "urgent")
    zone.at(filed + timedelta(minutes=4))  # 80% of 5 minutes
    zone.at(filed + timedelta(minutes=5))
    with Session(zone.engine) as session:
        rows = session.exec(
            select(AlertRecord)
            .where(AlertRecord.ticket_id == tid)
            .order_by(col(AlertRecord.id))  # in the order they were recorded
        ).all()
    assert [(r.level, r.fired_at - filed, r.due_at - filed) for r in rows] == [
        ("warning", timedelta(minutes=4), timedelta(minutes=5)),
        ("breach", timedelta(minutes=5), timedelta(minutes=5)),
    ]


# --- what ends, pauses and moves a clock ---------------------------------------------------


def test_claim_ends_the_response_clock(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    zone.clock.set(filed + timedelta(minutes=3))
    zone.act("zhou.jun", handling.claim, tid)
    ticket = zone.ticket(tid)
    assert ticket.first_response_at == filed + timedelta(minutes=3)
    assert ticket.next_alert_at == filed + timedelta(hours=1, minutes=36)

    assert zone.at(filed + timedelta(minutes=30)) == 0
    assert zone.at(filed + timedelta(hours=1, minutes=36)) == 1
    # the owner alone is warned once someone owns the ticket
    assert zone.alerts_to("zhou.jun", tid) == [("alert.warning", "handling")]
    assert zone.alerts_to("xu.hui", tid) == []
    assert all(deadline != "response" for deadline, _, _ in zone.ledger(tid))


def test_first_reply_ends_the_response_clock(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    zone.clock.set(filed + timedelta(minutes=9))

    def say(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
        return handling.reply(desk, actor, ticket, "收到，马上联系规划局")

    # the 8-minute warning was never fired (the timer was not run): it is simply gone now
    zone.act("xu.hui", say, tid)
    assert zone.ticket(tid).first_response_at == filed + timedelta(minutes=9)
    assert zone.at(filed + timedelta(minutes=11)) == 0
    assert zone.ledger(tid) == []
    assert zone.ticket(tid).next_alert_at == filed + timedelta(hours=1, minutes=36)


def test_waiting_pauses_handling_and_the_answer_resumes_it_with_the_time_left(
    zone: Zone,
) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(minutes=30))

    def ask(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
        return handling.wait_for_enterprise(desk, actor, ticket, "请提供规划总平面图")

    zone.act("zhou.jun", ask, tid)
    paused = zone.ticket(tid)
    assert paused.state == "waiting"
    assert paused.handling_remaining_s == 90 * 60
    assert paused.next_alert_at is None

    # a day waiting on the enterprise raises nothing
    assert zone.at(filed + timedelta(hours=26)) == 0
    assert zone.ledger(tid) == []

    resumed_at = filed + timedelta(hours=26)

    def answer(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
        return handling.enterprise_message(desk, actor, ticket, "图纸已上传")

    zone.act("qian.hao", answer, tid)
    ticket = zone.ticket(tid)
    assert ticket.state == "claimed"
    assert ticket.handling_due == resumed_at + timedelta(minutes=90)
    assert ticket.next_alert_at is not None and ticket.next_alert_at > resumed_at

    assert zone.at(resumed_at + timedelta(minutes=90) - timedelta(seconds=1)) == 1  # warning
    assert zone.ledger(tid) == [("handling", "warning", 0)]
    assert zone.at(resumed_at + timedelta(minutes=90)) == 1
    assert zone.ledger(tid)[-1] == ("handling", "breach", 0)


def test_plan_due_a_day_after_filing_then_the_plan_target_is_the_next_deadline(
    zone: Zone,
) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "land")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(hours=1))
    zone.act("zhou.jun", handling.needs_plan, tid)
    ticket = zone.ticket(tid)
    assert ticket.plan_due == filed + timedelta(days=1)
    assert ticket.handling_due is None  # the plan replaces the 2-hour handling promise
    assert ticket.next_alert_at == filed + timedelta(hours=19, minutes=12)  # 80% of a day

    assert zone.at(filed + timedelta(hours=3)) == 0  # no handling breach any more
    assert zone.at(filed + timedelta(hours=19, minutes=12)) == 1
    assert zone.ledger(tid) == [("plan", "warning", 0)]

    recorded = filed + timedelta(hours=20)
    target = recorded + timedelta(days=5)
    zone.clock.set(recorded)

    def plan(desk: Desk, actor: Actor, ticket: Ticket) -> Any:
        return handling.record_plan(desk, actor, ticket, "挂牌前完成文勘和规划条件", target)

    zone.act("zhou.jun", plan, tid)
    ticket = zone.ticket(tid)
    assert ticket.plan_target == target
    reminder = recorded + timedelta(days=4)  # 80% of the way to the target
    assert ticket.next_alert_at == reminder

    assert zone.at(filed + timedelta(days=1, hours=2)) == 0  # the plan was in time
    assert zone.at(reminder - timedelta(seconds=1)) == 0
    assert zone.at(reminder) == 1
    assert zone.alerts_to("zhou.jun", tid)[-1] == ("alert.warning", "plan_target")
    assert zone.at(target) == 1
    assert zone.alerts_to("wang.fang", tid) == [("alert.breach", "plan_target")]
    assert zone.at(target + timedelta(hours=1)) == 1
    assert zone.ledger(tid)[-1] == ("plan_target", "supervision", 0)


def test_a_missed_plan_breaches_and_reaches_the_managers(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "land")
    zone.act("zhou.jun", handling.claim, tid)
    zone.act("zhou.jun", handling.needs_plan, tid)
    assert zone.at(filed + timedelta(days=1) - timedelta(seconds=1)) == 1  # the warning
    assert zone.at(filed + timedelta(days=1)) == 1
    assert zone.alerts_to("sun.li", tid) == [("alert.breach", "plan")]
    assert zone.at(filed + timedelta(days=1, hours=1)) == 1
    assert zone.alerts_to("wang.fang", tid)[-1] == ("alert.supervision", "plan")


def _request(extra: timedelta) -> Callable[[Desk, Actor, Ticket], Any]:
    def step(desk: Desk, actor: Actor, ticket: Ticket) -> Any:
        return extensions.request_extension(desk, actor, ticket, extra, "等待供电公司停电窗口")

    return step


def _decide(ext_id: int, verdict: str) -> Callable[[Desk, Actor, Ticket], Any]:
    def step(desk: Desk, actor: Actor, ticket: Ticket) -> Any:
        return extensions.decide_extension(desk, actor, ticket, f"{ext_id}:{verdict}")

    return step


def test_an_approved_extension_moves_the_deadline(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "power_line")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(hours=1))
    ext = zone.act("zhou.jun", _request(timedelta(hours=3)), tid)
    assert zone.ticket(tid).handling_due == filed + timedelta(hours=2)  # not yet
    zone.clock.set(filed + timedelta(hours=1, minutes=10))
    decided = zone.act("wang.fang", _decide(ext.id, "approve"), tid)
    assert decided.status == "approved"
    new_due = filed + timedelta(hours=5)
    assert zone.ticket(tid).handling_due == new_due

    assert zone.at(filed + timedelta(hours=2, minutes=30)) == 0
    assert zone.ledger(tid) == []
    assert zone.at(new_due - timedelta(seconds=1)) == 1  # the warning, 80% of 5 hours is 4h
    assert zone.at(new_due) == 1
    assert zone.ledger(tid) == [("handling", "warning", 0), ("handling", "breach", 0)]


def test_a_refused_extension_leaves_the_deadline(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "power_line")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(hours=1))
    ext = zone.act("zhou.jun", _request(timedelta(hours=3)), tid)
    decided = zone.act("zhao.qiang", _decide(ext.id, "refuse"), tid)
    assert decided.status == "refused"
    assert zone.ticket(tid).handling_due == filed + timedelta(hours=2)
    assert zone.at(filed + timedelta(hours=1, minutes=36)) == 1
    assert zone.at(filed + timedelta(hours=2)) == 1
    assert zone.ledger(tid) == [("handling", "warning", 0), ("handling", "breach", 0)]


def test_an_extension_approved_after_the_deadline_does_not_move_it(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "power_line")
    zone.act("zhou.jun", handling.claim, tid)
    assert zone.at(filed + timedelta(hours=1, minutes=36)) == 1
    zone.clock.set(filed + timedelta(hours=1, minutes=50))
    ext = zone.act("zhou.jun", _request(timedelta(hours=3)), tid)
    assert zone.at(filed + timedelta(hours=2, minutes=5)) == 1
    decided = zone.act("wang.fang", _decide(ext.id, "approve"), tid)
    assert decided.status == "expired"
    assert zone.ticket(tid).handling_due == filed + timedelta(hours=2)
    assert zone.at(filed + timedelta(hours=3)) == 1  # supervision still comes
    assert zone.ledger(tid)[-1] == ("handling", "supervision", 0)


def _ask_for_documents(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
    return handling.wait_for_enterprise(desk, actor, ticket, "请补充用地红线图")


def _documents_sent(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
    return handling.enterprise_message(desk, actor, ticket, "红线图已上传")


def test_an_extension_approved_while_waiting_is_kept_when_the_clock_resumes(
    zone: Zone,
) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(minutes=30))
    zone.act("zhou.jun", _ask_for_documents, tid)  # 90 minutes left, standing still
    # long after the old 2-hour mark the clock is still paused: not too late to ask
    zone.clock.set(filed + timedelta(hours=5))
    ext = zone.act("zhou.jun", _request(timedelta(hours=1)), tid)
    zone.clock.set(filed + timedelta(hours=5, minutes=10))
    assert zone.act("wang.fang", _decide(ext.id, "approve"), tid).status == "approved"
    assert zone.ticket(tid).handling_remaining_s == 150 * 60

    resumed = filed + timedelta(hours=6)
    zone.clock.set(resumed)
    zone.act("qian.hao", _documents_sent, tid)
    assert zone.ticket(tid).handling_due == resumed + timedelta(minutes=150)
    assert zone.at(resumed + timedelta(minutes=149)) == 1  # the warning only
    assert zone.at(resumed + timedelta(minutes=150)) == 1
    assert zone.ledger(tid) == [("handling", "warning", 0), ("handling", "breach", 0)]


def test_a_plan_asked_for_while_waiting_replaces_the_handling_clock_for_good(
    zone: Zone,
) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "land")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(minutes=30))
    zone.act("zhou.jun", _ask_for_documents, tid)
    zone.act("zhou.jun", handling.needs_plan, tid)
    zone.clock.set(filed + timedelta(hours=3))
    zone.act("qian.hao", _documents_sent, tid)
    ticket = zone.ticket(tid)
    assert ticket.state == "claimed"
    assert ticket.handling_due is None
    assert ticket.next_alert_at == filed + timedelta(hours=19, minutes=12)
    assert zone.at(filed + timedelta(hours=6)) == 0
    assert zone.ledger(tid) == []


def test_a_plan_cannot_be_asked_for_after_the_handling_deadline(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "land")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(hours=2))
    with pytest.raises(DeskError) as refused:
        zone.act("zhou.jun", handling.needs_plan, tid)
    assert refused.value.key == "plan.too_late"


def test_an_extension_cannot_be_asked_for_after_the_deadline(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "power_line")
    zone.act("zhou.jun", handling.claim, tid)
    zone.clock.set(filed + timedelta(hours=2))
    with pytest.raises(DeskError) as refused:
        zone.act("zhou.jun", _request(timedelta(hours=1)), tid)
    assert refused.value.key == "extension.too_late"


# --- working hours -------------------------------------------------------------------------


def local(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


@pytest.fixture
def office_zone(tmp_path: Path) -> Iterator[Zone]:
    """The example zone on the working-hours clock, with one extra zone holiday."""
    variant = zone_variant(
        tmp_path,
        **{
            "clock: round_the_clock": "clock: working_hours",
            "extra_holidays: []": 'extra_holidays: ["2026-10-13"]',
        },
    )
    engine = zone_database(tmp_path, variant)
    bind_everyone(engine)
    yield Zone(engine, FakeClock(local(2026, 9, 30, 17, 25)))
    engine.dispose()


def test_working_hours_skip_the_national_day_holiday(office_zone: Zone) -> None:
    zone = office_zone
    # Wednesday 30 September, 17:25: five working minutes left before the Golden Week
    tid = zone.file("qian.hao", "planning_permit")
    ticket = zone.ticket(tid)
    assert ticket.response_due == local(2026, 10, 8, 9, 5)
    assert ticket.handling_due == local(2026, 10, 8, 10, 55)
    with Session(zone.engine) as session:
        ack = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.ticket_id == tid, OutboxMessage.template == "ticket.filed"
            )
        ).one()
    shown = json.loads(ack.params)
    assert datetime.fromisoformat(shown["response_due"]["time"]) == local(2026, 10, 8, 9, 5)
    assert datetime.fromisoformat(shown["handling_due"]["time"]) == local(2026, 10, 8, 10, 55)

    assert zone.at(local(2026, 10, 1, 9, 5)) == 0  # a holiday, not a working morning
    assert zone.at(local(2026, 10, 8, 9, 2, 59)) == 0
    assert zone.at(local(2026, 10, 8, 9, 3)) == 1  # 5 + 3 counted minutes: the warning
    assert zone.at(local(2026, 10, 8, 9, 5)) == 1
    assert zone.ledger(tid) == [("response", "warning", 0), ("response", "breach", 0)]


def test_working_hours_count_a_make_up_saturday(office_zone: Zone) -> None:
    zone = office_zone
    # Friday 9 October 17:25; Saturday 10 October is a make-up working day (调休)
    zone.clock.set(local(2026, 10, 9, 17, 25))
    tid = zone.file("qian.hao", "planning_permit")
    assert zone.ticket(tid).response_due == local(2026, 10, 10, 9, 5)
    assert zone.at(local(2026, 10, 10, 9, 2, 59)) == 0
    assert zone.at(local(2026, 10, 10, 9, 3)) == 1
    assert zone.at(local(2026, 10, 10, 9, 5)) == 1
    assert zone.ledger(tid) == [("response", "warning", 0), ("response", "breach", 0)]

    # a Monday filing waits over the zone's own extra holiday on Tuesday 13 October
    zone.clock.set(local(2026, 10, 12, 17, 25))
    before_holiday = zone.file("qian.hao", "planning_permit")
    assert zone.ticket(before_holiday).response_due == local(2026, 10, 14, 9, 5)
    # an ordinary Friday waits for Monday
    zone.clock.set(local(2026, 10, 16, 17, 25))
    friday = zone.file("qian.hao", "planning_permit")
    assert zone.ticket(friday).response_due == local(2026, 10, 19, 9, 5)
    assert zone.ticket(friday).handling_due == local(2026, 10, 19, 10, 55)


def test_a_rule_can_count_office_hours_in_a_round_the_clock_zone(tmp_path: Path) -> None:
    """Permits wait for the bureaus' office hours; a water outage never waits."""
    variant = zone_variant(
        tmp_path,
        **{
            "    - {category: water, urgency: urgent, response: 5m, handling: 1h}": (
                "    - {category: water, urgency: urgent, response: 5m, handling: 1h}\n"
                "    - {category: planning_permit, clock: working_hours}"
            ),
        },
    )
    engine = zone_database(tmp_path, variant)
    bind_everyone(engine)
    zone = Zone(engine, FakeClock(local(2026, 10, 9, 17, 25)))
    permit = zone.file("qian.hao", "planning_permit")
    water = zone.file("qian.hao", "water")
    assert zone.ticket(permit).response_due == local(2026, 10, 10, 9, 5)  # make-up Saturday
    assert zone.ticket(water).response_due == local(2026, 10, 9, 17, 35)  # round the clock
    engine.dispose()


# --- rework --------------------------------------------------------------------------------


def test_rework_starts_a_new_cycle_whose_alerts_fire_again(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    zone.act("zhou.jun", handling.claim, tid)
    assert zone.at(filed + timedelta(hours=1, minutes=36)) == 1
    assert zone.at(filed + timedelta(hours=2)) == 1
    assert zone.ledger(tid) == [("handling", "warning", 0), ("handling", "breach", 0)]

    def done(desk: Desk, actor: Actor, ticket: Ticket) -> Ticket:
        return handling.resolve(desk, actor, ticket, "已协调规划局出具意见")

    zone.clock.set(filed + timedelta(hours=2, minutes=30))
    zone.act("zhou.jun", done, tid)
    # no supervision for a resolved ticket: the only timed event left is closing itself
    # if the enterprise never confirms (auto_close_after: 3d in the example zone)
    resolved_at = filed + timedelta(hours=2, minutes=30)
    assert zone.ticket(tid).next_alert_at == resolved_at + timedelta(days=3)
    assert zone.at(filed + timedelta(hours=3, minutes=30)) == 0
    zone.act("qian.hao", lambda d, a, t: closure.confirm(d, a, t, True), tid)
    reopened = filed + timedelta(hours=3)
    zone.clock.set(reopened)
    zone.act("qian.hao", lambda d, a, t: closure.rate(d, a, t, 2), tid)
    ticket = zone.ticket(tid)
    assert (ticket.state, ticket.cycle) == ("claimed", 1)
    assert ticket.handling_due == reopened + timedelta(hours=2)

    assert zone.at(reopened + timedelta(hours=1, minutes=35)) == 0
    assert zone.at(reopened + timedelta(hours=1, minutes=36)) == 1
    assert zone.at(reopened + timedelta(hours=2)) == 1
    assert zone.ledger(tid) == [
        ("handling", "warning", 0),
        ("handling", "breach", 0),
        ("handling", "warning", 1),
        ("handling", "breach", 1),
    ]
    assert zone.alerts_to("wang.fang", tid) == [
        ("alert.breach", "handling"),
        ("alert.breach", "handling"),
    ]


# --- exactly once --------------------------------------------------------------------------


def test_each_level_fires_once_however_often_the_timer_runs(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    points = [
        (timedelta(minutes=8), ("response", "warning", 0)),
        (timedelta(minutes=10), ("response", "breach", 0)),
        (timedelta(hours=1, minutes=36), ("handling", "warning", 0)),
        (timedelta(hours=2), ("handling", "breach", 0)),
        (timedelta(hours=3), ("handling", "supervision", 0)),
    ]
    for offset, key in points:
        assert zone.at(filed + offset) == 1
        queued = len(zone.alert_rows(tid))
        assert zone.timer.fire_due() == 0
        zone.timer.sweep()
        assert zone.at(filed + offset + timedelta(seconds=30)) == 0
        assert len(zone.alert_rows(tid)) == queued
        assert zone.ledger(tid)[-1] == key
    assert Counter(zone.ledger(tid)) == Counter({key: 1 for _, key in points})
    assert zone.ticket(tid).next_alert_at is None
    assert zone.at(filed + timedelta(days=3)) == 0
    # 4 warned twice, the lead once for the reply, lead + 3 managers, top manager + lead
    assert len(zone.alert_rows(tid)) == 4 + 1 + 4 + 4 + 2


def test_a_warning_caught_up_after_its_deadline_is_not_sent(zone: Zone) -> None:
    """Whoever runs late (a restart, a busy store) sends the breach, not a stale warning;
    the ledger still records the warning so that nothing tries it again."""
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    assert zone.at(filed + timedelta(hours=4)) == 3  # two breaches and the supervision
    assert zone.ledger(tid) == [
        ("response", "warning", 0),
        ("response", "breach", 0),
        ("handling", "warning", 0),
        ("handling", "breach", 0),
        ("handling", "supervision", 0),
    ]
    assert [row.template for row in zone.alert_rows(tid)].count("alert.warning") == 0
    assert zone.timer.fire_due() == 0


async def test_a_breach_while_the_bot_is_stopped_fires_once_after_restart(zone: Zone) -> None:
    filed = zone.clock.now()
    tid = zone.file("qian.hao", "planning_permit")
    zone.act("zhou.jun", handling.claim, tid)
    assert zone.at(filed + timedelta(hours=1, minutes=40)) == 1  # the owner's warning
    # the bot stops; the handling deadline passes while nothing runs
    zone.clock.set(filed + timedelta(hours=2, minutes=20))
    assert zone.ledger(tid) == [("handling", "warning", 0)]

    for _restart in range(3):
        timer = DeadlineTimer(zone.engine, zone.clock, read_zone)
        task = asyncio.create_task(timer.run_forever())  # its first act is the catch-up
        try:
            for _ in range(300):
                if len(zone.ledger(tid)) > 1:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        finally:
            timer.stop()
            await asyncio.wait_for(task, 5)
    assert zone.ledger(tid) == [("handling", "warning", 0), ("handling", "breach", 0)]
    for key in ("liu.yang", "wang.fang", "zhao.qiang", "sun.li"):
        assert zone.alerts_to(key, tid) == [("alert.breach", "handling")]
    assert zone.alerts_to("zhou.jun", tid) == [("alert.warning", "handling")]
    # still running after the restart: the supervision comes on time, once
    assert zone.at(filed + timedelta(hours=3)) == 1
    assert zone.alerts_to("wang.fang", tid)[-1] == ("alert.supervision", "handling")


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached in 5 s")


async def test_the_timer_told_of_a_nearer_deadline_waits_for_it_without_reading(
    zone: Zone,
) -> None:
    timer = DeadlineTimer(zone.engine, zone.clock, read_zone)
    task = asyncio.create_task(timer.run_forever())
    try:
        await _until(lambda: timer.reads == 1)  # nothing armed yet: it waits
        tid = zone.file("qian.hao", "planning_permit")
        warning = zone.ticket(tid).next_alert_at
        assert warning is not None
        timer.armed(warning + timedelta(hours=1))  # told first of a later one...
        timer.armed(warning)  # ...then of the nearer: it waits for that one
        timer.armed(warning + timedelta(minutes=5))  # a later one changes nothing
        await _until(lambda: timer.waiting_for == warning)
        await asyncio.sleep(0.05)
        assert timer.reads == 1  # told, not read
        assert timer.waiting_for == warning
        assert zone.ledger(tid) == []
        zone.clock.set(warning)  # its time comes: it reads what is due, and fires it
        await _until(lambda: zone.ledger(tid) == [("response", "warning", 0)])
        assert timer.reads >= 2
    finally:
        timer.stop()
        await asyncio.wait_for(task, 5)


def test_a_unit_of_work_notes_the_earliest_alert_time_it_wrote(zone: Zone) -> None:
    first = zone.file("qian.hao", "planning_permit")
    with Session(zone.engine, expire_on_commit=False) as session:
        desk = Desk(session, zone.clock.now(), read_zone(session))
        assert earliest_armed(session.info) is None
        actor = zone.actor(session, "zhou.jun")
        ticket = session.get(Ticket, first)
        assert ticket is not None
        handling.claim(desk, actor, ticket)  # claimed: the handling deadline is next
        session.commit()
        claimed = earliest_armed(session.info)
    assert claimed is not None and claimed == zone.ticket(first).next_alert_at
    with Session(zone.engine) as session:  # a session that writes no alarm notes none
        session.exec(select(Ticket)).all()
        session.commit()
        assert earliest_armed(session.info) is None


# --- two schedulers on one database --------------------------------------------------------


def _fire_tolerating_busy(timer: DeadlineTimer) -> None:
    """What run_forever does: a scheduler that finds the store locked tries again later."""
    try:
        timer.fire_due()
    except Exception as exc:
        if not is_busy(exc):
            raise


def race_two_schedulers(first: Engine, second: Engine, clock: FakeClock) -> None:
    """Many tickets fall due while two schedulers, each with its own engine and two timers
    on it, fire over and over at the same instants; every alert must still go out once."""
    zone = Zone(first, clock)
    start = clock.now()
    tickets = []
    for i in range(8):
        clock.set(start + timedelta(seconds=17 * (i // 2)))  # pairs fall due together
        category = ("water", "power_line", "planning_permit")[i % 3]
        tickets.append(zone.file("qian.hao", category, "urgent" if i % 2 else "normal"))
    timers = [
        DeadlineTimer(engine, clock, read_zone) for engine in (first, second) for _ in range(2)
    ]
    errors: list[BaseException] = []
    rounds = 0
    while (due := timers[0].next_due()) is not None:
        assert rounds < 200, "the alerts never ran out"
        rounds += 1
        if due > clock.now():  # jump to the next alert point; a leftover reruns in place
            clock.set(due)
        barrier = threading.Barrier(len(timers))

        def run(timer: DeadlineTimer, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                for _ in range(3):
                    _fire_tolerating_busy(timer)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(t,)) for t in timers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert clock.now() >= start + timedelta(hours=3)

    with Session(first) as session:
        ledger = session.exec(select(AlertRecord)).all()
        keys = Counter((r.ticket_id, r.deadline, r.level, r.cycle) for r in ledger)
        assert keys and max(keys.values()) == 1
        # every ticket went unclaimed through response and handling: 5 alerts each
        assert len(ledger) == 5 * len(tickets)
        rows = session.exec(
            select(OutboxMessage).where(col(OutboxMessage.template).startswith("alert."))
        ).all()
        sent = Counter((r.ticket_id, r.template, r.params, r.chat_id, r.channel) for r in rows)
        assert max(sent.values()) == 1
        per_alert = Counter(
            (r.ticket_id, r.template, json.loads(r.params)["deadline"]["key"]) for r in rows
        )
        # squad of four warned, lead alone for a missed reply, lead + 3 managers for handling,
        # top manager + lead for supervision
        for tid in tickets:
            assert per_alert[(tid, "alert.warning", "deadline.response")] == 4
            assert per_alert[(tid, "alert.breach", "deadline.response")] == 1
            assert per_alert[(tid, "alert.warning", "deadline.handling")] == 4
            assert per_alert[(tid, "alert.breach", "deadline.handling")] == 4
            assert per_alert[(tid, "alert.supervision", "deadline.handling")] == 2
        assert due_tickets(session, clock.now()) == []


def test_two_schedulers_on_one_sqlite_file_send_each_alert_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    first = zone_database(tmp_path)
    bind_everyone(first)
    second = make_engine(str(first.url))
    try:
        race_two_schedulers(first, second, clock)
    finally:
        first.dispose()
        second.dispose()


@pytest.mark.postgres
def test_two_schedulers_on_postgresql_send_each_alert_once(
    pg_engine: Engine, clock: FakeClock
) -> None:
    """`pg_engine` is a fresh migrated schema (dropped afterwards); the second scheduler gets
    its own engine and connection pool on the same schema."""
    with Session(pg_engine) as session:
        schema = session.execute(text("SELECT current_schema()")).scalar_one()
    assert schema != "public"
    load_and_apply(pg_engine, EXAMPLE_ZONE)
    bind_everyone(pg_engine)
    second = create_engine(
        pg_engine.url, pool_pre_ping=True, connect_args={"options": f"-csearch_path={schema}"}
    )
    try:
        race_two_schedulers(pg_engine, second, clock)
    finally:
        second.dispose()
