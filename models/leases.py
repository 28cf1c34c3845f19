"""Leases: how several processes on one database share the work without doing any of it
twice. A row of work (an update to handle, a message to send, an attachment to fetch) is
taken by writing who took it (`lease_owner`, the process) and until when (`lease_until`)
in one short transaction; every other process leaves the row alone until then.

On PostgreSQL the rows are first locked with `FOR UPDATE SKIP LOCKED`, so two processes
taking at the same moment each skip the rows the other is taking instead of waiting for
them; the UPDATE that writes the lease is guarded by the same conditions, so on SQLite (one
process, one writer at a time) it alone is the claim. A process renews the leases it still
holds while it works (`renew`, the service's heartbeat); a process that dies stops renewing,
and once `lease_until` has passed its rows are free again: the others take its work over
within the lease time (SQUADBOT_LEASE_SECONDS).

Times are the injected clock's, so a test moves a FakeClock past a lease. Processes on
several machines compare the times their clocks wrote: keep the machines' clocks in step
(NTP), as the deadlines already require."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, create_engine, event, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlmodel import Session

from models.clock import Clock

DEFAULT_SECONDS = 30.0
# on SQLite, how long taking or letting go of a lease waits for another program's write lock
LEASE_WAIT_MS = 100
_CHUNK = 500  # ids per statement


@cache
def process_name() -> str:
    """This process as leases (and PostgreSQL's pg_stat_activity) name it: the host, the
    process id and a random part, so a restarted process with a reused pid is another."""
    host = socket.gethostname().split(".")[0][:32] or "host"
    return f"{host}/{os.getpid()}/{secrets.token_hex(3)}"


def one_process_store(engine: Engine) -> bool:
    """SQLite's rule here: one bot process per database (bot/service.py clears what a
    killed run left at start). Its inbox and outbox leases are kept in memory (`solo`), and
    its units of work are first tried on the bot's loop (bot/inbox/runner.py)."""
    return engine.dialect.name == "sqlite"


