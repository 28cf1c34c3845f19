"""The emulator's webhooks as Telegram runs them: setWebhook's checks, getWebhookInfo's JSON,
posts with the secret header, one chat at a time in order, failures retried and reported,
getUpdates refused while a webhook is set. The receiving end is a plain local HTTP server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from telegram import Bot
from telegram.error import BadRequest, Conflict

from bot.sandbox import BotApiEmulator
from bot.sandbox.webhook import NO_ROUTE, SECRET_HEADER
from bot.sandbox.wire import HttpRequest, HttpResponse, HttpServer

TOKEN = "4242424242:WEBHOOK-test-token-abcdefghij"
ALICE, BOB = 101, 102
URL = "https://bot.example.test/hook?x=1"
SECRET = "s3cret_token-of-the-test"


class Receiver:
    """Records each post; answers `status`; holds the posts of `held_chat` until released."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict[str, Any], str]] = []
        self.status = 200
        self.held_chat: int | None = None
        self.release = asyncio.Event()
        self.server = HttpServer(self.handle)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        update = json.loads(request.body)
        message = update.get("message") or {}
        if message.get("chat", {}).get("id") == self.held_chat:
            await self.release.wait()
        self.posts.append((request.headers, update, f"{request.path}?{request.query}"))
        return HttpResponse(self.status, b"", "text/plain")

    def texts(self, chat: int) -> list[str]:
        return [
            u["message"]["text"] for _, u, _ in self.posts if u["message"]["chat"]["id"] == chat
        ]


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator(TOKEN) as emulator:
        emulator.add_user(ALICE, "Alice")
        emulator.add_user(BOB, "Bob")
        yield emulator


@pytest.fixture
async def bot(emu: BotApiEmulator) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=f"{emu.url}/bot") as ptb_bot:
        yield ptb_bot


@pytest.fixture
async def receiver(emu: BotApiEmulator) -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.server.start()
    emu.route_webhooks(r.server.url)
    try:
        yield r
    finally:
        r.release.set()
        await r.server.stop()


async def info(emu: BotApiEmulator) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{emu.url}/bot{TOKEN}/getWebhookInfo")
    body: dict[str, Any] = answer.json()
    assert body["ok"] is True
    result: dict[str, Any] = body["result"]
    return result


async def test_set_webhook_checks_the_url_and_the_secret(bot: Bot) -> None:
    refusals = {
        "http://bot.example.test/hook": "An HTTPS URL must be provided for webhook",
        "https://bot.example.test:8080/hook": "Webhook can be set up only on ports 80, 88, 443",
    }
    for url, description in refusals.items():
        with pytest.raises(BadRequest, match=f"(?i){description}"):  # PTB rewrites the case
            await bot.set_webhook(url)
    with pytest.raises(BadRequest, match=r"(?i)secret token contains unallowed characters"):
        await bot.set_webhook(URL, secret_token="not allowed!")
    with pytest.raises(BadRequest, match=r"(?i)secret token is too long"):
        await bot.set_webhook(URL, secret_token="a" * 257)
    assert await bot.set_webhook("https://bot.example.test:8443/hook", secret_token="a" * 256)


async def test_webhook_info_has_telegrams_fields(emu: BotApiEmulator, bot: Bot) -> None:
    assert await info(emu) == {
        "url": "",
        "has_custom_certificate": False,
        "pending_update_count": 0,
    }
    await bot.set_webhook(
        URL, max_connections=500, allowed_updates=["message"], ip_address="203.0.113.7"
    )
    emu.send_text(ALICE, "hello")  # no route yet: the post fails as an unknown host would
    await emu.wait_for(lambda: emu.webhook_last_error is not None)
    found = await info(emu)
    assert isinstance(found.pop("last_error_date"), int)
    assert found == {
        "url": URL,
        "has_custom_certificate": False,
        "pending_update_count": 1,
        "ip_address": "203.0.113.7",
        "last_error_message": NO_ROUTE,
        "max_connections": 100,
        "allowed_updates": ["message"],
    }
    webhook = await bot.get_webhook_info()  # and PTB reads it
    assert webhook.url == URL and webhook.last_error_message == NO_ROUTE
    assert webhook.max_connections == 100 and webhook.pending_update_count == 1


