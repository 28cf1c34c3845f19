"""Every long-running loop runs under a supervisor: an error the loop did not expect is
logged once with its traceback and the loop is started again after a backoff, instead of
the task ending silently and leaving a process that runs but no longer listens. A loop that
keeps failing is reported, and its state is kept for the health check."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from models.quiet_log import QuietLog, problem_key

log = logging.getLogger(__name__)

KEEPS_FAILING = 5  # consecutive failures before a loop is reported as failing
HEALTHY_RUN = 60.0  # seconds a loop must run before a failure counts as a new streak


@dataclass
class LoopState:
    name: str
    running: bool = False
    restarts: int = 0
    failures_in_a_row: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None

    @property
    def failing(self) -> bool:
        return self.failures_in_a_row >= KEEPS_FAILING


class Supervisor:
    def __init__(self, *, first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.loops: dict[str, LoopState] = {}
        self._quiet = QuietLog(log)

    def state(self, name: str) -> LoopState:
        return self.loops.setdefault(name, LoopState(name))

    async def keep_running(
        self, name: str, loop: Callable[[], Awaitable[None]], stopping: Callable[[], bool]
    ) -> None:
        """Run `loop` until it returns while stopping; restart it after any other end."""
        state = self.state(name)
        delay = self.first_delay
        while True:
            started = time.monotonic()
            state.running = True
            try:
                await loop()
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                error: BaseException = exc
            else:
                error = RuntimeError(f"the {name} loop returned while running")
            state.running = False
            if stopping():
                return
            if time.monotonic() - started > HEALTHY_RUN:
                # it ran well for a while: a new failure starts a new count and backoff
                state.failures_in_a_row = 0
                delay = self.first_delay
            self._failed(state, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
            state.restarts += 1

    def _failed(self, state: LoopState, exc: BaseException) -> None:
        state.failures_in_a_row += 1
        state.last_error = f"{type(exc).__name__}: {exc}"[:500]
        state.last_failure_at = time.time()
        self._quiet.error(
            problem_key(state.name, exc),
            "the %s loop stopped on an unexpected error; restarting it",
            state.name,
            exc_info=exc,
        )
        if state.failures_in_a_row == KEEPS_FAILING:
            log.error(
                "the %s loop keeps failing (%d times in a row, last: %s)",
                state.name,
                state.failures_in_a_row,
                state.last_error,
            )

    def failing(self) -> list[LoopState]:
        return [s for s in self.loops.values() if s.failing]
