"""The sandbox Bot API emulator on an event loop and thread of its own."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from bot.sandbox.emulator import BotApiEmulator


class EmulatorThread:
    """An emulator on its own event loop in a background thread, so that a benchmark can
    drive the bot on the main loop without the emulator's work skewing its timings."""

    def __init__(self, **emulator_options: Any) -> None:
        self._options = emulator_options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._emu: BotApiEmulator | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def emu(self) -> BotApiEmulator:
        if self._emu is None:
            raise RuntimeError("EmulatorThread not started")
        return self._emu

    @property
    def url(self) -> str:
        return self.emu.url

    def cpu_seconds(self) -> float:
        """CPU time the emulator's thread (server and anything run on its loop) has used."""
        if self._thread is None or self._thread.ident is None:
            raise RuntimeError("EmulatorThread not started")
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def start(self) -> EmulatorThread:
        self._thread = threading.Thread(target=self._run, name="bot-api-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` (plain or async) on the emulator's loop and return its result; the only
        safe way to inject updates or read state from another thread."""
        if self._loop is None:
            raise RuntimeError("EmulatorThread not started")

        async def invoke() -> Any:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with BotApiEmulator(**self._options) as emu:
            self._emu = emu
            self._ready.set()
            await self._stopping.wait()
