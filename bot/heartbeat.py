"""The heartbeat: while this process works, every third of the lease time it renews the
leases it holds (models/leases.py) on updates, outbox rows and attachments, so work that
takes longer than one lease stays its own. A process that dies, or hangs, stops renewing;
its leases run out and the other processes take its work over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from models.db import is_transient
from models.leases import Leases
from models.quiet_log import QuietLog, problem_key

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, leases: Sequence[Leases], seconds: float) -> None:
        self.leases = list(leases)
        self.every = max(0.1, seconds / 3)
        self._stopping = False
        self._wake = asyncio.Event()
        self._quiet = QuietLog(log)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def beat(self) -> int:
        """Renew every lease held; returns how many are held."""
        held = 0
        for leases in self.leases:
            try:
                held += leases.renew()
            except Exception as exc:  # the next beat tries again, well within the lease
                if not is_transient(exc):
                    self._quiet.error(
                        problem_key("heartbeat", exc), "renewing leases failed: %s", exc
                    )
        return held

    def let_go(self) -> None:
        """On stopping: every lease held goes back, so the others need not wait it out."""
        for leases in self.leases:
            try:
                leases.release()
            except Exception as exc:
                log.info("could not release leases on stopping (they run out): %s", exc)

    async def run_forever(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.every)
            if not self._stopping:
                self.beat()
