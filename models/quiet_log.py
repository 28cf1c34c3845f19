"""A log that does not repeat itself: one bad row retried every 0.2 s must not write
thousands of tracebacks. The first occurrence of a problem is logged in full (with its
traceback); the same problem again is summarised at most once per interval, with a count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class QuietLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._seen: set[str] = set()

    def _due(self, key: str) -> tuple[bool, int]:
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._held.pop(key, 0)

    def log(
        self,
        level: int,
        key: str,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log under `key` unless it was logged within the interval; True when written.
        The traceback is written only the first time a key is seen."""
        due, held = self._due(key)
        if not due:
            return False
        first = key not in self._seen
        self._seen.add(key)
        if held:
            message += " (%d more like this since the last line)"
            args = (*args, held)
        self.logger.log(level, message, *args, exc_info=exc_info if first else None)
        return True

    def warning(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def error(
        self, key: str, message: str, *args: object, exc_info: BaseException | None = None
    ) -> bool:
        return self.log(logging.ERROR, key, message, *args, exc_info=exc_info)


def problem_key(where: str, exc: BaseException) -> str:
    """Failures of one kind at one place share a key, whatever ids their messages carry."""
    return f"{where}:{type(exc).__module__}.{type(exc).__qualname__}"
