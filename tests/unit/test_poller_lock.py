"""Who polls getUpdates: on PostgreSQL one process at a time holds the advisory lock, the
others are refused until it gives the lock back or its connection dies, then one of them
takes over; on SQLite, one process is the limit and the lock is always granted."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bot.inbox.poller import PollerLock
from migrations.runner import upgrade
from models.db import make_engine


def backend_gone(engine: Engine, pid: object, within: float = 10.0) -> None:
    """pg_terminate_backend only asks: the session (and its advisory lock) ends when the
    backend has exited, a moment later."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            alive = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar()
        if not alive:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} still there after {within:g}s")


@pytest.mark.postgres
def test_one_process_polls_and_another_takes_over_when_it_stops(pg_engine: Engine) -> None:
    first = PollerLock(pg_engine, lease_seconds=3)
    second = PollerLock(pg_engine, lease_seconds=3)
    try:
        assert first.take() and first.check()
        assert not second.take() and not second.check()
        assert first.take()  # asking again while polling changes nothing
        first.release()
        assert not first.held and not first.check()
        assert second.take()
        assert not first.take()
        assert second.retry_seconds == 1.0
    finally:
        first.release()
        second.release()


@pytest.mark.postgres
def test_a_poller_whose_connection_dies_loses_the_lock_to_the_next(pg_engine: Engine) -> None:
    first = PollerLock(pg_engine, lease_seconds=30)
    second = PollerLock(pg_engine, lease_seconds=30)
    try:
        assert first.take()
        assert first._conn is not None
        pid = first._conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with pg_engine.connect() as conn:  # the network, or the server, ends its session
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        backend_gone(pg_engine, pid)
        assert second.take()  # released with the session
        assert not first.check() and not first.held  # it stops polling
        assert not first.take()
    finally:
        first.release()
        second.release()


@pytest.mark.postgres
def test_the_lock_is_per_schema(pg_engine: Engine) -> None:
    """Two squadbot databases (here: schemas) on one server each have their poller."""
    from sqlalchemy import create_engine

    from tests.conftest import PG_DSN

    assert PG_DSN is not None
    other_schema = f"o_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_DSN)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {other_schema}")
    other = create_engine(PG_DSN, connect_args={"options": f"-csearch_path={other_schema}"})
    here, there = PollerLock(pg_engine, lease_seconds=3), PollerLock(other, lease_seconds=3)
    try:
        assert here.take() and there.take()
    finally:
        here.release()
        there.release()
        other.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {other_schema} CASCADE")
        admin.dispose()


def test_on_sqlite_the_one_process_always_polls(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    upgrade(engine)
    lock = PollerLock(engine, lease_seconds=30)
    assert not lock.shared
    assert lock.take() and lock.check()
    lock.release()
    assert lock.take()
    engine.dispose()
