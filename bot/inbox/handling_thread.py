"""The handlers' own thread: a unit of work that has to wait for the database (PTB's
handlers and every database call they make, the commit and its fsync included) runs on an
event loop in a thread of its own, so the bot's main loop never waits on the database.
While a handler waits for a write lock another process holds (a backup, a report),
getUpdates, the answers to button presses and the outbox keep moving on the main loop; only
the updates wait. On SQLite a unit of work is first tried on the main loop without waiting
for any lock, and comes here only when it would have to (bot/inbox/runner.py); on
PostgreSQL every unit of work runs here.

Updates are still handled one at a time, in order: the main loop hands one over and awaits
its outcome. The handlers make no Bot API calls of their own (what they say goes to the
outbox, button answers are sent by the runner afterwards), so nothing in that thread
touches the main loop's HTTP client. Context variables (the log context) travel with each
unit of work."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# how long stopping waits for the unit of work in progress to finish
STOP_WAIT = 10.0


class HandlingThread:
    def __init__(self, name: str = "squadbot-handlers") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._current: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and not self._loop.is_closed():
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                ready.set()
                try:
                    loop.run_forever()
                finally:
                    for task in asyncio.all_tasks(loop):
                        task.cancel()
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(loop.shutdown_default_executor())
                    loop.close()

            thread = threading.Thread(target=serve, name=self.name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            return loop

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` in the handlers' thread and return its result (or raise its error);
        the caller's context variables are copied to it."""
        future = asyncio.run_coroutine_threadsafe(work, self._started())
        self._current = future
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Let the unit of work in progress finish (a while at most), then end the thread."""
        loop, thread, current = self._loop, self._thread, self._current
        if loop is None or thread is None:
            return
        if current is not None and not current.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(current), timeout=STOP_WAIT)
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, STOP_WAIT)
        self._loop = self._thread = self._current = None
