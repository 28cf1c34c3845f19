"""PostgreSQL goes away mid-run and comes back: on a database of its own, every backend is
terminated (pg_terminate_backend) and new connections are refused (ALLOW_CONNECTIONS
false) for a while, as during a restart. The bot keeps every update Telegram delivered
(unconfirmed, so redelivered), tells each person waiting once in their language, answers a
press, fires the alert that fell due meanwhile once, and carries on when the server is back,
with no loop restarted. Skipped, with the reason, without SQUADBOT_TEST_POSTGRES_DSN."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, make_url
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.health import HealthServer
from bot.i18n import t
from migrations.runner import upgrade
from models.db import make_engine
from models.plumbing import AlertRecord, InboxUpdate
from tests.conftest import NO_SERVER, PG_DSN
from tests.e2e.builders import filed_ticket, zone_with_people
from tests.harness import start_harness

pytestmark = pytest.mark.postgres

UNAVAILABLE = {lang: t(lang, "error.storage_unavailable") for lang in ("zh-CN", "en")}


class Server:
    """An admin connection (to the DSN's own database) that can shut one database out."""

    def __init__(self, dsn: str, name: str) -> None:
        self.name = name
        self.admin = create_engine(dsn, isolation_level="AUTOCOMMIT")

    def sql(self, statement: str) -> list[Any]:
        with self.admin.connect() as conn:
            result = conn.exec_driver_sql(statement)
            return list(result.all()) if result.returns_rows else []

    def go_away(self) -> int:
        """Refuse new connections to the database and end every one it has; how many."""
        self.sql(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS false')
        ended = self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )
        return len(ended)

    def come_back(self) -> None:
        self.sql(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS true')


@pytest.fixture
def restartable() -> Iterator[tuple[Server, Engine]]:
    """A fresh database of a unique name, migrated; dropped afterwards."""
    if not PG_DSN:
        raise RuntimeError(NO_SERVER)  # collection skips every test that gets here
    name = f"squadbot_restart_{uuid.uuid4().hex[:12]}"
    server = Server(PG_DSN, name)
    engine = make_engine(make_url(PG_DSN).set(database=name).render_as_string(False))
    try:
        server.sql(f'CREATE DATABASE "{name}"')
        upgrade(engine)
        yield server, engine
    finally:
        engine.dispose()
        with contextlib.suppress(Exception):  # gone already if CREATE failed
            server.come_back()
        server.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.admin.dispose()


async def healthz(url: str, status: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        while True:
            answer = await client.get(url)
            if answer.status_code == status:
                body: dict[str, Any] = answer.json()
                return body
            assert time.monotonic() < deadline, (status, answer.status_code, answer.text)
            await asyncio.sleep(0.1)


async def test_postgres_going_away_loses_nothing_and_each_alert_fires_once(
    tmp_path: Any, restartable: tuple[Server, Engine]
) -> None:
    server, engine = restartable
    h = await start_harness(tmp_path, engine=engine)
    health = HealthServer(h.service.monitor, "127.0.0.1", 0)
    await health.start()
    url = f"http://127.0.0.1:{health.port}/healthz"
    try:
        people = await zone_with_people(h)
        english = await h.join("yang.fan", "enterprise", project="HV01", language="en")
        number, _ = await filed_ticket(h)
        filed = h.clock.now()
        await h.settle()
        await healthz(url, 200)
        waiting = {people.enterprise: "zh-CN", english: "en"}
        since = {chat: len(h.emu.sent(chat)) for chat in waiting}

        assert server.go_away() >= 1
        # the response deadline passes while the database is away
        h.clock.set(filed + timedelta(minutes=10, seconds=1))
        h.emu.send_text(people.enterprise, "/my")
        h.emu.send_text(english, "/help")
        h.emu.send_text(people.enterprise, "/help")
        for chat, lang in waiting.items():
            await h.said(chat, UNAVAILABLE[lang])
        last = h.emu.sent(english)[-1]["message_id"]
        query = h.emu.press(english, english, last, "no-such-button", strict=False)
        answer = await h.answered(query)
        assert answer["show_alert"] and answer["text"] == UNAVAILABLE["en"]
        down = await healthz(url, 503)
        assert "database unreachable" in down["problems"]
        assert down["database_writable"] is False, down
        await asyncio.sleep(1.0)  # the loops keep trying meanwhile
        assert h.emu.pending_updates() == 4  # nothing confirmed to Telegram
        assert all(f"超时：工单 {number}" not in text for text in h.texts(people.lead))

        server.come_back()
        await h.said(people.lead, f"超时：工单 {number}")
        await h.emu.wait_for(lambda: h.emu.pending_updates() == 0)
        await h.settle()
        await healthz(url, 200)
        await asyncio.sleep(0.5)  # long enough for a repeated alert to show up
        for chat, lang in waiting.items():
            texts = h.texts(chat)[since[chat] :]
            assert texts.count(UNAVAILABLE[lang]) == 1, texts  # told once
        assert any("/my" in text or number in text for text in h.texts(people.enterprise))
        english_help = [x for x in h.texts(english)[since[english] :] if "/new" in x]
        assert english_help and all("企业" not in x for x in english_help)
        assert sum(f"超时：工单 {number}" in text for text in h.texts(people.lead)) == 1
        with Session(h.engine) as session:
            ledger = session.exec(
                select(AlertRecord.deadline, AlertRecord.level, func.count()).group_by(
                    col(AlertRecord.deadline), col(AlertRecord.level)
                )
            ).all()
            inbox = session.exec(
                select(InboxUpdate.update_id, func.count()).group_by(col(InboxUpdate.update_id))
            ).all()
            unhandled = session.exec(
                select(func.count())
                .select_from(InboxUpdate)
                .where(col(InboxUpdate.processed_at).is_(None))
            ).one()
        assert ("response", "breach", 1) in ledger
        assert all(count == 1 for _deadline, _level, count in ledger)
        assert all(count == 1 for _uid, count in inbox) and unhandled == 0
        assert {s.name: s.restarts for s in h.service.supervisor.loops.values()} == {
            name: 0 for name in h.service.supervisor.loops
        }
    finally:
        await health.stop()
        await h.stop()
