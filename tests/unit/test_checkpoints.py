"""A SQLite file's log is checkpointed by the bot's worker thread, not inside its commits:
once taken over, the bot's connections (and its lease writer's) no longer checkpoint on
their own, a passive checkpoint copies what they wrote, and at stop SQLite's own
checkpoints come back."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from bot.checkpoints import Checkpoints, applies
from models.db import make_engine
from models.leases import lease_writer
from tests.harness import zone_database


def automatic(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def log_frames(engine: Engine) -> tuple[int, int]:
    """(pages in the log, of them copied into the database file), as SQLite says."""
    with engine.connect() as connection:
        row = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    return int(row[1]), int(row[2])


def write_pages(engine: Engine, commits: int) -> None:
    with Session(engine) as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS filler (n INTEGER, body TEXT)"))
        session.commit()
        for n in range(commits):
            session.execute(
                text("INSERT INTO filler VALUES (:n, :body)"), {"n": n, "body": "x" * 3000}
            )
            session.commit()


def test_only_a_sqlite_file_has_a_log_to_checkpoint(tmp_path: Path) -> None:
    assert applies(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    assert not applies(make_engine("sqlite://"))
    shared = create_engine("sqlite:///file:shared?mode=memory&uri=true", poolclass=StaticPool)
    assert not applies(shared)


def test_taken_over_the_commits_leave_the_log_to_the_checkpoints(tmp_path: Path) -> None:
    engine = zone_database(tmp_path)
    writer = lease_writer(engine)
    assert writer is not None
    assert automatic(engine) == 1000 and automatic(writer) == 1000  # SQLite's default
    checkpoints = Checkpoints(engine)
    checkpoints.take_over()
    assert automatic(engine) == 0 and automatic(writer) == 0
    write_pages(engine, 1500)  # well past the 1,000 pages of an automatic checkpoint
    copied = checkpoints.checkpoint()
    assert copied >= 1500  # nothing had been copied by the commits themselves
    assert checkpoints.runs == 1 and checkpoints.frames == copied
    in_log, done = log_frames(engine)
    assert done == in_log
    checkpoints.hand_back()
    assert automatic(engine) == 1000 and automatic(writer) == 1000
    engine.dispose()
