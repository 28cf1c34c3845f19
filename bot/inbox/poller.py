"""Which process polls getUpdates. Only one may: Telegram answers a second poller with 409
Conflict, and the two would take each other's updates.

On PostgreSQL the poller holds a session-level advisory lock, on a connection of its own,
for as long as it polls. Every other process tries for the lock every few seconds (a third
of the lease time, at most five) and handles the updates the poller stores meanwhile; when
the poller stops or dies, PostgreSQL releases its lock with its connection and the next
try takes over. A connection the network lost rather than closed is dropped by TCP
keepalives set within the lease time (SQUADBOT_LEASE_SECONDS), and the poller itself stops
polling as soon as it cannot reach its lock's connection.

On SQLite one process is the limit (it has no advisory locks, and one writer at a time):
the lock is always granted, and a second process on the same file would poll too.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

# one lock per database and schema (advisory locks are per database already; tests and
# neighbours may keep several squadbot schemas in one)
_KEY = "hashtext('squadbot'), hashtext(current_schema() || '/getUpdates')"
TAKE = text(f"SELECT pg_try_advisory_lock({_KEY})")
GIVE_BACK = text("SELECT pg_advisory_unlock_all()")  # the connection holds this lock only


class PollerLock:
    def __init__(self, engine: Engine, *, lease_seconds: float) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.held = False
        self._conn: Connection | None = None
        self._guard = threading.Lock()  # called from worker threads, one at a time

    @property
    def shared(self) -> bool:
        """True where several processes may wait for the lock (PostgreSQL)."""
        return self.engine.dialect.name == "postgresql"

    @property
    def retry_seconds(self) -> float:
        """How often a waiting process tries for the lock."""
        return max(0.2, min(5.0, self.lease_seconds / 3))

    def take(self) -> bool:
        """True if this process holds the lock now (taking it if it is free)."""
        if self.held:
            return self.check()  # taken once: session locks count up, and are given back once
        with self._guard:
            if not self.shared:
                self.held = True
                return True
            try:
                conn = self._connection()
                self.held = bool(conn.execute(TAKE).scalar())
            except Exception:
                self._drop()
                raise
            return self.held

    def check(self) -> bool:
        """True while the lock's connection still answers: the session, and so the lock,
        is the one taken. False (and the lock counted lost) otherwise."""
        with self._guard:
            if not self.shared:
                return True
            if self._conn is None or not self.held:
                return False
            try:
                self._conn.execute(text("SELECT 1"))
            except Exception as exc:
                log.warning("the getUpdates lock's database connection is lost: %s", exc)
                self._drop()
                return False
            return True

    def release(self) -> None:
        """Give the lock back (on stopping), so a waiting process takes over at once."""
        with self._guard:
            if self._conn is not None and self.held:
                try:
                    self._conn.execute(GIVE_BACK)
                except Exception as exc:  # the connection's end releases it anyway
                    log.info("giving back the getUpdates lock failed: %s", exc)
            self._drop()

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            # a peer the network lost is noticed by the server within the lease time
            idle = max(1, int(self.lease_seconds / 3))
            interval = max(1, int(self.lease_seconds / 6))
            for name, value in (
                ("tcp_keepalives_idle", idle),
                ("tcp_keepalives_interval", interval),
                ("tcp_keepalives_count", 3),
            ):
                conn.exec_driver_sql(f"SET {name} = {value}")
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        """Close the lock's connection for good: never back into the pool, where a lock
        that could not be given back would go on being held by some other work."""
        self.held = False
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception as exc:  # already gone
                log.debug("closing the getUpdates lock's connection: %s", exc)
            self._conn = None
