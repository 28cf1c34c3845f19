from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from migrations.runner import upgrade
from tests.harness import Harness, start_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await start_harness(tmp_path)
    try:
        yield h
    finally:
        await h.stop()


PG_DSN = os.environ.get("SQUADBOT_TEST_POSTGRES_DSN")
NO_SERVER = "SQUADBOT_TEST_POSTGRES_DSN not set: PostgreSQL tests need a server"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The one place that decides: a test marked `postgres`, or using `pg_engine`, is
    skipped with the reason when no server is configured (never silently passed)."""
    if PG_DSN:
        return
    for item in items:
        if item.get_closest_marker("postgres") or "pg_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=NO_SERVER))


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """A migrated PostgreSQL schema of its own, dropped afterwards."""
    if not PG_DSN:
        raise RuntimeError(NO_SERVER)  # collection skips every test that gets here
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_DSN)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine = create_engine(
        PG_DSN, connect_args={"options": f"-csearch_path={schema}"}, pool_pre_ping=True
    )
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def any_harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The same end-to-end run on the embedded store and on PostgreSQL."""
    engine = request.getfixturevalue("pg_engine") if request.param == "postgresql" else None
    h = await start_harness(tmp_path, engine=engine)
    try:
        yield h
    finally:
        await h.stop()
