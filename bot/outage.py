"""When the database cannot take writes: PostgreSQL restarting or unreachable, an SQLite file
on a full or read-only disk, a lock held past the busy timeout. Nothing is lost meanwhile:
Telegram keeps every update until getUpdates confirms it, and the inbox confirms only what
it stored. What this adds is that it is said: one log line with the reason when writes
start failing and one when they work again, one word to each person waiting (in their
language, through the Bot API directly, since the outbox lives in that database), and a
reason for /healthz to answer 503 with until a write succeeds again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from models.db import is_busy

log = logging.getLogger(__name__)

# A person told that the store is away is not told again within this many seconds, even if
# it comes and goes meanwhile (a nearly full disk takes some writes and refuses others).
REMIND_AFTER = 600.0


def reason_of(exc: BaseException) -> str:
    """The driver's own words, first line only: what an operator needs to act on."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return text[:200]


class StorageOutage:
    """Whether the database takes writes, as the loops that write find out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.since: float | None = None  # when writes started failing (monotonic)
        self.reason = ""
        self.locked = False  # a lock held by someone else, not a store that is away
        self.outages = 0  # how many times writes started failing
        self._told: dict[int, float] = {}  # chat id -> when it was told

    @property
    def down(self) -> bool:
        return self.since is not None

    def refused(self, exc: BaseException) -> None:
        """A write failed for the store's sake (see `models.db.is_transient`)."""
        self.reason = reason_of(exc)
        self.locked = is_busy(exc)
        if self.since is not None:
            return
        self.since = self._clock()
        self.outages += 1
        log.error(
            "the database refuses writes (%s): updates stay unconfirmed with Telegram and "
            "are taken as soon as it is back; nothing is sent that cannot be recorded",
            self.reason,
        )

    def recovered(self) -> None:
        """A write went through."""
        if self.since is None:
            return
        log.warning(
            "the database takes writes again after %.1fs (it said: %s)",
            self._clock() - self.since,
            self.reason,
        )
        self.since = None
        self.locked = False

    @property
    def message_key(self) -> str:
        """What a person waiting is told: busy for a lock, unavailable for the rest."""
        return "error.busy" if self.locked else "error.storage_unavailable"

    def first_word_to(self, chat_id: int) -> bool:
        """True once per chat (again only after REMIND_AFTER): whether to tell it now."""
        now = self._clock()
        told = self._told.get(chat_id)
        if told is not None and now - told < REMIND_AFTER:
            return False
        if len(self._told) > 10_000:  # forget the old ones, not the recent
            self._told = {c: at for c, at in self._told.items() if now - at < REMIND_AFTER}
        self._told[chat_id] = now
        return True

    def problem(self) -> str | None:
        """For /healthz: None while writes work."""
        if self.since is None:
            return None
        return f"database refuses writes for {self._clock() - self.since:.0f}s: {self.reason}"
