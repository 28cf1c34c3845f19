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
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import inspect
import itertools
import math
import re
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import TracebackType
from typing import Any

from bot.emulator_http import (
    ApiError,
    ApiParams,
    HttpRequest,
    HttpResponse,
    HttpServer,
    Upload,
    api_error,
    api_ok,
    bad_request,
)

__all__ = ["BotApiEmulator", "EmulatorThread", "RateLimit", "utf16_len"]

JSON = dict[str, Any]

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
WRONG_FILE = "wrong file identifier/HTTP URL specified"
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)

# Methods that put a new message into a chat: the ones Telegram flood-limits, and the ones a
# "*" fault applies to.
SENDING_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "sendLocation", "sendSticker", "copyMessage"}
)
_BUTTON_ACTIONS = (
    "callback_data", "url", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip
_PHOTO_SIZES = ((90, 68), (1280, 960))  # nominal: the emulator does not decode images
_MEDIA_KEYS = ("photo", "document", "location", "sticker")


def utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units: an emoji outside the BMP counts twice."""
    return len(text.encode("utf-16-le")) // 2


def _tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x2a\x7f\xd4"))
        + chunk(b"IEND", b"")
    )


TINY_PNG = _tiny_png()


@dataclass(frozen=True)
class RateLimit:
    """At most `count` messages in any sliding window of `per_seconds`."""

    count: int
    per_seconds: float


# ---------------------------------------------------------------------------------------------
# parse_mode HTML


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip


class _EntityError(Exception):
    pass


class _TelegramHtml(HTMLParser):
    """Telegram's HTML subset: plain text plus entities, rejecting any other tag the way
    Telegram does, so that a handler which forgets to escape user input fails in tests."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0, *(m.end() for m in re.finditer("\n", source))]
        self._parts: list[str] = []
        self._offset = 0
        self._open: list[tuple[str, JSON]] = []
        self._entities: list[JSON] = []

    def parse(self) -> tuple[str, list[JSON]]:
        self.feed(self._source)
        self.close()
        if self._open:
            tag = self._open[-1][0]
            raise _EntityError(f'Can\'t find end tag corresponding to start tag "{tag}"')
        entities = sorted(self._entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self._parts), entities

    def _byte_offset(self) -> int:
        line, column = self.getpos()
        return len(self._source[: self._line_starts[line - 1] + column].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        kind = _HTML_TAGS.get(tag)
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            kind = None
        if kind is None:
            offset = self._byte_offset()
            raise _EntityError(f'Unsupported start tag "{tag}" at byte offset {offset}')
        entity: JSON = {"type": kind, "offset": self._offset}
        if kind == "text_link":
            entity["url"] = attributes.get("href") or ""
        elif kind == "custom_emoji":
            entity["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif kind == "code" and self._open and self._open[-1][1]["type"] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self._open[-1][1]["language"] = language
            entity["type"] = ""
        self._open.append((tag, entity))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open[-1][0] != tag:
            expected = f'"</{self._open[-1][0]}>"' if self._open else "nothing"
            raise _EntityError(
                f"Unmatched end tag at byte offset {self._byte_offset()}, "
                f'expected {expected}, found "</{tag}>"'
            )
        _, entity = self._open.pop()
        entity["length"] = self._offset - entity["offset"]
        if entity["length"] > 0 and entity["type"]:
            self._entities.append(entity)

    def handle_data(self, data: str) -> None:
        self._parts.append(data)
        self._offset += utf16_len(data)


def _format(text: str, parse_mode: str | None, explicit: Any) -> tuple[str, list[JSON]]:
    if parse_mode is None or parse_mode == "":
        return text, list(explicit) if isinstance(explicit, list) else []
    if parse_mode.lower() == "html":
        try:
            return _TelegramHtml(text).parse()
        except _EntityError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
    if parse_mode.lower() in ("markdown", "markdownv2"):
        return text, []
    raise bad_request("unsupported parse_mode")


def _user_entities(text: str) -> list[JSON]:
    """What a Telegram client attaches to typed text: bot commands and @mentions."""
    entities = []
    patterns = (
        ("bot_command", r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?"),
        ("mention", r"(?<![\w@])@[A-Za-z0-9_]{5,32}"),
    )
    for kind, pattern in patterns:
        for match in re.finditer(pattern, text):
            offset = utf16_len(text[: match.start()])
            entities.append({"type": kind, "offset": offset, "length": utf16_len(match[0])})
    return sorted(entities, key=lambda e: e["offset"])


# ---------------------------------------------------------------------------------------------
# state records


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    file_path: str
    mime_type: str
    media: Any  # the JSON put into a message: photo size list, Document or Sticker

    def as_file(self) -> JSON:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class _StoredMessage:
    message: JSON
    by_bot: bool
    parse_mode: str | None = None
    reply_keyboard: JSON | None = None
    edits: list[JSON] = field(default_factory=list)
    deleted: bool = False


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None
    applied: bool

    def error(self) -> ApiError:
        return ApiError(self.status, self.description, self.retry_after)


@dataclass
class _PendingQuery:
    user_id: int
    created: float
    answered: bool = False


class _FloodGate:
    """Sliding-window counters per chat and overall, like Telegram's per-bot limits."""

    def __init__(self, overall: RateLimit, private: RateLimit, group: RateLimit) -> None:
        self._overall = overall
        self._private = private
        self._group = group
        self._windows: dict[int | str, deque[float]] = {}

    def admit(self, chat_id: int, now: float) -> int | None:
        """Record a send and return None, or return the whole seconds until a slot frees."""
        checks = (("*", self._overall), (chat_id, self._group if chat_id < 0 else self._private))
        wait = 0.0
        for key, limit in checks:
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - limit.per_seconds:
                window.popleft()
            if len(window) >= limit.count:
                wait = max(wait, window[0] + limit.per_seconds - now)
        if wait > 0:
            return max(1, math.ceil(wait))
        for key, _ in checks:
            self._windows[key].append(now)
        return None


_ApiMethod = Callable[["BotApiEmulator", ApiParams], Awaitable[Any]]
_METHODS: dict[str, tuple[str, _ApiMethod]] = {}


def _api(name: str) -> Callable[[_ApiMethod], _ApiMethod]:
    """Register a Bot API method; Telegram matches method names case-insensitively."""

    def register(method: _ApiMethod) -> _ApiMethod:
        _METHODS[name.lower()] = (name, method)
        return method

    return register


# ---------------------------------------------------------------------------------------------


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
        overall_limit: RateLimit = RateLimit(30, 1.0),
        private_limit: RateLimit = RateLimit(3, 3.0),
        group_limit: RateLimit = RateLimit(20, 60.0),
        privacy_mode: bool = False,
        callback_query_ttl: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        prefix = token.split(":", 1)[0]
        self.token = token
        self.bot_user: JSON = {
            "id": bot_id if bot_id is not None else (int(prefix) if prefix.isdigit() else 1),
            "is_bot": True,
            "first_name": first_name,
            "username": username,
        }
        self.privacy_mode = privacy_mode
        self.callback_query_ttl = callback_query_ttl
        self._clock = clock
        self._flood = (
            _FloodGate(overall_limit, private_limit, group_limit) if flood_limits else None
        )
        self._http = HttpServer(self._handle, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Condition()
        self._notifiers: set[asyncio.Task[None]] = set()
        self._closing = False

        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._members: dict[int, set[int]] = {}
        self._blocked: set[int] = set()
        self._messages: dict[tuple[int, int], _StoredMessage] = {}
        self._last_message_id: dict[int, int] = {}
        self._bot_log: list[_StoredMessage] = []
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._file_seq = itertools.count(1)
        self._queries: dict[str, _PendingQuery] = {}
        self._query_seq = itertools.count(4_100_000_000_000_000_001)
        self._updates: list[JSON] = []
        self._next_update_id = 1
        self._poll_generation = 0
        self._allowed_updates: list[str] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._transcript: list[str] = []

        self.webhook_url = ""
        self.waiting_polls = 0  # getUpdates requests now parked in a long poll
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.settings: dict[str, JSON] = {}
        self.callback_answers: list[JSON] = []
        self.calls: list[tuple[str, JSON, int]] = []
        self.stats: dict[str, int] = dict.fromkeys(
            ("requests", "sent_messages", "http_4xx", "http_429", "http_5xx"), 0
        )

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def username(self) -> str:
        return str(self.bot_user["username"])

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
        entities = _user_entities(text)
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
        if entities := _user_entities(text):
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
        label = _button_text(stored.message, callback_data)
        if strict and label is None:
            raise ValueError(f"message {message_id} has no button with data {callback_data!r}")
        query_id = str(next(self._query_seq))
        self._queries[query_id] = _PendingQuery(user_id, time.monotonic())
        query = {
            "id": query_id,
            "from": copy.deepcopy(user),
            "message": copy.deepcopy(stored.message),
            "chat_instance": str(abs(chat_id) * 7919 + self.bot_user["id"]),
            "data": callback_data,
        }
        self._transcript.append(
            f"[{self._chat_label(chat_id)}] {_display(user)} pressed [{label or callback_data}]"
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

    async def wait_for_messages(
        self, chat_id: int, count: int, timeout: float = 5.0
    ) -> list[JSON]:
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
        queue.extend(_Fault(status, description, retry_after, applied) for _ in range(count))

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        self.stats["requests"] += 1
        name = request.path
        recorded: JSON = {}
        try:
            if request.path.startswith("/file/bot"):
                token, _, file_path = request.path.removeprefix("/file/bot").partition("/")
                name, recorded = "/file", {"file_path": file_path}
                response = self._download(token, file_path)
            else:
                token, _, method = request.path.removeprefix("/bot").partition("/")
                if not request.path.startswith("/bot") or not method:
                    raise ApiError(404, "Not Found")
                if token != self.token:
                    raise ApiError(401, "Unauthorized")
                entry = _METHODS.get(method.lower())
                if entry is None:
                    raise ApiError(404, "Not Found")
                name, implementation = entry
                try:
                    values, uploads = request.params()
                except ValueError as exc:
                    raise bad_request(f"can't parse request: {exc}") from None
                params = ApiParams(values, uploads)
                recorded = params.for_record()
                response = api_ok(await self._invoke(name, implementation, params))
        except ApiError as error:
            response = api_error(error)
        self._account(name, recorded, response.status)
        return response

    async def _invoke(self, name: str, implementation: _ApiMethod, params: ApiParams) -> Any:
        fault = self._take_fault(name)
        if fault is not None and not fault.applied:
            raise fault.error()
        result = await implementation(self, params)
        if fault is not None:
            raise fault.error()
        return result

    def _take_fault(self, name: str) -> _Fault | None:
        for key in (name.lower(), "*" if name in SENDING_METHODS else None):
            queue = self._faults.get(key) if key else None
            if queue:
                return queue.popleft()
        return None

    def _account(self, name: str, recorded: JSON, status: int) -> None:
        self.calls.append((name, recorded, status))
        if status == 429:
            self.stats["http_429"] += 1
        if 400 <= status < 500:
            self.stats["http_4xx"] += 1
        elif status >= 500:
            self.stats["http_5xx"] += 1
        self._notify()

    def _download(self, token: str, path: str) -> HttpResponse:
        stored = self._files_by_path.get(path)
        if token != self.token or stored is None:
            raise ApiError(404, "Not Found")
        return HttpResponse(200, stored.data, stored.mime_type)

    # -- change notification --------------------------------------------------------------

    def _notify(self) -> None:
        """Wake waiters (long polls, wait_for). Condition.notify_all needs the lock, which
        synchronous callers cannot take, so the notification runs as a task on the loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop or running
        if loop is None:
            return
        if loop is running:
            self._spawn_notifier()
        else:
            loop.call_soon_threadsafe(self._spawn_notifier)

    def _spawn_notifier(self) -> None:
        task = asyncio.get_running_loop().create_task(self._notify_all())
        self._notifiers.add(task)
        task.add_done_callback(self._notifiers.discard)

    async def _notify_all(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_until(
        self, predicate: Callable[[], object], timeout: float, recheck: float | None = None
    ) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while not predicate():
                if self._closing:
                    return False
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    pause = remaining if recheck is None else min(recheck, remaining)
                    await asyncio.wait_for(self._changed.wait(), pause)
        return True

    # -- helpers: people, chats, messages, files ------------------------------------------

    def _user(self, user_id: int) -> JSON:
        if user_id not in self._users:
            raise ValueError(f"unknown user {user_id}; add_user first")
        return self._users[user_id]

    def _check_member(self, user_id: int, chat_id: int) -> None:
        if chat_id > 0 and chat_id != user_id:
            raise ValueError(f"user {user_id} cannot write in the private chat {chat_id}")
        if chat_id < 0 and user_id not in self._members.get(chat_id, set()):
            raise ValueError(f"user {user_id} is not a member of group {chat_id}")

    def _chat_label(self, chat_id: int) -> str:
        chat = self._chats.get(chat_id, {})
        return str(chat.get("title") or _display(chat) or chat_id)

    def _next_message(
        self, chat_id: int, sender: JSON, content: JSON, reply_to: JSON | None
    ) -> JSON:
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        message: JSON = {
            "message_id": message_id,
            "from": copy.deepcopy(sender),
            "chat": copy.deepcopy(self._chats[chat_id]),
            "date": int(self._clock()),
        }
        if reply_to is not None:
            message["reply_to_message"] = {
                k: copy.deepcopy(v) for k, v in reply_to.items() if k != "reply_to_message"
            }
        message.update(copy.deepcopy(content))
        return message

    def _user_message(
        self, user_id: int, chat_id: int | None, content: JSON, reply_to: int | None
    ) -> JSON:
        user = self._user(user_id)
        chat_id = user_id if chat_id is None else chat_id
        if chat_id not in self._chats:
            raise ValueError(f"unknown chat {chat_id}")
        self._check_member(user_id, chat_id)
        target = None
        if reply_to is not None:
            replied = self._messages.get((chat_id, reply_to))
            if replied is None:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
            target = replied.message
        message = self._next_message(chat_id, user, content, target)
        self._messages[(chat_id, message["message_id"])] = _StoredMessage(message, by_bot=False)
        self._log_line(message)
        if self._visible_to_bot(message):
            self._push_update("message", message)
        else:
            self._notify()
        return copy.deepcopy(message)

    def _visible_to_bot(self, message: JSON) -> bool:
        """Privacy mode: in groups the bot sees commands, replies to it and mentions only."""
        if not self.privacy_mode or message["chat"]["id"] > 0:
            return True
        text = str(message.get("text") or message.get("caption") or "")
        replied = message.get("reply_to_message", {}).get("from", {})
        return (
            text.startswith("/")
            or replied.get("id") == self.bot_user["id"]
            or f"@{self.username}".lower() in text.lower()
        )

    def _push_update(self, kind: str, payload: JSON) -> None:
        self._updates.append({"update_id": self._next_update_id, kind: copy.deepcopy(payload)})
        self._next_update_id += 1
        self._notify()

    def _store_file(
        self, kind: str, data: bytes, mime_type: str, file_name: str | None, emoji: str = ""
    ) -> _StoredFile:
        """Create the file records for one upload. A photo gets one record per size, all
        sharing the size list so that re-sending any of its file_ids re-sends the photo."""
        sizes: list[JSON] = []
        records = []
        for width, height in _PHOTO_SIZES if kind == "photo" else ((512, 512),):
            n = next(self._file_seq)
            suffix = {"photo": ".jpg", "sticker": ".webp"}.get(kind, "")
            if kind == "document" and file_name and "." in file_name:
                suffix = "." + file_name.rsplit(".", 1)[1]
            ids = {"file_id": f"EMU-{kind}-{n:06d}", "file_unique_id": f"EMUu{n:06d}"}
            media: Any
            size = {"file_size": len(data)}
            if kind == "photo":
                sizes.append({**ids, **size, "width": width, "height": height})
                media = sizes
            elif kind == "document":
                name = file_name or f"file_{n}"
                media = {**ids, **size, "file_name": name, "mime_type": mime_type}
            else:
                media = {
                    **ids,
                    **size,
                    "type": "regular",
                    "width": width,
                    "height": height,
                    "is_animated": False,
                    "is_video": False,
                    "emoji": emoji,
                }
            path = f"{kind}s/file_{n}{suffix}"
            record = _StoredFile(
                ids["file_id"], ids["file_unique_id"], kind, data, path, mime_type, media
            )
            self._files[record.file_id] = self._files_by_path[path] = record
            records.append(record)
        return records[-1]

    def _log_line(self, message: JSON, note: str = "") -> None:
        who = _display(message.get("from", {}))
        label = self._chat_label(message["chat"]["id"])
        self._transcript.append(f"[{label}] {who}{note}: {_render(message)}")

    # -- helpers for bot-side methods -----------------------------------------------------

    def _chat(self, params: ApiParams, name: str = "chat_id") -> int:
        ref = params.chat_ref(name)
        if ref is None:
            raise bad_request(f"{name} is empty")
        if isinstance(ref, str):
            wanted = ref.removeprefix("@").lower()
            for chat in self._chats.values():
                if chat["type"] != "private" and str(chat.get("username", "")).lower() == wanted:
                    return int(chat["id"])
            raise bad_request("chat not found")
        if ref not in self._chats:
            raise bad_request("chat not found")
        return ref

    def _sending_chat(self, params: ApiParams) -> int:
        chat_id = self._chat(params)
        if chat_id in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _caption(self, params: ApiParams) -> tuple[JSON, str | None]:
        raw = params.text("caption")
        parse_mode = params.text("parse_mode")
        if not raw:
            return {}, parse_mode
        caption, entities = _format(raw, parse_mode, params.json("caption_entities"))
        if utf16_len(caption) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        content: JSON = {"caption": caption}
        if entities:
            content["caption_entities"] = entities
        return content, parse_mode

    def _text(self, params: ApiParams) -> JSON:
        text, entities = _format(
            params.text("text") or "", params.text("parse_mode"), params.json("entities")
        )
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MESSAGE_LIMIT:
            raise bad_request("message is too long")
        return {"text": text, "entities": entities or None}

    def _markup(self, params: ApiParams) -> tuple[JSON | None, JSON | None]:
        """(inline keyboard shown on the message, any other keyboard sent alongside)."""
        markup = params.json("reply_markup")
        if markup is None:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return None, markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for button in itertools.chain.from_iterable(rows):
            if not isinstance(button, dict):
                raise bad_request("can't parse inline keyboard button: object expected")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
                raise bad_request("BUTTON_DATA_INVALID")
            if not any(action in button for action in _BUTTON_ACTIONS):
                raise bad_request("text buttons are unallowed in the inline keyboard")
        return (markup if any(rows) else None), None

    def _reply_target(self, chat_id: int, params: ApiParams) -> JSON | None:
        reply = params.json("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow = bool(reply.get("allow_sending_without_reply"))
        else:
            message_id = params.integer("reply_to_message_id")
            allow = params.flag("allow_sending_without_reply")
        if message_id is None:
            return None
        stored = self._messages.get((chat_id, int(message_id)))
        if stored is None or stored.deleted:
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return stored.message

    def _post(
        self, chat_id: int, params: ApiParams, content: JSON, parse_mode: str | None = None
    ) -> JSON:
        """The common tail of every sending method: keyboard, reply, flood limit, store."""
        inline, keyboard = self._markup(params)
        target = self._reply_target(chat_id, params)
        if self._flood is not None:
            retry_after = self._flood.admit(chat_id, time.monotonic())
            if retry_after is not None:
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        content = {k: v for k, v in content.items() if v is not None}
        if inline is not None:
            content["reply_markup"] = inline
        message = self._next_message(chat_id, self.bot_user, content, target)
        stored = _StoredMessage(message, True, parse_mode, keyboard)
        self._messages[(chat_id, message["message_id"])] = stored
        self._bot_log.append(stored)
        self.stats["sent_messages"] += 1
        self._log_line(message)
        self._notify()
        return copy.deepcopy(message)

    def _input_file(self, params: ApiParams, name: str) -> _StoredFile:
        value = params.file(name)
        if isinstance(value, Upload):
            mime = {"photo": "image/jpeg", "sticker": "image/webp"}.get(name, value.content_type)
            return self._store_file(name, value.data, mime, value.filename)
        if not value:
            raise bad_request(f"there is no {name} in the request")
        stored = self._files.get(value)
        if stored is None:
            raise bad_request(WRONG_FILE)
        if stored.kind != name:
            raise bad_request("type of file mismatch")
        return stored

    def _editable(self, params: ApiParams) -> _StoredMessage:
        if params.text("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id = self._chat(params)
        message_id = params.integer("message_id")
        stored = self._messages.get((chat_id, message_id or 0))
        if stored is None or stored.deleted:
            raise bad_request("message to edit not found")
        if not stored.by_bot:
            raise bad_request("message can't be edited")
        return stored

    def _apply_edit(self, stored: _StoredMessage, method: str, changes: JSON) -> JSON:
        message = stored.message
        old = {key: message.get(key) for key in changes}
        if old == changes:
            raise bad_request(NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = copy.deepcopy(value)
        message["edit_date"] = int(self._clock())
        stored.edits.append(
            {"method": method, "date": message["edit_date"], "old": old, "new": changes}
        )
        self._log_line(message, " (edited)")
        self._notify()
        return copy.deepcopy(message)

    # -- Bot API methods ------------------------------------------------------------------

    @_api("getMe")
    async def _get_me(self, p: ApiParams) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    @_api("getUpdates")
    async def _get_updates(self, p: ApiParams) -> list[JSON]:
        if self.webhook_url:
            raise ApiError(409, WEBHOOK_CONFLICT)
        offset = p.integer("offset")
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = max(p.number("timeout") or 0.0, 0.0)
        allowed = p.json("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        if offset is not None and offset < 0:
            del self._updates[:offset]
        elif offset is not None:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older poll still waiting is answered with 409, as by Telegram

        def ready() -> bool:
            return bool(self._deliverable()) or self._poll_generation != generation

        if timeout > 0 and not ready():
            self.waiting_polls += 1
            self._notify()
            try:
                await self._wait_until(ready, timeout)
            finally:
                self.waiting_polls -= 1
        if self._poll_generation != generation:
            raise ApiError(409, POLL_CONFLICT)
        return self._deliverable()[:limit]

    def _deliverable(self) -> list[JSON]:
        """Pending updates, dropping kinds excluded by allowed_updates as Telegram does."""
        if self._allowed_updates:
            allowed = set(self._allowed_updates)
            self._updates = [u for u in self._updates if not set(u) - {"update_id"} - allowed]
        return self._updates

    @_api("setWebhook")
    async def _set_webhook(self, p: ApiParams) -> bool:
        url = p.text("url") or ""
        if url and not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    @_api("deleteWebhook")
    async def _delete_webhook(self, p: ApiParams) -> bool:
        self.webhook_url = ""
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    @_api("getWebhookInfo")
    async def _get_webhook_info(self, p: ApiParams) -> JSON:
        info: JSON = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    @staticmethod
    def _commands_key(p: ApiParams) -> tuple[str, str]:
        """Commands are kept per (scope, language), as Telegram resolves them."""
        scope = p.json("scope") or {"type": "default"}
        if not isinstance(scope, dict):
            raise bad_request("can't parse BotCommandScope JSON object")
        return (repr(sorted(scope.items())), p.text("language_code") or "")

    @_api("setMyCommands")
    async def _set_my_commands(self, p: ApiParams) -> bool:
        commands = p.json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be an array of at most 100 BotCommand objects")
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("command description must be 1-256 characters")
        self.commands[self._commands_key(p)] = commands
        return True

    @_api("getMyCommands")
    async def _get_my_commands(self, p: ApiParams) -> list[JSON]:
        return self.commands.get(self._commands_key(p), [])

    @_api("deleteMyCommands")
    async def _delete_my_commands(self, p: ApiParams) -> bool:
        self.commands.pop(self._commands_key(p), None)
        return True

    @_api("setChatMenuButton")
    async def _set_chat_menu_button(self, p: ApiParams) -> bool:
        if "chat_id" in p:
            self._chat(p)
        key = f"menu_button:{p.chat_ref() or 'default'}"
        self.settings[key] = p.json("menu_button") or {"type": "default"}
        return True

    @_api("getChatMenuButton")
    async def _get_chat_menu_button(self, p: ApiParams) -> JSON:
        chosen = self.settings.get(f"menu_button:{p.chat_ref() or 'default'}")
        return chosen or self.settings.get("menu_button:default") or {"type": "commands"}

    @_api("sendChatAction")
    async def _send_chat_action(self, p: ApiParams) -> bool:
        self._sending_chat(p)
        if not p.text("action"):
            raise bad_request("action is empty")
        return True

    @_api("sendMessage")
    async def _send_message(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        return self._post(chat_id, p, self._text(p), p.text("parse_mode"))

    @_api("sendPhoto")
    async def _send_photo(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        caption, parse_mode = self._caption(p)
        photo = self._input_file(p, "photo")
        return self._post(chat_id, p, {"photo": photo.media, **caption}, parse_mode)

    @_api("sendDocument")
    async def _send_document(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        caption, parse_mode = self._caption(p)
        document = self._input_file(p, "document")
        return self._post(chat_id, p, {"document": document.media, **caption}, parse_mode)

    @_api("sendSticker")
    async def _send_sticker(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        sticker = self._input_file(p, "sticker")
        return self._post(chat_id, p, {"sticker": sticker.media})

    @_api("sendLocation")
    async def _send_location(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        latitude, longitude = p.number("latitude"), p.number("longitude")
        if latitude is None or not -90 <= latitude <= 90:
            raise bad_request("wrong latitude specified")
        if longitude is None or not -180 <= longitude <= 180:
            raise bad_request("wrong longitude specified")
        location = {"latitude": latitude, "longitude": longitude}
        return self._post(chat_id, p, {"location": location})

    @_api("copyMessage")
    async def _copy_message(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        source = self._messages.get((self._chat(p, "from_chat_id"), p.integer("message_id") or 0))
        if source is None or source.deleted:
            raise bad_request("message to copy not found")
        keys = ("text", "entities", "caption", "caption_entities", *_MEDIA_KEYS)
        content = {key: source.message[key] for key in keys if key in source.message}
        parse_mode = None
        if "caption" in p and "text" not in content:
            content.pop("caption_entities", None)
            caption, parse_mode = self._caption(p)
            content["caption"] = caption.get("caption")
            content["caption_entities"] = caption.get("caption_entities")
        message = self._post(chat_id, p, content, parse_mode)
        return {"message_id": message["message_id"]}

    @_api("editMessageText")
    async def _edit_message_text(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        if "text" not in stored.message:
            raise bad_request("there is no text in the message to edit")
        changes = self._text(p)
        changes["reply_markup"] = self._markup(p)[0]
        edited = self._apply_edit(stored, "editMessageText", changes)
        stored.parse_mode = p.text("parse_mode")
        return edited

    @_api("editMessageCaption")
    async def _edit_message_caption(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        if "text" in stored.message or "location" in stored.message:
            raise bad_request("there is no caption in the message to edit")
        caption, _ = self._caption(p)
        changes = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities"),
            "reply_markup": self._markup(p)[0],
        }
        return self._apply_edit(stored, "editMessageCaption", changes)

    @_api("editMessageReplyMarkup")
    async def _edit_message_reply_markup(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        changes = {"reply_markup": self._markup(p)[0]}
        return self._apply_edit(stored, "editMessageReplyMarkup", changes)

    @_api("deleteMessage")
    async def _delete_message(self, p: ApiParams) -> bool:
        stored = self._messages.get((self._chat(p), p.integer("message_id") or 0))
        if stored is None or stored.deleted:
            raise bad_request("message to delete not found")
        stored.deleted = True
        self._log_line(stored.message, " (deleted)")
        self._notify()
        return True

    @_api("answerCallbackQuery")
    async def _answer_callback_query(self, p: ApiParams) -> bool:
        query_id = p.text("callback_query_id") or ""
        query = self._queries.get(query_id)
        if (
            query is None
            or query.answered
            or time.monotonic() - query.created > self.callback_query_ttl
        ):
            raise bad_request(QUERY_TOO_OLD)
        query.answered = True
        answer = {
            "query_id": query_id,
            "text": p.text("text"),
            "show_alert": p.flag("show_alert"),
            "url": p.text("url"),
            "user_id": query.user_id,
        }
        self.callback_answers.append(answer)
        if answer["text"]:
            kind = "alert" if answer["show_alert"] else "toast"
            user = _display(self._users.get(query.user_id, {}))
            self._transcript.append(f"  ({kind} to {user}) {answer['text']}")
        self._notify()
        return True

    @_api("getFile")
    async def _get_file(self, p: ApiParams) -> JSON:
        stored = self._files.get(p.text("file_id") or "")
        if stored is None:
            raise bad_request(WRONG_FILE)
        return stored.as_file()

    @_api("getChat")
    async def _get_chat(self, p: ApiParams) -> JSON:
        gift_types = (
            "unlimited_gifts",
            "limited_gifts",
            "unique_gifts",
            "premium_subscription",
            "gifts_from_channels",
        )
        chat = copy.deepcopy(self._chats[self._chat(p)])
        chat["accent_color_id"] = 0
        chat["max_reaction_count"] = 11
        chat["accepted_gift_types"] = dict.fromkeys(gift_types, False)
        return chat

    @_api("close")
    async def _close(self, p: ApiParams) -> bool:
        return True

    @_api("logOut")
    async def _log_out(self, p: ApiParams) -> bool:
        return True



def _recorder(name: str) -> _ApiMethod:
    """Settings the emulator only needs to remember, for tests to read from `settings`."""

    async def record(emu: BotApiEmulator, p: ApiParams) -> bool:
        emu.settings[name] = p.for_record()
        return True

    return record


for _name in ("setMyDescription", "setMyShortDescription", "setMyName"):
    _api(_name)(_recorder(_name))


def _display(person: JSON) -> str:
    return " ".join(str(person[k]) for k in ("first_name", "last_name") if person.get(k))


def _button_text(message: JSON, callback_data: str) -> str | None:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    for button in itertools.chain.from_iterable(rows):
        if button.get("callback_data") == callback_data:
            return str(button.get("text", ""))
    return None


def _render(message: JSON) -> str:
    """One readable line per message for transcripts: media as [photo], buttons as [text]."""
    parts = []
    if "photo" in message:
        parts.append("[photo]")
    if "document" in message:
        parts.append(f"[document {message['document'].get('file_name', '')}]")
    if "location" in message:
        location = message["location"]
        parts.append(f"[location {location['latitude']}, {location['longitude']}]")
    if "sticker" in message:
        parts.append(f"[sticker {message['sticker'].get('emoji', '')}]")
    body = message.get("text") or message.get("caption")
    if body:
        parts.append(str(body).replace("\n", "\n    "))
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    buttons = " ".join(f"[{b.get('text', '')}]" for b in itertools.chain.from_iterable(rows))
    if buttons:
        parts.append(buttons)
    return " ".join(parts)


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
