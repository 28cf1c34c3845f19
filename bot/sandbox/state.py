"""State of the sandbox Bot API emulator and the helpers its parts share.

`EmulatorState` holds one bot's people, chats, messages, files and pending updates, plus
what tests read back (calls, stats, callback answers, commands and settings). `Changes`
wakes long polls and waiters when any of it changes. The parts of the emulator (the Bot API
methods in `bot.sandbox.api` and `bot.sandbox.sending`, the simulated people in
`bot.sandbox.people`) and the `BotApiEmulator` facade all hold the same state object.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from bot.sandbox.records import (
    JSON,
    Fault,
    FaultRate,
    PendingQuery,
    StoredFile,
    StoredMessage,
)
from bot.sandbox.text import display_name, render_message
from bot.sandbox.wire import ApiParams, bad_request

_PHOTO_SIZES = ((90, 68), (1280, 960))  # nominal: the emulator does not decode images


class Changes:
    """Change notification: every mutation calls `notify`, which wakes the long polls and
    `wait_for` callers parked in `wait_until` so that they look at the state again."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self._changed = asyncio.Condition()
        self._notifiers: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        """Bind to the running loop, the one every mutation must then happen on."""
        self.closing = False
        self.loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Wake every waiter one last time; they see `closing` and return."""
        self.closing = True
        await self.notify_all()

    async def drain(self) -> None:
        """Cancel notifications still in flight and unbind from the loop."""
        for task in list(self._notifiers):
            task.cancel()
        await asyncio.gather(*self._notifiers, return_exceptions=True)
        self.loop = None

    def notify(self) -> None:
        """Wake waiters (long polls, wait_for). Condition.notify_all needs the lock, which
        synchronous callers cannot take, so the notification runs as a task on the loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self.loop or running
        if loop is None:
            return
        if loop is running:
            self._spawn_notifier()
        else:
            loop.call_soon_threadsafe(self._spawn_notifier)

    def _spawn_notifier(self) -> None:
        task = asyncio.get_running_loop().create_task(self.notify_all())
        self._notifiers.add(task)
        task.add_done_callback(self._notifiers.discard)

    async def notify_all(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(
        self, predicate: Callable[[], object], timeout: float, recheck: float | None = None
    ) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while not predicate():
                if self.closing:
                    return False
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    pause = remaining if recheck is None else min(recheck, remaining)
                    await asyncio.wait_for(self._changed.wait(), pause)
        return True


class EmulatorState:
    """One bot's chats, people, messages, files and pending updates. Plain attributes: the
    parts of the emulator read and change them directly, and call `notify` after a change."""

    def __init__(
        self,
        token: str,
        bot_user: JSON,
        *,
        privacy_mode: bool,
        callback_query_ttl: float,
        clock: Callable[[], float],
    ) -> None:
        self.token = token
        self.bot_user = bot_user
        self.privacy_mode = privacy_mode
        self.callback_query_ttl = callback_query_ttl
        self.clock = clock
        self.changes = Changes()

        self.users: dict[int, JSON] = {}
        self.chats: dict[int, JSON] = {}
        self.members: dict[int, set[int]] = {}
        self.blocked: set[int] = set()
        self.messages: dict[tuple[int, int], StoredMessage] = {}
        self.last_message_id: dict[int, int] = {}
        self.bot_log: list[StoredMessage] = []
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.file_seq = itertools.count(1)
        self.queries: dict[str, PendingQuery] = {}
        self.query_seq = itertools.count(4_100_000_000_000_000_001)
        self.updates: list[JSON] = []
        self.next_update_id = 1
        self.poll_generation = 0
        self.allowed_updates: list[str] = []
        self.faults: dict[str, deque[Fault]] = {}
        self.fault_rate: FaultRate | None = None
        self.sending_latency = 0.0  # seconds every sending method takes to answer
        self.transcript: list[str] = []

        self.webhook_url = ""
        self.webhook_secret = ""
        self.webhook_max_connections = 40
        self.webhook_ip_address = ""
        self.webhook_last_error: tuple[int, str] | None = None  # (unix time, message)
        self.waiting_polls = 0  # getUpdates requests now parked in a long poll
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.settings: dict[str, JSON] = {}
        self.callback_answers: list[JSON] = []
        self.calls: list[tuple[str, JSON, int]] = []
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "requests",
                "sent_messages",
                "http_4xx",
                "http_429",
                "http_5xx",
                "webhook_posts",
                "webhook_failures",
                "webhook_dropped",
            ),
            0,
        )

    @property
    def username(self) -> str:
        return str(self.bot_user["username"])

    def notify(self) -> None:
        self.changes.notify()

    # -- people and chats -----------------------------------------------------------------

    def user(self, user_id: int) -> JSON:
        if user_id not in self.users:
            raise ValueError(f"unknown user {user_id}; add_user first")
        return self.users[user_id]

    def check_member(self, user_id: int, chat_id: int) -> None:
        if chat_id > 0 and chat_id != user_id:
            raise ValueError(f"user {user_id} cannot write in the private chat {chat_id}")
        if chat_id < 0 and user_id not in self.members.get(chat_id, set()):
            raise ValueError(f"user {user_id} is not a member of group {chat_id}")

    def chat_label(self, chat_id: int) -> str:
        chat = self.chats.get(chat_id, {})
        return str(chat.get("title") or display_name(chat) or chat_id)

    def find_chat(self, params: ApiParams, name: str = "chat_id") -> int:
        """The chat a Bot API call addresses, by numeric id or by "@username"."""
        ref = params.chat_ref(name)
        if ref is None:
            raise bad_request(f"{name} is empty")
        if isinstance(ref, str):
            wanted = ref.removeprefix("@").lower()
            for chat in self.chats.values():
                if chat["type"] != "private" and str(chat.get("username", "")).lower() == wanted:
                    return int(chat["id"])
            raise bad_request("chat not found")
        if ref not in self.chats:
            raise bad_request("chat not found")
        return ref

    # -- messages, updates and files ------------------------------------------------------

    def next_message(
        self, chat_id: int, sender: JSON, content: JSON, reply_to: JSON | None
    ) -> JSON:
        message_id = self.last_message_id.get(chat_id, 0) + 1
        self.last_message_id[chat_id] = message_id
        message: JSON = {
            "message_id": message_id,
            "from": copy.deepcopy(sender),
            "chat": copy.deepcopy(self.chats[chat_id]),
            "date": int(self.clock()),
        }
        if reply_to is not None:
            message["reply_to_message"] = {
                k: copy.deepcopy(v) for k, v in reply_to.items() if k != "reply_to_message"
            }
        message.update(copy.deepcopy(content))
        return message

    def visible_to_bot(self, message: JSON) -> bool:
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

    def push_update(self, kind: str, payload: JSON) -> None:
        self.updates.append({"update_id": self.next_update_id, kind: copy.deepcopy(payload)})
        self.next_update_id += 1
        self.notify()

    def store_file(
        self, kind: str, data: bytes, mime_type: str, file_name: str | None, emoji: str = ""
    ) -> StoredFile:
        """Create the file records for one upload. A photo gets one record per size, all
        sharing the size list so that re-sending any of its file_ids re-sends the photo."""
        sizes: list[JSON] = []
        records = []
        for width, height in _PHOTO_SIZES if kind == "photo" else ((512, 512),):
            n = next(self.file_seq)
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
            self.files[record.file_id] = self.files_by_path[path] = record
            records.append(record)
        return records[-1]

    def log_line(self, message: JSON, note: str = "") -> None:
        who = display_name(message.get("from", {}))
        label = self.chat_label(message["chat"]["id"])
        self.transcript.append(f"[{label}] {who}{note}: {render_message(message)}")
