"""State of the sandbox Bot API emulator (`bot.sandbox.emulator`) and the helpers its parts share:
people, chats, messages and files; change notification for long polls and waiters; and the
parameter checks and message storage common to the bot-side methods."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bot.sandbox.records import (
    CALLBACK_DATA_LIMIT,
    CAPTION_LIMIT,
    GROUP_LIMIT,
    JSON,
    MESSAGE_LIMIT,
    NOT_MODIFIED,
    OVERALL_LIMIT,
    PRIVATE_LIMIT,
    WRONG_FILE,
    Fault,
    FloodGate,
    PendingQuery,
    RateLimit,
    StoredFile,
    StoredMessage,
)
from bot.sandbox.text import display_name, format_text, render_message, utf16_len
from bot.sandbox.wire import (
    ApiError,
    ApiParams,
    HttpRequest,
    HttpResponse,
    HttpServer,
    Upload,
    api_error,
    bad_request,
)

_BUTTON_ACTIONS = (
    "callback_data", "url", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip
_PHOTO_SIZES = ((90, 68), (1280, 960))  # nominal: the emulator does not decode images


class EmulatorState:
    """One bot's chats, people, messages, files and pending updates. `BotApiMethods`
    answers the HTTP requests and `BotApiEmulator` adds lifecycle and simulated people."""

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
        self._flood = FloodGate(overall_limit, private_limit, group_limit) if flood_limits else None
        self._http = HttpServer(self._handle, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Condition()
        self._notifiers: set[asyncio.Task[None]] = set()
        self._closing = False

        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._members: dict[int, set[int]] = {}
        self._blocked: set[int] = set()
        self._messages: dict[tuple[int, int], StoredMessage] = {}
        self._last_message_id: dict[int, int] = {}
        self._bot_log: list[StoredMessage] = []
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_seq = itertools.count(1)
        self._queries: dict[str, PendingQuery] = {}
        self._query_seq = itertools.count(4_100_000_000_000_000_001)
        self._updates: list[JSON] = []
        self._next_update_id = 1
        self._poll_generation = 0
        self._allowed_updates: list[str] = []
        self._faults: dict[str, deque[Fault]] = {}
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

    @property
    def username(self) -> str:
        return str(self.bot_user["username"])

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request. This state alone knows no Bot API methods, so every path
        is unknown to it; `BotApiMethods` overrides this with the real dispatch."""
        return api_error(ApiError(404, "Not Found"))

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
        return str(chat.get("title") or display_name(chat) or chat_id)

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
        self._messages[(chat_id, message["message_id"])] = StoredMessage(message, by_bot=False)
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
    ) -> StoredFile:
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
            record = StoredFile(
                ids["file_id"], ids["file_unique_id"], kind, data, path, mime_type, media
            )
            self._files[record.file_id] = self._files_by_path[path] = record
            records.append(record)
        return records[-1]

    def _log_line(self, message: JSON, note: str = "") -> None:
        who = display_name(message.get("from", {}))
        label = self._chat_label(message["chat"]["id"])
        self._transcript.append(f"[{label}] {who}{note}: {render_message(message)}")

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
        caption, entities = format_text(raw, parse_mode, params.json("caption_entities"))
        if utf16_len(caption) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        content: JSON = {"caption": caption}
        if entities:
            content["caption_entities"] = entities
        return content, parse_mode

    def _text(self, params: ApiParams) -> JSON:
        text, entities = format_text(
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
        stored = StoredMessage(message, True, parse_mode, keyboard)
        self._messages[(chat_id, message["message_id"])] = stored
        self._bot_log.append(stored)
        self.stats["sent_messages"] += 1
        self._log_line(message)
        self._notify()
        return copy.deepcopy(message)

    def _input_file(self, params: ApiParams, name: str) -> StoredFile:
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

    def _editable(self, params: ApiParams) -> StoredMessage:
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

    def _apply_edit(self, stored: StoredMessage, method: str, changes: JSON) -> JSON:
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
