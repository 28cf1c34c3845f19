"""Webhook mode over HTTP: the real Service registers its webhook with the emulator, which
posts every update to the receiver (standing for the reverse proxy too), and the same
processing loop answers. Also what the receiver refuses, and that it stores nothing then."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from bot.application import ZoneCache, build_application
from bot.i18n import t
from bot.inbox.receiver import MAX_BODY, SECRET_HEADER
from bot.sandbox.script import ticket_number
from bot.service import Service
from models.plumbing import InboxUpdate
from models.ticket import Ticket
from tests.e2e.builders import ENTERPRISE, filed_ticket, zone_with_people
from tests.harness import (
    FAST,
    SCRIPTED,
    WEBHOOK_URL,
    Harness,
    start_harness,
    webhook_config,
)

SECRET = "test-secret_0123456789abcdefABCDEF"
HEADER = SECRET_HEADER.decode()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def hooked(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The harness receiving its updates through the webhook, on SQLite and PostgreSQL."""
    engine = request.getfixturevalue("pg_engine") if request.param == "postgresql" else None
    h = await start_harness(tmp_path, engine=engine, webhook=webhook_config(SECRET))
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def hook(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path, webhook=webhook_config(SECRET))
    try:
        yield h
    finally:
        await h.stop()


def receiver_url(h: Harness) -> str:
    assert h.service.intake is not None
    return f"http://127.0.0.1:{h.service.intake.port}/telegram/updates"


def stored(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(InboxUpdate)).one())


def tickets(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Ticket)).one())


def calls(h: Harness, method: str) -> list[dict[str, Any]]:
    return [params for name, params, _status in h.emu.calls if name == method]


async def test_a_ticket_is_filed_through_the_webhook(hooked: Harness) -> None:
    h = hooked
    [registered] = calls(h, "setWebhook")
    assert registered["url"] == WEBHOOK_URL
    assert registered["secret_token"] == SECRET
    assert json.loads(registered["allowed_updates"]) == [
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
    ]
    assert registered["drop_pending_updates"] == "false"
    assert h.emu.webhook_url == WEBHOOK_URL

    people = await zone_with_people(h)
    filed = await filed_ticket(h)
    card = await h.said(people.members["zhou.jun"], f"新工单 {filed.number}")
    await h.answered(h.press("zhou.jun", card, "认领"))
    await h.said(people.enterprise, "认领处理")
    await h.settle()

    assert not calls(h, "getUpdates"), "the poller must not run in webhook mode"
    posts = h.emu.stats["webhook_posts"]
    assert posts > 0 and stored(h.engine) == posts
    assert h.emu.stats["webhook_failures"] == 0
    assert h.service.intake is not None and h.service.intake.receiver.stored == posts
    assert tickets(h.engine) == 1


async def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_stored(
    hook: Harness,
) -> None:
    h = hook
    user = await h.stranger("陌生人")
    update = {"update_id": 990001, "message": _text_message(user, "/help")}
    before = stored(h.engine)
    async with httpx.AsyncClient(trust_env=False) as client:
        url = receiver_url(h)
        for headers in (
            {},
            {HEADER: ""},
            {HEADER: SECRET[:-1]},
            {HEADER: SECRET + "x"},
            {HEADER: SECRET.upper()},
            {"X-Telegram-Bot-Api-Secret": SECRET},
        ):
            refused = await client.post(url, json=update, headers=headers)
            assert refused.status_code == 403, headers
        assert (await client.get(url)).status_code == 403
        assert stored(h.engine) == before
        assert h.service.intake is not None and h.service.intake.receiver.refused == 7

        # the same request with the right secret is stored and answered
        accepted = await client.post(url, json=update, headers={HEADER: SECRET})
        assert accepted.status_code == 200
    assert stored(h.engine) == before + 1
    await h.emu.wait_for(lambda: len(h.emu.sent(user)) == 1)


