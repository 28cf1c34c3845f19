"""Telegram's side of a webhook in the sandbox emulator: while setWebhook has a URL, pending
updates are POSTed to it instead of waiting for getUpdates (which is refused with 409).

As Telegram does: one JSON update per POST, with the `X-Telegram-Bot-Api-Secret-Token`
header when setWebhook gave a secret_token; up to `max_connections` posts at once, but one at
a time per chat, so a chat's updates arrive in order; an update leaves the queue only on a
2XX answer, and any other answer or a failed connection is written to getWebhookInfo's
`last_error_date` and `last_error_message` ("Wrong response from the webhook: 403
Forbidden") and tried again after a backoff, until it is given up on after `ATTEMPTS`.

The emulator never connects to the webhook's host: it stands for Telegram *and* for the
reverse proxy in front of the bot, and `route` names the 127.0.0.1 addresses that the proxy
passes the posts to (round robin over several, like an nginx upstream, the next one tried
when one refuses the connection), the URL's path and query kept. Without a route every post
fails as an unresolvable host would.
"""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus
from urllib.parse import urlsplit

import httpx

from bot.bot_api_transport import json_body
from bot.sandbox.records import JSON
from bot.sandbox.state import EmulatorState

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ATTEMPTS = 20  # then the update is dropped, as Telegram gives up "after a reasonable number"
FIRST_RETRY = 0.05  # seconds; doubled after each failure of the same update, up to MAX_RETRY
MAX_RETRY = 2.0
POST_TIMEOUT = 30.0
NO_ROUTE = "Failed to resolve host: Name or service not known"


def chat_of(update: JSON) -> object:
    """The chat whose updates must arrive in order; the update itself when it has none."""
    for kind, part in update.items():
        if not isinstance(part, dict):
            continue
        chat = part.get("chat")
        if kind == "callback_query":
            message = part.get("message")
            chat = message.get("chat") if isinstance(message, dict) else None
            if chat is None and isinstance(part.get("from"), dict):
                return part["from"].get("id")
        if isinstance(chat, dict):
            return chat.get("id")
    return ("update", update.get("update_id"))