# SQLite files: the engine whose connections write the leases, one per engine of the bot's
_WRITERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def lease_writer(engine: Engine) -> Engine | None:
    """On a SQLite file, an engine of its own for writing leases, whose connections are set
    once for it: synchronous=NORMAL (a lease is the one process's note to itself, cleared
    at every start, bot/service.py: it need not wait for the disk) and a short busy
    timeout. The bot's own connections stay FULL, and no PRAGMA is switched back and forth
    at each lease. None elsewhere (PostgreSQL, an in-memory database): the engine itself,
    as it is."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    with _WRITERS_LOCK:
        writer = _WRITERS.get(engine)
        if writer is None:
            writer = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": LEASE_WAIT_MS / 1000}
            )

            def on_connect(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute(f"PRAGMA busy_timeout={LEASE_WAIT_MS}")
                cursor.close()

            event.listen(writer, "connect", on_connect)
            _WRITERS[engine] = writer
        return writer


def free_for(table: Any, now: datetime, owner: str | None) -> ColumnElement[bool]:
    """Rows nobody holds now: never leased, their lease over, or held by `owner` itself."""
    clauses = [table.c.lease_until.is_(None), table.c.lease_until <= now]
    if owner is not None:
        clauses.append(table.c.lease_owner == owner)
    return or_(*clauses)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class Leases:
    """The leases one process holds on one kind of work (one table). `waiting` says which
    rows still need work (a message not sent yet...): a row that no longer does is not
    claimed, and is let go of when renewing. The statements are built once, with the
    process's name in them and the rest bound at each use."""

    def __init__(
        self,
        engine: Engine,
        model: Any,
        waiting: Callable[[Any], ColumnElement[bool]],
        clock: Clock,
        *,
        owner: str | None = None,
        seconds: float = DEFAULT_SECONDS,
        solo: bool = False,
    ) -> None:
        self.engine = engine
        # the only process on its database (SQLite's rule: bot/service.py): a lease is kept
        # here only, as nobody else could read it; other processes' leases found in the
        # table (a killed earlier run's, cleared at start) are still respected by the
        # selections, which read them
        self.solo = solo
        self._writer = lease_writer(engine)
        self.table = t = model.__table__
        self.clock = clock
        self.owner = owner or process_name()
        self.seconds = seconds
        self.held: set[int] = set()
        ids: BindParameter[list[int]] = bindparam("ids", expanding=True)
        until = bindparam("until", type_=t.c.lease_until.type)
        free = or_(
            t.c.lease_until.is_(None),
            t.c.lease_until <= bindparam("now", type_=t.c.lease_until.type),
            t.c.lease_owner == self.owner,
        )
        guard = and_(t.c.id.in_(ids), waiting(t), free)
        self._free = select(t.c.id).where(guard).with_for_update(skip_locked=True)
        self._take = (
            update(t)
            .where(guard)
            .values(lease_owner=self.owner, lease_until=until)
            .returning(t.c.id)
        )
        mine = and_(t.c.id.in_(ids), t.c.lease_owner == self.owner)
        self._release = update(t).where(mine).values(lease_owner=None, lease_until=None)
        self._renew = update(t).where(mine, waiting(t)).values(lease_until=until).returning(t.c.id)

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def free(self, now: datetime) -> ColumnElement[bool]:
        return free_for(self.table, now, self.owner)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One short write transaction, committed. On a SQLite file, on the lease writer's
        connections (`lease_writer`: they do not wait for the disk)."""
        if self._writer is not None:
            with self._writer.connect() as conn:
                yield conn
                conn.commit()
            return
        with self.engine.connect() as conn:
            if self.postgres:
                yield conn
                conn.commit()
                return
            conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            info = conn.connection.info  # the DBAPI connection's, as models.db.impatient
            if "busy_timeout" not in info:
                info["busy_timeout"] = int(
                    conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0
                )
            waited = int(info["busy_timeout"])
            conn.exec_driver_sql(f"PRAGMA busy_timeout={min(waited, LEASE_WAIT_MS)}")
            try:
                yield conn
                conn.commit()
            finally:
                try:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA synchronous=FULL")
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={waited}")
                except Exception:
                    conn.invalidate()  # never back into the pool less durable than FULL
                    raise

    def claim(self, ids: Iterable[int | None], *, foreign: Iterable[int | None] = ()) -> set[int]:
        """Take these rows, those still waiting and free; returns the ids taken, in one
        committed transaction (on PostgreSQL, rows another process is taking are skipped,
        not waited for). `foreign`: of these, the rows read with another process's lease
        on them (run out, or the selection would have left them out): when `solo`, those
        alone are taken in the table, so that the work's own checks find them ours."""
        wanted = sorted({i for i in ids if i is not None})
        if not wanted:
            return set()
        if not self.solo:
            won = self._take_rows(wanted)
        else:
            # what this process holds already (a message sent and not yet written down) it
            # does not take again: in memory is the only place such a lease is kept
            elsewhere = sorted(set(wanted).intersection(i for i in foreign if i is not None))
            won = set(wanted).difference(elsewhere, self.held)
            if elsewhere:
                won |= self._take_rows(elsewhere)
        self.held |= won
        return won

    def _take_rows(self, wanted: list[int]) -> set[int]:
        now = self.clock.now()
        won: set[int] = set()
        try:
            with self._writing() as conn:
                for chunk in _chunks(wanted):
                    if self.postgres:
                        chunk = list(conn.execute(self._free, {"ids": chunk, "now": now}).scalars())
                        if not chunk:
                            continue
                    taken = conn.execute(
                        self._take, {"ids": chunk, "now": now, "until": self._until(now)}
                    )
                    won.update(int(i) for i in taken.scalars())
        except OperationalError as exc:
            if self.postgres or not _refused(exc):
                raise
            # SQLite refusing writes (its write lock held by another program, a read-only or
            # full disk): with one process per file a lease only notes what this process is
            # doing, so the note is kept here, and the work goes on without a write
            won = set(wanted)
        return won

    def release(self, ids: Iterable[int | None] | None = None) -> None:
        """Let go of these rows (all held, by default) so another process may take them at
        once, instead of after the lease."""
        chosen = self.held if ids is None else {i for i in ids if i is not None}
        wanted = sorted(chosen)
        if not wanted:
            return
        if self.solo:
            self.held -= set(wanted)
            return
        try:
            with self._writing() as conn:
                for chunk in _chunks(wanted):
                    conn.execute(self._release, {"ids": chunk})
        except OperationalError as exc:
            if self.postgres or not _refused(exc):
                raise
            # SQLite refusing writes: whatever lease rows are left expire, or go at the next
            # start (one process per file)
        self.held -= set(wanted)

    def forget(self, ids: Iterable[int | None]) -> None:
        """Rows whose lease the work itself has cleared (a message sent, a hold written)."""
        self.held -= {i for i in ids if i is not None}

    def renew(self) -> int:
        """Extend the lease of every row still held and still waiting; rows done, or taken
        over by another process after a lease ran out, are let go of. Returns how many
        leases are held."""
        wanted = sorted(self.held)
        if not wanted:
            return 0
        if self.solo:
            return len(self.held)
        until = self._until(self.clock.now())
        kept: set[int] = set()
        with self._writing() as conn:
            for chunk in _chunks(wanted):
                renewed = conn.execute(self._renew, {"ids": chunk, "until": until})
                kept.update(int(i) for i in renewed.scalars())
        self.held &= kept | (self.held - set(wanted))  # rows taken meanwhile stay held
        return len(self.held)

    def _until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds)


def _refused(exc: OperationalError) -> bool:
    """SQLite refusing a write for now: another connection holds its write lock, or the
    disk is read-only or full (models.db.is_transient's SQLite cases, which cannot be
    imported here: models.db names its connections after process_name)."""
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return any(sign in text for sign in ("locked", "busy", "readonly", "read-only", "disk is full"))


def release_all(engine: Engine, models: Iterable[Any]) -> int:
    """Clear every lease in these tables: what an earlier run of the one process a SQLite
    database allows left behind when it was killed. Returns how many were cleared."""
    cleared = 0
    with Session(engine) as session:
        for model in models:
            t = model.__table__
            result = session.execute(
                update(t)
                .where(t.c.lease_owner.is_not(None))
                .values(lease_owner=None, lease_until=None)
            )
            cleared += int(result.rowcount or 0)  # type: ignore[attr-defined]
        session.commit()
    return cleared