async def test_bodies_that_are_not_json_or_too_long_are_refused_with_400(
    hook: Harness,
) -> None:
    h = hook
    before = stored(h.engine)
    secret = {HEADER: SECRET}
    async with httpx.AsyncClient(trust_env=False) as client:
        url = receiver_url(h)
        for body in (b"", b"{", b"not json", b'{"update_id": 1,', b"\xff\xfe{}", b"[" * 100_000):
            bad = await client.post(url, content=body, headers=secret)
            assert bad.status_code == 400, body[:20]
        too_long = b'{"update_id": 990002, "pad": "' + b"x" * MAX_BODY + b'"}'
        assert (await client.post(url, content=too_long, headers=secret)).status_code == 400

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"update_id": 990003, "pad": "'
            for _ in range(MAX_BODY // 65536 + 1):
                yield b"x" * 65536
            yield b'"}'

        chunked = await client.post(url, content=chunks(), headers=secret)
        assert chunked.status_code == 400
        assert (await client.put(url, json={}, headers=secret)).status_code == 405
    assert stored(h.engine) == before
    # a JSON value that is no update is Telegram's to send: kept, and a dead letter when read
    async with httpx.AsyncClient(trust_env=False) as client:
        odd = await client.post(receiver_url(h), json=["no", "update"], headers=secret)
    assert odd.status_code == 200 and stored(h.engine) == before + 1


async def test_the_same_update_posted_again_files_one_ticket(hook: Harness) -> None:
    h = hook
    await zone_with_people(h)
    chat = h.ids[ENTERPRISE]
    h.emu.send_text(chat, "/new")
    menu = await h.said(chat, h.needle("new.ask_category"))
    h.press(ENTERPRISE, menu, "临时停水")
    await h.said(chat, h.needle("new.ask_description"))
    h.emu.send_text(chat, "施工现场停水")
    ask = await h.said(chat, h.needle("new.ask_urgency"))
    h.press(ENTERPRISE, ask, t(h.lang, "urgency.normal"))
    confirm = await h.said(chat, h.needle("new.confirm"))
    await h.settle()

    h.emu.route_webhooks()  # the proxy loses its upstream: Telegram keeps the press queued
    h.press(ENTERPRISE, confirm, t(h.lang, "button.submit"))
    [submit] = h.emu.queued_updates()
    async with httpx.AsyncClient(trust_env=False) as client:
        twice = await asyncio.gather(
            *(client.post(receiver_url(h), json=submit, headers={HEADER: SECRET}) for _ in range(2))
        )
    assert [r.status_code for r in twice] == [200, 200]
    assert h.service.intake is not None
    h.emu.route_webhooks(f"http://127.0.0.1:{h.service.intake.port}")  # and a third time
    await h.said(chat, h.needle("ticket.filed"))
    await h.settle()

    assert tickets(h.engine) == 1
    assert sum(h.needle("ticket.filed") in text for text in h.texts(chat)) == 1
    with Session(h.engine) as session:
        rows = session.exec(
            select(InboxUpdate).where(col(InboxUpdate.update_id) == submit["update_id"])
        ).all()
    assert len(rows) == 1 and rows[0].processed_at is not None
    assert h.service.intake.receiver.repeated == 2
    ticket_number(h.texts(chat)[-1])


async def test_the_webhook_is_set_at_start_and_deleted_at_stop(tmp_path: Path) -> None:
    h = await start_harness(tmp_path, webhook=webhook_config())
    try:
        [registered] = calls(h, "setWebhook")
        drawn = str(registered["secret_token"])
        assert len(drawn) >= 43 and drawn != SECRET  # none configured: drawn at start
        people = await zone_with_people(h)
        await h.service.stop()
        assert calls(h, "deleteWebhook") == [{"drop_pending_updates": "false"}]
        assert h.emu.webhook_url == ""

        # what is sent while the bot is down waits at Telegram, and comes after the next start
        h.emu.send_text(people.enterprise, "/help")
        before = len(h.emu.sent(people.enterprise))
        assert h.emu.pending_updates() == 1
        h.service = await restart(h, tmp_path)
        await h.emu.wait_for(lambda: len(h.emu.sent(people.enterprise)) > before)
        assert h.emu.pending_updates() == 0
        again = calls(h, "setWebhook")[-1]
        assert again["url"] == WEBHOOK_URL and again["secret_token"] != drawn
    finally:
        await h.stop()
    assert len(calls(h, "deleteWebhook")) == 2


async def restart(h: Harness, tmp_path: Path) -> Service:
    """A new Service (a new process, as far as Telegram can tell) on the same emulator."""
    app = build_application(
        h.emu.token, base_url=f"{h.emu.url}/bot", base_file_url=f"{h.emu.url}/file/bot"
    )
    service = Service(
        app,
        h.engine,
        h.clock,
        ZoneCache(ttl=0),
        limits=FAST,
        long_poll=1,
        data_dir=tmp_path / "data",
        webhook=webhook_config(),
    )
    await service.start()
    service.runner.use_limits(SCRIPTED)
    assert service.intake is not None
    h.emu.route_webhooks(f"http://127.0.0.1:{service.intake.port}")
    return service


def _text_message(user: int, text: str) -> dict[str, Any]:
    return {
        "message_id": 1,
        "from": {"id": user, "is_bot": False, "first_name": "陌生人", "language_code": "zh-hans"},
        "chat": {"id": user, "type": "private", "first_name": "陌生人"},
        "date": 1_700_000_000,
        "text": text,
    }


async def test_the_minute_check_sets_a_lost_webhook_again_and_reports_delivery_errors(
    hook: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = hook
    intake = h.service.intake
    assert intake is not None and h.service.inbox.last_success is not None  # for /healthz
    await h.service.app.bot.delete_webhook()  # someone else, with the same token
    with caplog.at_level("WARNING", logger="bot.inbox.webhook"):
        await intake.check()
    assert h.emu.webhook_url == WEBHOOK_URL and len(calls(h, "setWebhook")) == 2
    assert calls(h, "setWebhook")[-1]["secret_token"] == SECRET
    assert "Telegram has no webhook instead of https://bot.example.test" in caplog.text

    caplog.clear()
    h.emu.route_webhooks()  # the proxy cannot reach the bot
    user = await h.stranger()
    h.emu.send_text(user, "/help")
    await h.emu.wait_for(lambda: h.emu.webhook_last_error is not None)
    with caplog.at_level("WARNING", logger="bot.inbox.webhook"):
        await intake.check()
        await intake.check()  # the same error is said once
    said = [r.getMessage() for r in caplog.records if "could not deliver" in r.getMessage()]
    assert len(said) == 1
    assert "Failed to resolve host" in said[0] and "(1 update(s) waiting)" in said[0]
    assert SECRET not in caplog.text

    h.emu.route_webhooks(f"http://127.0.0.1:{intake.port}")
    await h.emu.wait_for(lambda: len(h.emu.sent(user)) == 1)


async def test_nginx_default_http_1_0_and_garbage_on_the_socket(hook: Harness) -> None:
    """nginx speaks HTTP/1.0 to its upstream unless told otherwise; a scanner may send
    anything at all."""
    h = hook
    assert h.service.intake is not None
    port = h.service.intake.port
    user = await h.stranger()
    body = json.dumps({"update_id": 990010, "message": _text_message(user, "/help")}).encode()

    async def exchange(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5.0)  # to EOF: the bot closes
        writer.close()
        return answer

    before = stored(h.engine)
    garbage = await exchange(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert stored(h.engine) == before
    head = (
        f"POST /telegram/updates HTTP/1.0\r\nHost: 127.0.0.1\r\n{HEADER}: {SECRET}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = await exchange(head + body)
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")
    assert stored(h.engine) == before + 1
    await h.emu.wait_for(lambda: len(h.emu.sent(user)) == 1)