class WebhookPoster:
    """Posts the pending updates while a webhook is set."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._upstreams: list[str] = []
        self._turn = 0
        self._runner: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._in_flight: set[int] = set()  # id() of the update dicts being posted
        self._busy_chats: set[object] = set()
        self._attempts: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}

    def route(self, *upstreams: str) -> None:
        """The reverse proxy: posts go to these http://127.0.0.1:PORT addresses in turn."""
        for upstream in upstreams:
            host = urlsplit(upstream).hostname or ""
            if not host.startswith("127.") and host not in ("localhost", "::1"):
                raise ValueError(f"the emulator posts to loopback addresses only, not {host}")
        self._upstreams = [u.rstrip("/") for u in upstreams]
        self._turn = 0
        self._state.notify()

    def start(self) -> None:
        """Begin posting (setWebhook with a URL); harmless when already posting."""
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        tasks = [t for t in (runner, *self._posts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._in_flight.clear()
        self._busy_chats.clear()

    def forget(self) -> None:
        """The queue was emptied (drop_pending_updates): no retries are owed."""
        self._attempts.clear()
        self._retry_at.clear()

    # -- the loop -------------------------------------------------------------------------

    def _ready(self) -> list[JSON]:
        state = self._state
        room = state.webhook_max_connections - len(self._in_flight)
        if not state.webhook_url or room <= 0:
            return []
        now = time.monotonic()
        chosen: list[JSON] = []
        chats: set[object] = set()
        for update in self._deliverable():
            chat = chat_of(update)
            if chat in self._busy_chats or chat in chats:
                continue
            chats.add(chat)  # a chat's later updates wait for its first
            if id(update) in self._in_flight or self._retry_at.get(id(update), 0.0) > now:
                continue
            chosen.append(update)
            if len(chosen) >= room:
                break
        return chosen

    def _deliverable(self) -> list[JSON]:
        state = self._state
        if state.allowed_updates:
            allowed = set(state.allowed_updates)
            state.updates = [u for u in state.updates if not set(u) - {"update_id"} - allowed]
        return state.updates

    def _next_retry(self) -> float:
        """Seconds until the soonest retry of an update still queued (1 s when none)."""
        queued = {id(update) for update in self._state.updates}
        for key in set(self._retry_at) - queued:  # taken by getUpdates or dropped meanwhile
            self._retry_at.pop(key)
            self._attempts.pop(key, None)
        waits = [at - time.monotonic() for at in self._retry_at.values()]
        return max(0.01, min(waits, default=1.0))

    async def _run(self) -> None:
        state = self._state
        while state.webhook_url and not state.changes.closing:
            for update in self._ready():
                chat = chat_of(update)
                self._in_flight.add(id(update))
                self._busy_chats.add(chat)
                task = asyncio.get_running_loop().create_task(self._post(update, chat))
                self._posts.add(task)
                task.add_done_callback(self._posts.discard)
            await state.changes.wait_until(
                lambda: bool(self._ready()) or not state.webhook_url, self._next_retry()
            )

    def _targets(self) -> list[str]:
        """The upstreams for the next post, the one whose turn it is first."""
        if not self._upstreams:
            return []
        first = self._turn % len(self._upstreams)
        self._turn += 1
        parts = urlsplit(self._state.webhook_url)
        tail = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return [u + tail for u in self._upstreams[first:] + self._upstreams[:first]]

    async def _post(self, update: JSON, chat: object) -> None:
        state = self._state
        key = id(update)
        try:
            error = await self._send(update)
            if error is None:
                state.stats["webhook_posts"] += 1
                state.updates = [u for u in state.updates if u is not update]
                self._attempts.pop(key, None)
                self._retry_at.pop(key, None)
            else:
                self._failed(update, error)
        finally:
            self._in_flight.discard(key)
            self._busy_chats.discard(chat)
            state.notify()

    async def _send(self, update: JSON) -> str | None:
        """None when the webhook answered 2XX; else getWebhookInfo's last_error_message.
        An upstream that refuses the connection is passed over for the next, as nginx does
        for a request it has not sent yet (`proxy_next_upstream error`): Telegram sees a
        refusal only when every upstream refuses."""
        targets = self._targets()
        if not targets:
            return NO_ROUTE
        refused = "Connection refused"
        for target in targets:
            error = await self._post_to(target, update)
            if error != refused:
                return error
        return refused

    async def _post_to(self, target: str, update: JSON) -> str | None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=POST_TIMEOUT,
                trust_env=False,  # never through a proxy from the environment
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
            )
        headers = {"Content-Type": "application/json"}
        if self._state.webhook_secret:
            headers[SECRET_HEADER] = self._state.webhook_secret
        body = json_body(update)
        try:
            response = await self._client.post(target, content=body, headers=headers)
        except httpx.TimeoutException:
            return "Read timeout expired"
        except httpx.ConnectError:
            return "Connection refused"
        except httpx.HTTPError as exc:
            return f"Connection error: {type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return None
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = ""
        return f"Wrong response from the webhook: {response.status_code} {reason}".rstrip()

    def _failed(self, update: JSON, error: str) -> None:
        state = self._state
        key = id(update)
        state.webhook_last_error = (int(state.clock()), error)
        state.stats["webhook_failures"] += 1
        attempts = self._attempts.get(key, 0) + 1
        if attempts >= ATTEMPTS:
            state.updates = [u for u in state.updates if u is not update]
            state.stats["webhook_dropped"] += 1
            self._attempts.pop(key, None)
            self._retry_at.pop(key, None)
            return
        self._attempts[key] = attempts
        delay = min(FIRST_RETRY * 2 ** (attempts - 1), MAX_RETRY)
        self._retry_at[key] = time.monotonic() + delay
