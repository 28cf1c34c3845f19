"""What every command shares: the handler type, naming the database, and opening it.

Commands that only read (`org show`, `invite`, `inbox`) never create a database: a wrong
SQUADBOT_DATABASE_URL would otherwise give an empty one and a puzzling answer. Commands that
build one (`db upgrade`, `org load`, `run`) migrate it and say so only when something was
applied.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session, select

from bot.settings import Settings
from bot.startup import EXIT_CONFIG, EXIT_UNAVAILABLE, Failure
from migrations.runner import alembic_config, current, upgrade
from models.db import is_transient, make_engine
from models.org import ZoneSetting

Handler = Callable[[Settings, argparse.Namespace], int]

log = logging.getLogger("squadbot")


def database_label(url: str) -> str:
    """The database URL as it may be shown: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable SQUADBOT_DATABASE_URL)"


def sqlite_path(url: str) -> Path | None:
    """The SQLite file of `url`; None for an in-memory database or another backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def announce_database(label: str) -> None:
    log.info("database %s", label)


def open_database(
    settings: Settings, *, create: bool, need_zone: bool = False, announce: bool = True
) -> Engine:
    """The engine for SQUADBOT_DATABASE_URL, named on the first line.

    `create`: make or migrate it. Otherwise it must exist at the newest schema (and, with
    `need_zone`, hold a loaded zone), else a Failure says what to run first."""
    label = database_label(settings.database_url)
    if announce:
        announce_database(label)
    path = sqlite_path(settings.database_url)
    if path is not None:
        _check_sqlite_file(path, create=create)
    engine = make_engine(settings.database_url)
    with database_errors(label):
        if create:
            migrate(engine)
        else:
            _check_schema(engine, label)
            if need_zone:
                _check_zone(engine, label)
    return engine


def _check_sqlite_file(path: Path, *, create: bool) -> None:
    if path.is_dir():
        raise Failure(f"SQUADBOT_DATABASE_URL: {path} is a folder, not a database file")
    if create:
        folder = path.absolute().parent
        if not folder.is_dir():
            raise Failure(
                f"SQUADBOT_DATABASE_URL: the folder {folder} does not exist (SQLite creates the "
                "database file, not its folder)"
            )
        return
    if not path.is_file():
        raise Failure(
            f"no database at {path} (SQUADBOT_DATABASE_URL): point SQUADBOT_DATABASE_URL at "
            "the bot's database, or create one with `squadbot org load ZONE_FILE`"
        )


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def migrate(engine: Engine) -> None:
    """Apply pending migrations; one line when any were applied, nothing otherwise."""
    before = current(engine)
    if before == head_revision(engine):
        return
    upgrade(engine)
    after = current(engine)
    log.info("database migrated from %s to schema %s", before or "empty", after)


def _check_schema(engine: Engine, label: str) -> None:
    found = current(engine)
    head = head_revision(engine)
    if found == head:
        return
    if found is None:
        raise Failure(
            f"the database {label} has no squadbot tables: check SQUADBOT_DATABASE_URL, or "
            "create them with `squadbot db upgrade` and load a zone with `squadbot org load "
            "ZONE_FILE`"
        )
    known = {
        s.revision for s in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()
    }
    if found not in known:
        raise Failure(
            f"the database {label} is at schema {found}, which this squadbot does not know (it "
            f"needs {head}): a newer squadbot migrated it; run that one"
        )
    raise Failure(
        f"the database {label} is at schema {found}, this squadbot needs {head}: run "
        "`squadbot db upgrade` (or `squadbot run`, which migrates)"
    )


def _check_zone(engine: Engine, label: str) -> None:
    if not zone_loaded(engine):
        raise Failure(
            f"no zone is loaded in the database {label}: load one with `squadbot org load "
            "ZONE_FILE`, or check SQUADBOT_DATABASE_URL"
        )


@contextmanager
def database_errors(label: str) -> Iterator[None]:
    """A database that cannot be opened or reached becomes one line naming it; a store that
    is down or busy is transient (exit 3), anything else is a setting to fix (exit 2)."""
    try:
        yield
    except SQLAlchemyError as exc:
        reason = _reason(exc)
        transient = is_transient(exc)
        hint = "try again later" if transient else "check SQUADBOT_DATABASE_URL"
        raise Failure(
            f"cannot use the database {label}: {reason}; {hint}",
            code=EXIT_UNAVAILABLE if transient else EXIT_CONFIG,
        ) from None


def _reason(exc: SQLAlchemyError) -> str:
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    if not lines:
        return type(original).__name__
    text = lines[0]
    # psycopg: 'connection failed: connection to server at "h" (ip), port p failed: reason'
    if "failed:" in text:
        text = text.rsplit("failed:", 1)[1].strip() or text
    for prefix in ("FATAL:", "ERROR:"):
        text = text.removeprefix(prefix).strip()
    return " ".join(text.split()).rstrip(".")


def zone_loaded(engine: Engine) -> bool:
    with Session(engine) as session:
        return session.exec(select(ZoneSetting).limit(1)).first() is not None
