"""Pacing outgoing messages to Telegram's flood limits (about 30/s overall, short bursts then
1/s per private chat, 20/min per group), so the bot is not answered with 429s to begin with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, now: float) -> float:
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


@dataclass(frozen=True)
class Limits:
    """Telegram counts about 30 messages in any one second; a small overall burst at a
    slightly lower rate keeps every sliding second under that, not just the average."""

    per_second: float = 28.0
    overall_burst: float = 2.0
    private_per_second: float = 1.0
    private_burst: float = 3.0
    group_per_minute: float = 20.0
    group_burst: float = 3.0


class Pacer:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.overall = Bucket(self.limits.per_second, self.limits.overall_burst)
        self.chats: dict[int, Bucket] = {}
        self.holds: dict[int, float] = {}

    def _chat(self, chat_id: int) -> Bucket:
        bucket = self.chats.get(chat_id)
        if bucket is None:
            if chat_id < 0:
                bucket = Bucket(self.limits.group_per_minute / 60, self.limits.group_burst)
            else:
                bucket = Bucket(self.limits.private_per_second, self.limits.private_burst)
            self.chats[chat_id] = bucket
        return bucket

    def hold(self, chat_id: int, seconds: float) -> None:
        """After a 429 or a failure: nothing more to this chat until the time has passed."""
        self.holds[chat_id] = max(self.holds.get(chat_id, 0.0), time.monotonic() + seconds)

    def chat_wait(self, chat_id: int) -> float:
        now = time.monotonic()
        held = self.holds.get(chat_id, 0.0) - now
        return max(held, self._chat(chat_id).wait_time(now), 0.0)

    def overall_wait(self) -> float:
        return self.overall.wait_time(time.monotonic())

    def take(self, chat_id: int) -> None:
        now = time.monotonic()
        self.overall.take(now)
        self._chat(chat_id).take(now)
