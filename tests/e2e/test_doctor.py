"""`squadbot doctor` against the Bot API emulator and a robot on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from sqlmodel import Session, select

from bot.commands.doctor import _doctor, calendar_check
from bot.sandbox.emulator import BotApiEmulator
from bot.settings import load_settings
from models.org import Membership, Person, Role, Squad, ZoneSetting
from models.sla.calendar import WorkingHours
from tests.harness import zone_database

posted: list[str] = []


class _Robot(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(405)
        self.end_headers()

    def do_POST(self) -> None:  # an alert: doctor must never send one
        posted.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def robot() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Robot)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _setting(session: Session, key: str, value: object) -> None:
    row = session.get(ZoneSetting, key) or ZoneSetting(key=key, value="")
    row.value = json.dumps(value)
    session.add(row)


async def test_doctor_names_every_problem_and_passes_when_all_is_well(
    tmp_path: Path, robot: str
) -> None:
    engine = zone_database(tmp_path)
    url = str(engine.url)
    with Session(engine) as session:
        _setting(
            session,
            "webhooks",
            [{"kind": "json", "url": robot}, {"kind": "json", "url": "http://127.0.0.1:9/x"}],
        )
        session.commit()
    async with BotApiEmulator() as emu:
        settings = load_settings(
            telegram_token=emu.token, telegram_api_url=emu.url, database_url=url
        )
        lines = [c.line() for c in await _doctor(settings)]
        assert lines[0] == "✓ settings read"
        assert lines[1].startswith("✓ database reachable")
        assert lines[2].startswith(f"✓ Bot API at {emu.url}: @")
        squads = [line for line in lines if " squad " in f" {line[2:]}"]
        assert squads and all(line.startswith("✗") for line in squads)
        assert "squadbot invite --role group --squad" in squads[0]
        assert f"✓ webhook json {robot}: reachable (HTTP 405)" in lines
        assert any(line.startswith("✗ webhook json http://127.0.0.1:9/x") for line in lines)
        assert posted == []

        # everything put right: each squad's lead joined and its group bound, one robot
        with Session(engine) as session:
            for n, squad in enumerate(session.exec(select(Squad)).all()):
                squad.group_chat_id = -1000 - n
                session.add(squad)

            leads = session.exec(
                select(Person)
                .join(Membership, Membership.person_id == Person.id)  # type: ignore[arg-type]
                .where(Membership.role == Role.LEAD)
            ).all()
            for n, person in enumerate(leads):
                person.telegram_user_id = 7000 + n
                session.add(person)
            _setting(session, "webhooks", [{"kind": "json", "url": robot}])
            session.commit()
        checks = await _doctor(settings)
        assert [c.line() for c in checks if not c.ok] == [], [c.line() for c in checks]
    engine.dispose()


async def test_doctor_without_a_reachable_bot_api_fails_in_one_line(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    settings = load_settings(
        telegram_token="123456789:" + "A" * 30,
        telegram_api_url="http://127.0.0.1:9",
        database_url=str(engine.url),
    )
    checks = await _doctor(settings)
    api = checks[2]
    assert not api.ok and api.line().startswith("✗ Bot API: cannot reach the Bot API")
    assert "\n" not in api.line()
    engine.dispose()


async def test_doctor_with_no_database_says_what_to_run(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'none.db'}")
    lines = [c.line() for c in await _doctor(settings)]
    assert lines[1].startswith("✗ database: no database at")
    assert lines[2] == "✗ Bot API: no token: set SQUADBOT_TELEGRAM_TOKEN"


def test_the_holiday_calendar_beyond_chinesecalendars_data() -> None:
    hours = WorkingHours()
    gap = calendar_check(hours, date(2026, 12, 1))
    assert not gap.ok
    assert "no holidays for 2027" in gap.text and "2026-12-31" in gap.text
    assert "extra_holidays" in gap.text and "extra_workdays" in gap.text
    assert calendar_check(hours, date(2026, 9, 1)).ok
    supplied = WorkingHours(extra_holidays=[date(2027, 1, 1)])
    assert calendar_check(supplied, date(2026, 12, 1)).ok
    assert calendar_check(None, date(2026, 12, 1)).ok  # round the clock needs no holidays