async def test_updates_are_posted_with_the_secret_one_chat_at_a_time(
    emu: BotApiEmulator, bot: Bot, receiver: Receiver
) -> None:
    receiver.held_chat = ALICE
    assert await bot.set_webhook(URL, secret_token=SECRET)
    for n in range(3):
        emu.send_text(ALICE, f"alice {n}")
        emu.send_text(BOB, f"bob {n}")
    # Alice's first post is held: her later updates wait for it, Bob's do not
    await emu.wait_for(lambda: len(receiver.texts(BOB)) == 3)
    await asyncio.sleep(0.1)
    assert receiver.texts(ALICE) == [] and emu.pending_updates() == 3
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    receiver.release.set()
    await emu.wait_for(lambda: emu.pending_updates() == 0)
    assert receiver.texts(ALICE) == ["alice 0", "alice 1", "alice 2"]
    assert receiver.texts(BOB) == ["bob 0", "bob 1", "bob 2"]
    for headers, update, target in receiver.posts:
        assert headers[SECRET_HEADER.lower()] == SECRET
        assert headers["content-type"] == "application/json"
        assert target == "/hook?x=1" and set(update) == {"update_id", "message"}
    assert emu.stats["webhook_posts"] == 6 and emu.webhook_last_error is None


async def test_a_refused_post_is_retried_and_reported(
    emu: BotApiEmulator, bot: Bot, receiver: Receiver
) -> None:
    receiver.status = 403
    await bot.set_webhook(URL)
    emu.send_text(ALICE, "again and again")
    await emu.wait_for(lambda: len(receiver.posts) >= 3)
    assert emu.pending_updates() == 1
    last = emu.webhook_last_error
    assert last is not None and last[1] == "Wrong response from the webhook: 403 Forbidden"
    assert SECRET_HEADER.lower() not in receiver.posts[0][0]  # none was set
    receiver.status = 200
    await emu.wait_for(lambda: emu.pending_updates() == 0)
    assert emu.stats["webhook_posts"] == 1 and emu.stats["webhook_failures"] >= 3
    assert (await bot.get_webhook_info()).last_error_message == last[1]  # kept, as by Telegram


async def test_an_upstream_that_refuses_is_passed_over_as_nginx_does(
    emu: BotApiEmulator, bot: Bot, receiver: Receiver
) -> None:
    """Two upstreams, one of them gone (nothing listens on its port): every post reaches the
    other, and Telegram sees no failure; with both gone it sees the refusal."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    emu.route_webhooks(dead, receiver.server.url)
    await bot.set_webhook(URL)
    for n in range(6):
        emu.send_text(ALICE if n % 2 else BOB, f"post {n}")
    await emu.wait_for(lambda: emu.pending_updates() == 0)
    assert len(receiver.posts) == 6
    assert emu.stats["webhook_failures"] == 0 and emu.webhook_last_error is None
    emu.route_webhooks(dead, dead)
    emu.send_text(ALICE, "nobody there")
    await emu.wait_for(lambda: emu.webhook_last_error is not None)
    last = emu.webhook_last_error
    assert last is not None and last[1] == "Connection refused"
    assert emu.pending_updates() == 1


async def test_deleting_the_webhook_gives_the_updates_back_to_get_updates(
    emu: BotApiEmulator, bot: Bot
) -> None:
    with pytest.raises(ValueError, match="loopback"):
        emu.route_webhooks("http://192.0.2.1:8443")
    await bot.set_webhook(URL)
    emu.send_text(ALICE, "waiting")
    await emu.wait_for(lambda: emu.webhook_last_error is not None)
    assert await bot.delete_webhook()
    assert emu.webhook_url == ""
    [update] = await bot.get_updates()
    assert update.message is not None and update.message.text == "waiting"
