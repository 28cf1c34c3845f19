"""A local Telegram Bot API emulator on 127.0.0.1.

Two uses: `make run` without a token (a sandbox in which simulated people talk to the real
Application), and end-to-end tests that run the real PTB Application over real HTTP. Unit
tests with a fake `BaseRequest` cannot catch what goes wrong on the wire (a 4097-character
message, a 65-byte callback_data, an unescaped "<" under parse_mode HTML, a 429 that the
outbox must honour, an update that must survive a crash before the offset is confirmed), so
the emulator answers with Telegram's own JSON shapes, status codes and error descriptions.

Deliberate simplifications, so that tests do not rely on them:
- lengths are counted in UTF-16 code units (as Telegram does) of the text after entity
  parsing; only parse_mode HTML is parsed, Markdown and MarkdownV2 text is kept verbatim;
- images are not decoded: photo sizes have nominal dimensions and share the uploaded bytes;
- a webhook is posted to through `route_webhooks` (the reverse proxy's upstreams on
  127.0.0.1), never at the URL's own host; there is no TLS and no custom certificate, and
  inline mode is not emulated;
- the flood limit applies to sending methods, not to edits.

Every mutation happens on the event loop that started the server; from another thread use
`EmulatorThread.call` (`bot.sandbox.thread`).

`BotApiEmulator` is a facade over parts it holds and delegates to: the state every part
shares (`bot.sandbox.state`), the Bot API method table that answers requests
(`bot.sandbox.api`, with the sending methods in `bot.sandbox.sending` and the webhook's
posting in `bot.sandbox.webhook`), the HTTP server
(`bot.sandbox.wire`) and the simulated people (`bot.sandbox.people`). Text handling and
Telegram's limits are plain functions and records (`bot.sandbox.text`, `bot.sandbox.records`).
"""

from __future__ import annotations

import copy
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType

from bot.sandbox.api import BotApi
from bot.sandbox.people import SimulatedPeople
from bot.sandbox.records import (
    GROUP_LIMIT,
    JSON,
    OVERALL_LIMIT,
    PRIVATE_LIMIT,
    RANDOM_FAULT_METHODS,
    TINY_PNG,
    Fault,
    FaultRate,
    FloodGate,
    RateLimit,
    StoredMessage,
)
from bot.sandbox.state import EmulatorState
from bot.sandbox.wire import HttpServer


