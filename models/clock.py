"""Injected time: the domain never calls datetime.now() itself, so tests can move hours in a
millisecond and the scheduler can be driven by a simulated clock."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        delay = (when - self.now()).total_seconds()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class FakeClock:
    """A clock that only moves when told to; sleepers wake when it passes their time."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        self._moved.set()
        self._moved = asyncio.Event()
        return self._now

    def set(self, when: datetime) -> None:
        self.advance(when - self._now)

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        while self._now < when and not wake.is_set():
            moved = self._moved
            waiter = asyncio.ensure_future(wake.wait())
            mover = asyncio.ensure_future(moved.wait())
            _done, pending = await asyncio.wait(
                {waiter, mover}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
