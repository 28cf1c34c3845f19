"""How fast one person may talk to the bot, and how often they may guess an invite code.

Both are kept in memory, per process, and read the injected clock: a restart forgets them,
and several processes on one database would each apply them (a flooder could then get
`burst` updates through each). Nothing here touches the database or the chat platform.

`Throttle` is a token bucket per Telegram user: `burst` updates at once, then `per_second`
more each second. An update over the limit is not handled (the inbox marks it processed,
unhandled), and the person is told at most once per `notice_every`.

`Guesses` counts an account's wrong invite codes (/start CODE, /bind CODE) in a sliding
window: after `allowed` wrong codes within `window`, every code from that account, a right
one too, is refused until the oldest of them is `window` old; the refusal is said once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class FloodLimits:
    """The limits, from settings (SQUADBOT_FLOOD_*, SQUADBOT_INVITE_GUESSES_PER_HOUR)."""

    burst: int = 20
    per_second: float = 1.0
    notice_every: timedelta = timedelta(seconds=60)
    guesses: int = 5
    guess_window: timedelta = timedelta(hours=1)


# buckets are forgotten once full again, checked when this many users are tracked
_PRUNE_AT = 10_000


class Throttle:
    """A token bucket per user (see the module docstring)."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._buckets: dict[int, tuple[float, datetime]] = {}
        self._told: dict[int, datetime] = {}

    def admit(self, user_id: int, now: datetime) -> bool:
        """Take one token for an update of `user_id`; False when there is none left."""
        tokens = self._tokens(user_id, now)
        if tokens < 1.0:
            self._buckets[user_id] = (tokens, now)
            return False
        self._buckets[user_id] = (tokens - 1.0, now)
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)
        return True

    def has_token(self, user_id: int, now: datetime) -> bool:
        """Whether `admit` would let an update of `user_id` through now (none is taken)."""
        return self._tokens(user_id, now) >= 1.0

    def tell(self, user_id: int, now: datetime) -> bool:
        """Whether to tell a limited user now: once per `notice_every`."""
        last = self._told.get(user_id)
        if last is not None and now - last < self.limits.notice_every:
            return False
        self._told[user_id] = now
        return True

    def _tokens(self, user_id: int, now: datetime) -> float:
        held = self._buckets.get(user_id)
        if held is None:
            return float(self.limits.burst)
        tokens, at = held
        elapsed = max((now - at).total_seconds(), 0.0)
        return min(float(self.limits.burst), tokens + elapsed * self.limits.per_second)

    def _prune(self, now: datetime) -> None:
        full = [u for u in self._buckets if self._tokens(u, now) >= self.limits.burst]
        for user_id in full:
            del self._buckets[user_id]
        stale = [u for u, at in self._told.items() if now - at >= self.limits.notice_every]
        for user_id in stale:
            del self._told[user_id]


class Guesses:
    """Wrong invite codes per account in a sliding window (see the module docstring)."""

    def __init__(self, limits: FloodLimits) -> None:
        self.allowed = limits.guesses
        self.window = limits.guess_window
        self._wrong: dict[int, list[datetime]] = {}
        self._told: dict[int, datetime] = {}

    def blocked_until(self, user_id: int, now: datetime) -> datetime | None:
        """When `user_id` may try a code again, or None if they may now."""
        recent = [at for at in self._wrong.get(user_id, []) if now - at < self.window]
        if recent:
            self._wrong[user_id] = recent
        else:
            self._wrong.pop(user_id, None)
            self._told.pop(user_id, None)
        if len(recent) < self.allowed:
            return None
        return recent[-self.allowed] + self.window

    def wrong(self, user_id: int, now: datetime) -> None:
        self._wrong.setdefault(user_id, []).append(now)

    def tell(self, user_id: int, until: datetime) -> bool:
        """Whether to say the refusal: once for each time the account is shut out."""
        if self._told.get(user_id) == until:
            return False
        self._told[user_id] = until
        return True