class BotApiEmulator:
    """One bot, its chats and simulated people, served over HTTP on 127.0.0.1."""

    def __init__(
        self,
        token: str = "1234567890:SANDBOX-squadbot-token",
        *,
        bot_id: int | None = None,
        username: str = "squadbot_sandbox_bot",
        first_name: str = "SquadBot",
        port: int = 0,
        flood_limits: bool = False,
        overall_limit: RateLimit = OVERALL_LIMIT,
        private_limit: RateLimit = PRIVATE_LIMIT,
        group_limit: RateLimit = GROUP_LIMIT,
        privacy_mode: bool = False,
        callback_query_ttl: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        prefix = token.split(":", 1)[0]
        bot_user: JSON = {
            "id": bot_id if bot_id is not None else (int(prefix) if prefix.isdigit() else 1),
            "is_bot": True,
            "first_name": first_name,
            "username": username,
        }
        self._state = EmulatorState(
            token,
            bot_user,
            privacy_mode=privacy_mode,
            callback_query_ttl=callback_query_ttl,
            clock=clock,
        )
        flood = FloodGate(overall_limit, private_limit, group_limit) if flood_limits else None
        self._api = BotApi(self._state, flood)
        self._http = HttpServer(self._api.handle, port)
        self._people = SimulatedPeople(self._state)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return self._http.url

    async def start(self) -> BotApiEmulator:
        self._state.changes.open()
        await self._http.start()
        return self

    async def stop(self) -> None:
        await self._api.poster.stop()
        await self._state.changes.close()  # let parked long polls and waiters return first
        await self._http.stop()
        await self._state.changes.drain()

    async def __aenter__(self) -> BotApiEmulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the bot and what it has been told ------------------------------------------------

    @property
    def token(self) -> str:
        return self._state.token

    @property
    def bot_user(self) -> JSON:
        return self._state.bot_user

    @property
    def username(self) -> str:
        return self._state.username

    @property
    def privacy_mode(self) -> bool:
        return self._state.privacy_mode

    @property
    def callback_query_ttl(self) -> float:
        return self._state.callback_query_ttl

    @property
    def webhook_url(self) -> str:
        return self._state.webhook_url

    def route_webhooks(self, *upstreams: str) -> None:
        """Stand for the reverse proxy in front of the bot: a webhook's posts go to these
        http://127.0.0.1:PORT addresses in turn, the URL's path kept. Without a route they
        fail as an unresolvable host would, and are tried again."""
        self._api.poster.route(*upstreams)

    @property
    def waiting_polls(self) -> int:
        """getUpdates requests now parked in a long poll."""
        return self._state.waiting_polls

    @property
    def commands(self) -> dict[tuple[str, str], list[JSON]]:
        """setMyCommands, per (scope, language_code)."""
        return self._state.commands

    @property
    def settings(self) -> dict[str, JSON]:
        """Menu buttons and the recorded setMyName/Description calls."""
        return self._state.settings

    @property
    def callback_answers(self) -> list[JSON]:
        return self._state.callback_answers

    @property
    def calls(self) -> list[tuple[str, JSON, int]]:
        """Every request as (method, parameters, HTTP status)."""
        return self._state.calls

    @property
    def stats(self) -> dict[str, int]:
        return self._state.stats

    @property
    def bot_log(self) -> list[StoredMessage]:
        """The bot's messages in order, live and not copied: for a follower that cannot
        afford `sent()`'s copy of everything on each call. Read it; do not change it."""
        return self._state.bot_log

    # -- people and chats -----------------------------------------------------------------

    def add_user(
        self,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "zh-hans",
    ) -> JSON:
        """A person who has started the bot, so their private chat (id = user_id) exists."""
        return self._people.add_user(user_id, first_name, last_name, username, language_code)

    def add_group(self, chat_id: int, title: str, member_ids: Iterable[int] = ()) -> JSON:
        """A group the bot is in. Ids at or below -10**12 are supergroups, like Telegram's."""
        return self._people.add_group(chat_id, title, member_ids)

    def block(self, user_id: int) -> None:
        self._people.block(user_id)

    def unblock(self, user_id: int) -> None:
        self._people.unblock(user_id)

    # -- what the simulated people do -----------------------------------------------------

    def send_text(
        self, user_id: int, text: str, chat_id: int | None = None, reply_to: int | None = None
    ) -> JSON:
        return self._people.send_text(user_id, text, chat_id, reply_to)

    def send_photo(
        self,
        user_id: int,
        chat_id: int | None = None,
        caption: str | None = None,
        data: bytes = TINY_PNG,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        return self._people.send_photo(user_id, chat_id, caption, data, reply_to=reply_to)

    def send_document(
        self,
        user_id: int,
        filename: str,
        data: bytes,
        mime_type: str = "application/octet-stream",
        chat_id: int | None = None,
        caption: str | None = None,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        return self._people.send_document(
            user_id, filename, data, mime_type, chat_id, caption, reply_to=reply_to
        )

    def send_location(
        self,
        user_id: int,
        lat: float,
        lon: float,
        chat_id: int | None = None,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        return self._people.send_location(user_id, lat, lon, chat_id, reply_to=reply_to)

    def send_sticker(
        self,
        user_id: int,
        chat_id: int | None = None,
        emoji: str = "👍",
        *,
        reply_to: int | None = None,
    ) -> JSON:
        return self._people.send_sticker(user_id, chat_id, emoji, reply_to=reply_to)

    def edit_text_by_user(self, user_id: int, chat_id: int, message_id: int, text: str) -> JSON:
        return self._people.edit_text_by_user(user_id, chat_id, message_id, text)

    def press(
        self,
        user_id: int,
        chat_id: int,
        message_id: int,
        callback_data: str,
        *,
        strict: bool = True,
    ) -> str:
        """Tap an inline button; returns the callback query id. With `strict`, the button
        must exist on the message as it is now, which is all a real client can tap."""
        return self._people.press(user_id, chat_id, message_id, callback_data, strict=strict)

    def pin_inaccessible(self, chat_id: int, user_id: int, old_message_id: int) -> JSON:
        """The user pins an old message of the chat that the bot cannot see (never delivered
        to it, or deleted). Returns the service message Telegram then sends, whose
        `pinned_message` is an InaccessibleMessage (Bot API 7.0): the chat, `message_id` and
        `date` 0. The service message is numbered after `old_message_id` and reaches the bot
        in privacy mode too. Whether the bot could in fact see that message is not checked.
        Note the order: chat first, unlike the methods above."""
        return self._people.pin_inaccessible(chat_id, user_id, old_message_id)

    def send_raw_update(self, update: JSON) -> int:
        """Queue any payload. A given update_id is kept (to replay a duplicate, say); it is
        dropped like any other by the next getUpdates whose offset is beyond it."""
        return self._people.send_raw_update(update)

    # -- inspection -----------------------------------------------------------------------

    def sent(self, chat_id: int | None = None) -> list[JSON]:
        """Bot messages as they are now, each with emulator-only keys: `edits` (one entry per
        edit: method, date, old and new values), `deleted`, `parse_mode`, `reply_keyboard`."""
        result = []
        for stored in self._state.bot_log:
            if chat_id is not None and stored.message["chat"]["id"] != chat_id:
                continue
            item = copy.deepcopy(stored.message)
            item["edits"] = copy.deepcopy(stored.edits)
            item["deleted"] = stored.deleted
            item["parse_mode"] = stored.parse_mode
            item["reply_keyboard"] = copy.deepcopy(stored.reply_keyboard)
            result.append(item)
        return result

    def pending_updates(self) -> int:
        return len(self._state.updates)

    def queued_updates(self) -> list[JSON]:
        """Copies of the updates not yet delivered (by getUpdates or the webhook)."""
        return copy.deepcopy(self._state.updates)

    @property
    def webhook_last_error(self) -> tuple[int, str] | None:
        """getWebhookInfo's last_error_date and last_error_message, if a post failed."""
        return self._state.webhook_last_error

    def transcript(self) -> list[str]:
        return list(self._state.transcript)

    def file_bytes(self, file_id: str) -> bytes:
        return self._state.files[file_id].data

    async def wait_for(
        self,
        predicate: Callable[[], object],
        timeout: float = 5.0,
        *,
        recheck: float | None = None,
    ) -> None:
        """Return once `predicate()` holds. It is re-checked on every change of emulator state
        (each request, update or message), which is all a predicate over the emulator needs.
        A predicate that also reads other state, such as a database the bot commits to after
        Telegram answered, should pass `recheck` seconds so that it is looked at again even
        when the emulator stays quiet."""
        if not await self._state.changes.wait_until(predicate, timeout, recheck):
            tail = "\n".join(self._state.transcript[-12:])
            raise TimeoutError(f"condition not met within {timeout}s; transcript tail:\n{tail}")

    async def wait_for_messages(self, chat_id: int, count: int, timeout: float = 5.0) -> list[JSON]:
        """Wait until the bot has sent at least `count` messages to the chat in total."""

        def enough() -> bool:
            log = self._state.bot_log
            return sum(1 for s in log if s.message["chat"]["id"] == chat_id) >= count

        await self.wait_for(enough, timeout)
        return self.sent(chat_id)

    # -- fault injection ------------------------------------------------------------------

    def answer_sending_after(self, seconds: float) -> None:
        """Every sending method from now on answers `seconds` late (then delivers), as a slow
        Telegram does: a message is in flight that long."""
        self._state.sending_latency = max(0.0, seconds)

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        count: int = 1,
        retry_after: int | None = None,
        *,
        applied: bool = False,
        chat_id: int | None = None,
    ) -> None:
        """Queue `count` failures of `method` ("*" = any sending method), only of calls to
        `chat_id` if given. The description defaults to Telegram's for the status. With
        `applied`, the call takes effect and only the answer is lost, as when a response
        times out after Telegram delivered the message: the case that tempts an outbox into
        sending twice."""
        fault = _fault(status, description, retry_after, applied)
        key = "*" if method == "*" else method.lower()
        if chat_id is not None:
            key = f"{key}@{chat_id}"
        queue = self._state.faults.setdefault(key, deque())
        queue.extend(fault for _ in range(count))

    def fail_at_random(
        self,
        rate: float,
        faults: Iterable[tuple[int, bool]],
        *,
        methods: Iterable[str] = RANDOM_FAULT_METHODS,
        seed: int = 0,
    ) -> FaultRate:
        """From now on, each call of `methods` fails with probability `rate`, with one of
        `faults` (status, applied) picked at random, seeded: a run of faults that can be
        repeated. Faults queued by `fail_next` come first. Returns the record of what was
        injected; `stop_failing` ends it."""
        self._state.fault_rate = FaultRate(
            rate,
            tuple(_fault(status, None, None, applied) for status, applied in faults),
            frozenset(methods),
            random.Random(seed),
        )
        return self._state.fault_rate

    def stop_failing(self) -> None:
        self._state.fault_rate = None


def _fault(status: int, description: str | None, retry_after: int | None, applied: bool) -> Fault:
    """A fault with Telegram's description for its status unless one is given."""
    if description is None:
        description = {
            400: "Bad Request",
            403: "Forbidden",
            429: f"Too Many Requests: retry after {retry_after or 1}",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }.get(status, "Internal Server Error")
    if status == 429 and retry_after is None:
        retry_after = 1
    return Fault(status, description, retry_after, applied)
