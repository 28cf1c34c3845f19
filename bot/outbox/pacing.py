"""Pacing outgoing messages to Telegram's flood limits (about 30/s overall, short bursts then
1/s per private chat, 20/min per group), so the bot is not answered with 429s to begin with."""

from __future__ import annotations

import math
import time
from collections import deque
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


class Sending:
    """One send counted by the overall window: in flight until `done`, then counted from
    the moment Telegram's answer came back."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = math.inf

    def done(self, now: float | None = None) -> None:
        self.at = time.monotonic() if now is None else now


class Window:
    """At most `count` sends in any sliding window of `seconds`, as Telegram counts its
    overall limit. A send counts from when its answer came back, and a send still in flight
    counts until then: Telegram saw each request somewhere between its start and its answer,
    so a new send started a window after an earlier one was answered can never meet it in
    one of Telegram's windows, however late or early either reached the server. Unlike a
    token bucket it loses nothing to a pause: after a gap there is room again at once."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = max(1, count)
        self.seconds = seconds
        self.sent: deque[Sending] = deque()

    def _forget(self, now: float) -> None:
        while self.sent and self.sent[0].at <= now - self.seconds:
            self.sent.popleft()

    def wait_time(self, now: float) -> float:
        self._forget(now)
        if len(self.sent) < self.count:
            return 0.0
        oldest = self.sent[0].at
        return IN_FLIGHT_RECHECK if oldest == math.inf else oldest + self.seconds - now

    def take(self, now: float) -> Sending:
        self._forget(now)
        sending = Sending()
        self.sent.append(sending)
        return sending


# how many sends may go at once after a pause, before the spacing (1/30 s) holds again
SPACING_BURST = 10.0
# how soon to look again when the window is full of sends still waiting for their answer
IN_FLIGHT_RECHECK = 0.005


@dataclass(frozen=True)
class Limits:
    """Telegram counts about 30 messages in any one second, overall, per bot."""

    per_second: float = 30.0
    private_per_second: float = 1.0
    private_burst: float = 3.0
    group_per_minute: float = 20.0
    group_burst: float = 3.0


class Pacer:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        # evenly spaced, with a small burst to make up for a pass that woke late, and never
        # more than the limit in any second as Telegram sees it (the window)
        self.spacing = Bucket(self.limits.per_second, SPACING_BURST)
        self.overall = Window(int(self.limits.per_second), 1.0)
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
        now = time.monotonic()
        return max(self.spacing.wait_time(now), self.overall.wait_time(now))

    def take(self, chat_id: int) -> Sending:
        """Count a send to `chat_id` starting now; call `done()` on the result when its
        answer (or failure) came back."""
        now = time.monotonic()
        self._chat(chat_id).take(now)
        self.spacing.take(now)
        return self.overall.take(now)
