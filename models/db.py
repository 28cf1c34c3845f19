"""Engines and sessions. SQLite is tuned for durability (WAL, synchronous=FULL) and for a
busy neighbour (busy_timeout), PostgreSQL is used as is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Session, create_engine

from models.leases import process_name

BUSY_TIMEOUT_MS = 5000


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC, returns them aware, on every backend alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # what `impatient` and the leases put back after waiting less, without asking
        record.info["busy_timeout"] = int(busy_timeout_ms)

    return on_connect


@contextmanager
def impatient(on: Session | Connection, busy_timeout_ms: int) -> Iterator[None]:
    """On SQLite, the writes made inside (on this session's or connection's connection)
    wait at most `busy_timeout_ms` for a write lock another process holds (then fail as
    busy), instead of the engine's busy timeout: for bookkeeping done on the event loop,
    which must not stand still that long. Flush inside: SQLite takes the write lock at the
    first write, not at the commit."""
    connection = on.connection() if isinstance(on, Session) else on
    if connection.dialect.name != "sqlite":
        yield
        return
    # set on the driver's connection itself: a PRAGMA through SQLAlchemy's execution costs
    # tens of microseconds, and this runs twice for every update handled on the loop
    driver = connection.connection.dbapi_connection
    assert driver is not None
    info = connection.connection.info  # the DBAPI connection's, kept across checkouts
    if "busy_timeout" not in info:
        info["busy_timeout"] = int(driver.execute("PRAGMA busy_timeout").fetchone()[0] or 0)
    before = int(info["busy_timeout"])
    driver.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA busy_timeout={before}")


def make_engine(url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        return engine
    # the process as its leases name it, in pg_stat_activity (and so beside its pg_locks)
    name = f"squadbot {process_name()}"[:63]
    return create_engine(url, pool_pre_ping=True, connect_args={"application_name": name})


def is_busy(exc: BaseException) -> bool:
    """True when the store is locked by someone else (worth retrying, not a bug)."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "locked" in text or "busy" in text or "could not obtain lock" in text


# the store is there but cannot take this now: locked, gone away, restarting, out of space
_UNAVAILABLE = (
    "server closed the connection",
    "connection refused",
    "could not connect",
    "connection is closed",
    "terminating connection",
    "the database system is",
    "connection timed out",
    "is not currently accepting connections",
    "in a read-only transaction",  # a standby, during a failover
    "no space left on device",
    "could not extend file",
    "no route to host",
    "ssl connection has been closed",
    "consuming input failed",
    "disk is full",
    "disk i/o error",
    "readonly database",
    "unable to open database",
)


def is_transient(exc: BaseException) -> bool:
    """True when the failure is the store's, not the update's: the same work will succeed
    once the store is back, so it is retried for as long as it takes, never given up on."""
    if is_busy(exc) or isinstance(exc, DisconnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | DBAPIError):
        return False
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(phrase in text for phrase in _UNAVAILABLE)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
