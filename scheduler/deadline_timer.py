"""The deadline timer: one timer armed at the earliest `next_alert_at` in `ticketalarm`,
re-armed whenever a nearer one appears (a handling tells it the earliest alert time it
committed, `armed`, so the table is not read after every update), plus a sweep every minute
and a catch-up at start-up.
Firing is idempotent (the alert ledger), so the timer, the sweep, a second scheduler process
and a restart can all race without an alert being sent twice or skipped. With several
processes a ticket changed by another one pokes nobody here, so the earliest deadline is
read again every few seconds (IDLE_RECHECK); due tickets another process is firing are
skipped (FOR UPDATE SKIP LOCKED) and looked at again a moment later."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.alerts import fire_due as fire_all_due
from models.clock import Clock
from models.closure import auto_close_due
from models.db import is_transient
from models.desk import open_desk
from models.quiet_log import QuietLog, problem_key
from models.ticket import TicketAlarm
from models.zone.config import ZoneConfig

log = logging.getLogger(__name__)

IDLE_RECHECK = timedelta(seconds=5)  # another process may have armed a nearer deadline
HELD_ELSEWHERE = 0.2  # seconds before looking again at due tickets another process holds
_EARLIEST = select(func.min(TicketAlarm.__table__.c.next_alert_at))  # type: ignore[attr-defined]


class DeadlineTimer:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        zone: Callable[[Session], ZoneConfig],
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.zone = zone
        self.after_commit = after_commit
        self._wake = asyncio.Event()
        self._stopping = False
        self._quiet = QuietLog(log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fired = 0
        # the earliest deadline as last known (read, or told since), and whether the next
        # turn must read it again; a nearer one told by `armed` waiting for the next turn
        self._known: datetime | None = None
        self._reread = True
        self._told: datetime | None = None
        self.reads = 0  # how many times the earliest deadline was read

    def poke(self) -> None:
        """Something changed that may move the nearest deadline: read it again."""
        self._reread = True
        self._wake.set()

    @property
    def waiting_for(self) -> datetime | None:
        """The earliest deadline as the timer knows it: the one it waits for."""
        return self._known

    def armed(self, when: datetime) -> None:
        """A unit of work just committed an alert time: the timer wakes only when it is
        nearer than the deadline it waits for, and takes it as told instead of reading the
        table again. A deadline moved later or dropped is found by the next read (after
        firing, or IDLE_RECHECK at most): until then the timer may wake early, for
        nothing."""
        known = self._known
        if self._reread or (known is not None and known <= when):
            return
        told = self._told
        self._told = when if told is None or when < told else told
        self._wake.set()

    def _notify(self) -> None:
        """Tell the outbox, on its own event loop, even when firing ran in a worker thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self.after_commit()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.after_commit()
        else:
            loop.call_soon_threadsafe(self.after_commit)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def next_due(self) -> datetime | None:
        """The earliest alert point of any ticket (one indexed MIN on a plain
        connection)."""
        self.reads += 1
        with self.engine.connect() as connection:
            value = connection.execute(_EARLIEST).scalar()
        return None if value is None else _aware(value)

    def fire_due(self) -> int:
        """Fire everything due now in one set-based transaction (`models.alerts.fire_due`):
        after downtime that is the whole catch-up, its storms told as digests."""
        with open_desk(self.engine, self.clock, self.zone) as desk:
            fired = fire_all_due(desk)
        if fired:
            self.fired += fired
            self._notify()
        return fired

    def close_stale(self) -> int:
        with open_desk(self.engine, self.clock, self.zone) as desk:
            closed = auto_close_due(desk)
        if closed:
            self._notify()
        return len(closed)

    def sweep(self) -> bool:
        """The once-a-minute safety net (also run at start-up as the catch-up); False when
        the store was busy or failed, so the caller backs off before trying again."""
        try:
            self.fire_due()
            self.close_stale()
        except Exception as exc:
            if not is_transient(exc):
                self._quiet.error(
                    problem_key("sweep", exc), "deadline sweep failed: %s", exc, exc_info=exc
                )
            return False
        return True

    async def run_forever(self) -> None:
        """Sleep until the earliest deadline; a poke (a ticket changed) only re-reads which
        deadline is earliest. Firing runs in a worker thread, so a catch-up over thousands
        of tickets never stalls the inbox and the outbox on the event loop."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.sweep)
        while not self._stopping:
            self._wake.clear()
            told, self._told = self._told, None
            if self._reread or told is None:
                self._reread = True  # until the read succeeds: nothing told counts
                try:
                    nxt = self.next_due()
                except Exception as exc:
                    if is_transient(exc):
                        # the store is away: look again soon, not after the idle recheck, so
                        # that what fell due meanwhile fires as soon as it is back
                        await asyncio.sleep(0.5)
                        continue
                    self._quiet.error(
                        problem_key("next-deadline", exc),
                        "reading the next deadline failed: %s",
                        exc,
                        exc_info=exc,
                    )
                    nxt = None
                self._reread = False
            else:
                nxt = told if self._known is None else min(told, self._known)
            self._known = nxt
            now = self.clock.now()
            if nxt is None or nxt > now:
                until = min(nxt, now + IDLE_RECHECK) if nxt is not None else now + IDLE_RECHECK
                await self.clock.sleep_until(until, self._wake)
                if not self._wake.is_set():
                    self._reread = True  # its time came: what is due now is read afresh
                continue
            self._reread = True  # after firing, the next deadline is read
            before = self.fired
            if not await asyncio.to_thread(self._fire_safely) or self.fired == before:
                # the store failed, or what is due is being fired by another process (or
                # the ticket is held by a handler): not again at once
                await asyncio.sleep(HELD_ELSEWHERE)

    def _fire_safely(self) -> bool:
        try:
            self.fire_due()
        except Exception as exc:
            if not is_transient(exc):
                self._quiet.error(
                    problem_key("fire", exc), "firing deadlines failed: %s", exc, exc_info=exc
                )
            return False
        return True


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)
