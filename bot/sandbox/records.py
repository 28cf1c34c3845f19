"""Records of the sandbox Bot API emulator: Telegram's limits and error descriptions, stored
messages and files, injected faults, pending callback queries, and the flood gate that
applies Telegram's rate limits."""

from __future__ import annotations

import math
import random
import struct
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.wire import ApiError

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
# What `fail_at_random` fails by default: every method that changes what a person sees (the
# sending methods, edits, answers to presses); getUpdates is left alone.
RANDOM_FAULT_METHODS = SENDING_METHODS | {"editMessageText", "answerCallbackQuery"}


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


# The defaults of BotApiEmulator(flood_limits=True): overall, per private chat, per group.
OVERALL_LIMIT = RateLimit(30, 1.0)
PRIVATE_LIMIT = RateLimit(3, 3.0)
GROUP_LIMIT = RateLimit(20, 60.0)


@dataclass
class StoredFile:
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
class StoredMessage:
    message: JSON
    by_bot: bool
    parse_mode: str | None = None
    reply_keyboard: JSON | None = None
    edits: list[JSON] = field(default_factory=list)
    deleted: bool = False


@dataclass
class Fault:
    status: int
    description: str
    retry_after: int | None
    applied: bool

    def error(self) -> ApiError:
        return ApiError(self.status, self.description, self.retry_after)


@dataclass
class FaultRate:
    """Each call of `methods` fails with probability `rate`, with one of `faults` picked at
    random; seeded, so that a run can be repeated. `injected` counts what was drawn, by
    method and by (status, applied)."""

    rate: float
    faults: tuple[Fault, ...]
    methods: frozenset[str]
    rng: random.Random
    injected: Counter[tuple[str, int, bool]] = field(default_factory=Counter)

    def draw(self, method: str) -> Fault | None:
        if method not in self.methods or self.rng.random() >= self.rate:
            return None
        fault = self.rng.choice(self.faults)
        self.injected[(method, fault.status, fault.applied)] += 1
        return fault


@dataclass
class PendingQuery:
    user_id: int
    created: float
    answered: bool = False


class FloodGate:
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
