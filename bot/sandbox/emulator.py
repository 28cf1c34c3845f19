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
- webhooks are recorded but never called, and inline mode is not emulated;
- the flood limit applies to sending methods, not to edits.

Every mutation happens on the event loop that started the server; from another thread use
`EmulatorThread.call`.

The emulator is split by concern: `bot.sandbox.wire` (the wire), `bot.sandbox.text`
(UTF-16 lengths, HTML entities, transcript lines), `bot.sandbox.records` (limits, error texts,
stored records, flood gate), `bot.sandbox.state` (state and shared helpers) and
`bot.sandbox.api` (the Bot API methods). This module holds `BotApiEmulator` (lifecycle,
simulated people, inspection, fault injection) and `EmulatorThread`.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from bot.sandbox.api import BotApiMethods

# Re-exported: these constants used to be defined here.
from bot.sandbox.records import CALLBACK_DATA_LIMIT as CALLBACK_DATA_LIMIT
from bot.sandbox.records import CAPTION_LIMIT as CAPTION_LIMIT
from bot.sandbox.records import JSON, TINY_PNG, Fault, PendingQuery, RateLimit
from bot.sandbox.records import MESSAGE_LIMIT as MESSAGE_LIMIT
from bot.sandbox.records import NOT_MODIFIED as NOT_MODIFIED
from bot.sandbox.records import POLL_CONFLICT as POLL_CONFLICT
from bot.sandbox.records import QUERY_TOO_OLD as QUERY_TOO_OLD
from bot.sandbox.records import SENDING_METHODS as SENDING_METHODS
from bot.sandbox.records import WEBHOOK_CONFLICT as WEBHOOK_CONFLICT
from bot.sandbox.records import WRONG_FILE as WRONG_FILE
from bot.sandbox.text import button_text, display_name, user_entities, utf16_len

__all__ = ["BotApiEmulator", "EmulatorThread", "RateLimit", "utf16_len"]


