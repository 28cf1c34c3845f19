"""Checkpoints of a SQLite file's write-ahead log, off the event loop.

SQLite copies the log back into the database file (a checkpoint, with its own wait for the
disk under synchronous=FULL) inside whichever commit makes the log pass a thousand pages:
for the bot, most often a commit on its event loop, which then stands still for the copy,
measured at 20 to 200 ms on this machine, while every chat waits. While the bot runs, its
own connections (and its lease writer's) leave checkpoints alone, and a worker thread runs
a passive one every `every` seconds: it copies what no reader still needs, waits for no
lock and blocks no writer, and Python's lock is free meanwhile. A connection of any other
program (the CLI, a backup) still checkpoints as SQLite does by default, and the last
checkpoint at stop leaves the log empty.

Durability does not change: a commit is on disk in the log (synchronous=FULL) whether or
not it has been copied into the database file yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from models.db import is_transient
from models.leases import lease_writer
from models.quiet_log import QuietLog, problem_key

log = logging.getLogger(__name__)

EVERY = 1.0  # seconds between checkpoints while the bot runs


def applies(engine: Engine) -> bool:
    """A SQLite file (an in-memory database has no log on disk; PostgreSQL has its own)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.database in (None, "", ":memory:"):
        return False
    return not (url.database.startswith("file:") or url.query.get("mode") == "memory")


def _no_automatic_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


class Checkpoints:
    """The log's checkpoints for one bot process, in a worker thread (`run_forever`)."""

    def __init__(self, engine: Engine, every: float = EVERY) -> None:
        self.engine = engine
        self.every = every
        self.runs = 0  # checkpoints made
        self.frames = 0  # pages copied into the database file by them
        self.seconds = 0.0  # time they took, all in the worker thread
        self._stopping = False
        self._wake = asyncio.Event()
        self._quiet = QuietLog(log)
        self._engines = [engine]
        writer = lease_writer(engine)
        if writer is not None:
            self._engines.append(writer)

    def take_over(self) -> None:
        """From now on the bot's connections leave checkpoints to this (the pools are
        emptied, so that every connection is opened again with that setting)."""
        for engine in self._engines:
            if not event.contains(engine, "connect", _no_automatic_checkpoints):
                event.listen(engine, "connect", _no_automatic_checkpoints)
            engine.dispose()

    def hand_back(self) -> None:
        """SQLite's own checkpoints again (at stop), after a last one of these."""
        for engine in self._engines:
            if event.contains(engine, "connect", _no_automatic_checkpoints):
                event.remove(engine, "connect", _no_automatic_checkpoints)
            engine.dispose()

    def checkpoint(self) -> int:
        """One passive checkpoint; the pages it copied."""
        started = time.perf_counter()
        with self.engine.connect() as connection:
            row = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
        copied = 0 if row is None else max(0, int(row[2]))
        self.runs += 1
        self.frames += copied
        self.seconds += time.perf_counter() - started
        return copied

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def poke(self) -> None:
        """Checkpoint now rather than at the end of the wait."""
        self._wake.set()

    async def run_forever(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.every)
            self._wake.clear()
            if not self._stopping:
                await self._checkpoint_quietly()

    async def _checkpoint_quietly(self) -> None:
        try:
            await asyncio.to_thread(self.checkpoint)
        except Exception as exc:  # the next one tries again; the log waits meanwhile
            if not is_transient(exc):
                self._quiet.error(
                    problem_key("checkpoint", exc), "checkpointing the log failed: %s", exc
                )

    async def finish(self) -> None:
        """At stop, after everything else: a last checkpoint, then SQLite's own again."""
        await self._checkpoint_quietly()
        self.hand_back()