class BotApiEmulator(BotApiMethods):
    """One bot, its chats and simulated people, served over HTTP on 127.0.0.1."""

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return self._http.url

    async def start(self) -> BotApiEmulator:
        self._closing = False
        self._loop = asyncio.get_running_loop()
        await self._http.start()
        return self

    async def stop(self) -> None:
        self._closing = True
        await self._notify_all()  # let parked long polls and waiters return first
        await self._http.stop()
        for task in list(self._notifiers):
            task.cancel()
        await asyncio.gather(*self._notifiers, return_exceptions=True)
        self._loop = None

    async def __aenter__(self) -> BotApiEmulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

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
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: JSON = {"id": user_id, "type": "private", "first_name": first_name}
        for key, value in (("last_name", last_name), ("username", username)):
            if value is not None:
                user[key] = chat[key] = value
        if language_code is not None:
            user["language_code"] = language_code
        self._users[user_id] = user
        self._chats[user_id] = chat
        return copy.deepcopy(user)

    def add_group(self, chat_id: int, title: str, member_ids: Iterable[int] = ()) -> JSON:
        """A group the bot is in. Ids at or below -10**12 are supergroups, like Telegram's."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        members = set(member_ids)
        unknown = members - self._users.keys()
        if unknown:
            raise ValueError(f"add_user first: {sorted(unknown)}")
        kind = "supergroup" if chat_id <= -(10**12) else "group"
        self._chats[chat_id] = {"id": chat_id, "type": kind, "title": title}
        self._members[chat_id] = members
        return copy.deepcopy(self._chats[chat_id])

    def block(self, user_id: int) -> None:
        self._blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self._blocked.discard(user_id)

    # -- what the simulated people do -----------------------------------------------------

    def send_text(
        self, user_id: int, text: str, chat_id: int | None = None, reply_to: int | None = None
    ) -> JSON:
        content: JSON = {"text": text}
        entities = user_entities(text)
        if entities:
            content["entities"] = entities
        return self._user_message(user_id, chat_id, content, reply_to)

    def send_photo(
        self,
        user_id: int,
        chat_id: int | None = None,
        caption: str | None = None,
        data: bytes = TINY_PNG,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        stored = self._store_file("photo", data, "image/jpeg", None)
        content: JSON = {"photo": copy.deepcopy(stored.media)}
        if caption:
            content["caption"] = caption
        return self._user_message(user_id, chat_id, content, reply_to)

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
        stored = self._store_file("document", data, mime_type, filename)
        content: JSON = {"document": copy.deepcopy(stored.media)}
        if caption:
            content["caption"] = caption
        return self._user_message(user_id, chat_id, content, reply_to)

    def send_location(
        self,
        user_id: int,
        lat: float,
        lon: float,
        chat_id: int | None = None,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        content = {"location": {"latitude": lat, "longitude": lon}}
        return self._user_message(user_id, chat_id, content, reply_to)

    def send_sticker(
        self,
        user_id: int,
        chat_id: int | None = None,
        emoji: str = "👍",
        *,
        reply_to: int | None = None,
    ) -> JSON:
        stored = self._store_file("sticker", TINY_PNG, "image/webp", None, emoji=emoji)
        content = {"sticker": copy.deepcopy(stored.media)}
        return self._user_message(user_id, chat_id, content, reply_to)

    def edit_text_by_user(self, user_id: int, chat_id: int, message_id: int, text: str) -> JSON:
        stored = self._messages.get((chat_id, message_id))
        if stored is None or stored.by_bot or stored.message["from"]["id"] != user_id:
            raise ValueError(f"user {user_id} has no message {message_id} in chat {chat_id}")
        stored.message["text"] = text
        stored.message.pop("entities", None)
        if entities := user_entities(text):
            stored.message["entities"] = entities
        stored.message["edit_date"] = int(self._clock())
        self._log_line(stored.message, " (edited)")
        if self._visible_to_bot(stored.message):
            self._push_update("edited_message", stored.message)
        return copy.deepcopy(stored.message)

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
        user = self._user(user_id)
        self._check_member(user_id, chat_id)
        stored = self._messages.get((chat_id, message_id))
        if stored is None or stored.deleted or not stored.by_bot:
            raise ValueError(f"no bot message {message_id} in chat {chat_id}")
        label = button_text(stored.message, callback_data)
        if strict and label is None:
            raise ValueError(f"message {message_id} has no button with data {callback_data!r}")
        query_id = str(next(self._query_seq))
        self._queries[query_id] = PendingQuery(user_id, time.monotonic())
        query = {
            "id": query_id,
            "from": copy.deepcopy(user),
            "message": copy.deepcopy(stored.message),
            "chat_instance": str(abs(chat_id) * 7919 + self.bot_user["id"]),
            "data": callback_data,
        }
        self._transcript.append(
            f"[{self._chat_label(chat_id)}] {display_name(user)} pressed [{label or callback_data}]"
        )
        self._push_update("callback_query", query)
        return query_id

    def send_raw_update(self, update: JSON) -> int:
        """Queue any payload. A given update_id is kept (to replay a duplicate, say); it is
        dropped like any other by the next getUpdates whose offset is beyond it."""
        update = copy.deepcopy(update)
        update_id = update.setdefault("update_id", self._next_update_id)
        self._next_update_id = max(self._next_update_id, int(update_id) + 1)
        bisect.insort(self._updates, update, key=lambda u: int(u["update_id"]))
        self._notify()
        return int(update_id)

    # -- inspection -----------------------------------------------------------------------

    def sent(self, chat_id: int | None = None) -> list[JSON]:
        """Bot messages as they are now, each with emulator-only keys: `edits` (one entry per
        edit: method, date, old and new values), `deleted`, `parse_mode`, `reply_keyboard`."""
        result = []
        for stored in self._bot_log:
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
        return len(self._updates)

    def transcript(self) -> list[str]:
        return list(self._transcript)

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

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
        if not await self._wait_until(predicate, timeout, recheck):
            tail = "\n".join(self._transcript[-12:])
            raise TimeoutError(f"condition not met within {timeout}s; transcript tail:\n{tail}")

    async def wait_for_messages(self, chat_id: int, count: int, timeout: float = 5.0) -> list[JSON]:
        """Wait until the bot has sent at least `count` messages to the chat in total."""

        def enough() -> bool:
            return sum(1 for s in self._bot_log if s.message["chat"]["id"] == chat_id) >= count

        await self.wait_for(enough, timeout)
        return self.sent(chat_id)

    # -- fault injection ------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        count: int = 1,
        retry_after: int | None = None,
        *,
        applied: bool = False,
    ) -> None:
        """Queue `count` failures of `method` ("*" = any sending method). The description
        defaults to Telegram's for the status. With `applied`, the call takes effect and only
        the answer is lost, as when a response times out after Telegram delivered the
        message: the case that tempts an outbox into sending twice."""
        if description is None:
            description = {
                400: "Bad Request",
                403: "Forbidden",
                429: f"Too Many Requests: retry after {retry_after or 1}",
                502: "Bad Gateway",
                503: "Service Unavailable",
            }.get(status, "Internal Server Error")
        if status == 429 and retry_after is None:
            retry_after = 1
        key = "*" if method == "*" else method.lower()
        queue = self._faults.setdefault(key, deque())
        queue.extend(Fault(status, description, retry_after, applied) for _ in range(count))


class EmulatorThread:
    """An emulator on its own event loop in a background thread, so that a benchmark can
    drive the bot on the main loop without the emulator's work skewing its timings."""

    def __init__(self, **emulator_options: Any) -> None:
        self._options = emulator_options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._emu: BotApiEmulator | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def emu(self) -> BotApiEmulator:
        if self._emu is None:
            raise RuntimeError("EmulatorThread not started")
        return self._emu

    @property
    def url(self) -> str:
        return self.emu.url

    def start(self) -> EmulatorThread:
        self._thread = threading.Thread(target=self._run, name="bot-api-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` (plain or async) on the emulator's loop and return its result; the only
        safe way to inject updates or read state from another thread."""
        if self._loop is None:
            raise RuntimeError("EmulatorThread not started")

        async def invoke() -> Any:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with BotApiEmulator(**self._options) as emu:
            self._emu = emu
            self._ready.set()
            await self._stopping.wait()
