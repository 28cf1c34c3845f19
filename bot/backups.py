"""Backups, restores and pruning of the bot's database (`squadbot db backup|restore|prune`).

SQLite is copied with SQLite's online backup API: one step, inside one read transaction, so
the copy is the database as it was at one moment even while the bot writes (WAL mode lets
the bot go on writing meanwhile). The copy is written beside its destination and renamed
into place when complete, in rollback-journal mode, so it is one self-contained file.

PostgreSQL is dumped and restored by `pg_dump` / `pg_restore` (the `postgresql-client`
package), the password handed over in PGPASSWORD rather than on the command line.

Pruning deletes what only the plumbing needed and nobody reads again: handled updates
(Telegram redelivers an update only while it is unconfirmed, and may reuse an id only after
a week, so a handled row older than a week has no use left for deduplication), messages
sent, invites used or expired, and button tokens of closed tickets (or of no ticket). It
keeps dead letters, messages not sent, every ticket card (later edits and replies refer to
it), and never touches tickets, their history, attachments or the alert ledger.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, make_url, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot.startup import EXIT_UNAVAILABLE, Failure
from models.lifecycle import State
from models.plumbing import InboxUpdate, Invite, OutboxMessage
from models.sla.durations import parse_duration
from models.ticket import ButtonAction, Ticket

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
MIN_AGE = timedelta(days=7)
BUSY_SECONDS = 30.0
NO_CLIENT = (
    "{tool} is not on PATH: install the package postgresql-client (the same major version "
    "as the server or newer), e.g. `apt-get install postgresql-client`"
)


# --- SQLite ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Copied:
    """A database copied: where to, its size, its tickets and its schema revision."""

    path: Path
    size: int
    tickets: int
    revision: str | None


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        return sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_SECONDS
        )
    return sqlite3.connect(path, timeout=BUSY_SECONDS)


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(name) for (name,) in rows}


def _revision(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_sqlite(source: Path, target: Path) -> Copied:
    """Copy the live database `source` to `target` (written whole, then renamed)."""
    if not source.is_file():
        raise Failure(f"no database at {source} (SQUADBOT_DATABASE_URL): nothing to back up")
    folder = target.absolute().parent
    if not folder.is_dir():
        raise Failure(f"cannot write {target}: the folder {folder} does not exist")
    partial = folder / f".{target.name}.partial"
    partial.unlink(missing_ok=True)
    try:
        with closing(_connect(source, read_only=True)) as src, closing(_connect(partial)) as dst:
            if "alembic_version" not in _tables(src):
                raise Failure(f"{source} is not a squadbot database: it has no migrations")
            # pages=-1: the whole database in one step, inside one read transaction
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            tickets = int(dst.execute("SELECT count(*) FROM ticket").fetchone()[0])
            revision = _revision(dst)
        os.replace(partial, target)
        _fsync_folder(folder)
    except sqlite3.Error as exc:
        raise Failure(_sqlite_failure("back up", source, exc), code=_code(exc)) from None
    finally:
        partial.unlink(missing_ok=True)
    return Copied(target, target.stat().st_size, tickets, revision)


def check_sqlite_backup(path: Path, known: set[str]) -> tuple[str, int]:
    """The revision and ticket count of a squadbot backup, or Failure saying why not."""
    if not path.is_file():
        raise Failure(f"no backup at {path}")
    with path.open("rb") as f:
        header = f.read(len(SQLITE_MAGIC))
    if header != SQLITE_MAGIC:
        raise Failure(f"{path} is not an SQLite database, so not a squadbot backup: refused")
    try:
        with closing(_connect(path, read_only=True)) as conn:
            tables = _tables(conn)
            if "alembic_version" not in tables or "ticket" not in tables:
                raise Failure(
                    f"{path} is an SQLite database but not a squadbot one (no squadbot "
                    "tables): refused"
                )
            revision = _revision(conn)
            tickets = int(conn.execute("SELECT count(*) FROM ticket").fetchone()[0])
    except sqlite3.Error as exc:
        raise Failure(f"{path} cannot be read as a squadbot backup ({exc}): refused") from None
    if revision is None or revision not in known:
        raise Failure(
            f"{path} is at schema {revision or 'none'}, which this squadbot does not know: "
            "restore it with the squadbot that made it (or a newer one)"
        )
    return revision, tickets


def restore_sqlite(backup: Path, target: Path) -> None:
    """Copy `backup` over `target` through SQLite (the target's WAL and locks respected)."""
    folder = target.absolute().parent
    if not folder.is_dir():
        raise Failure(f"cannot restore into {target}: the folder {folder} does not exist")
    try:
        with closing(_connect(backup, read_only=True)) as src, closing(_connect(target)) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        raise Failure(_sqlite_failure("restore into", target, exc), code=_code(exc)) from None


def _sqlite_failure(what: str, path: Path, exc: sqlite3.Error) -> str:
    return f"cannot {what} {path}: {exc}"


def _code(exc: sqlite3.Error) -> int:
    text = str(exc).lower()
    return EXIT_UNAVAILABLE if "locked" in text or "busy" in text else 2


# --- PostgreSQL --------------------------------------------------------------------------


@dataclass(frozen=True)
class PgTarget:
    """A libpq connection URI for the client tools, its masked form, and its password."""

    dsn: str
    shown: str
    password: str | None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env


def pg_target(database_url: str) -> PgTarget:
    url = make_url(database_url).set(drivername="postgresql")
    password = url.password if isinstance(url.password, str) else None
    bare = url.set(password=None)
    dsn = bare.render_as_string(hide_password=False)
    shown = url.render_as_string(hide_password=True) if password else dsn
    return PgTarget(dsn=dsn, shown=shown, password=password)


def client_tool(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise Failure(NO_CLIENT.format(tool=tool))
    return found


def _run(argv: list[str], target: PgTarget, what: str) -> None:
    try:
        done = subprocess.run(argv, env=target.env(), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise Failure(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        reason = lines[0] if lines else f"exit code {done.returncode}"
        raise Failure(f"{what} failed: {reason}", code=EXIT_UNAVAILABLE)


def backup_postgres(database_url: str, target: Path) -> int:
    """`pg_dump --format=custom` into `target`; its size."""
    tool = client_tool("pg_dump")
    folder = target.absolute().parent
    if not folder.is_dir():
        raise Failure(f"cannot write {target}: the folder {folder} does not exist")
    pg = pg_target(database_url)
    partial = folder / f".{target.name}.partial"
    try:
        _run([tool, "--format=custom", "--file", str(partial), pg.dsn], pg, "pg_dump")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def check_pg_dump(path: Path) -> None:
    if not path.is_file():
        raise Failure(f"no backup at {path}")
    with path.open("rb") as f:
        if f.read(len(PGDUMP_MAGIC)) != PGDUMP_MAGIC:
            raise Failure(
                f"{path} is not a pg_dump archive (--format=custom), so not a squadbot backup "
                "for PostgreSQL: refused"
            )


def restore_command(database_url: str, backup: Path, *, shown: bool) -> list[str]:
    pg = pg_target(database_url)
    return [
        "pg_restore",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "--dbname",
        pg.shown if shown else pg.dsn,
        str(backup),
    ]


def restore_postgres(database_url: str, backup: Path) -> None:
    argv = restore_command(database_url, backup, shown=False)
    argv[0] = client_tool("pg_restore")
    _run(argv, pg_target(database_url), "pg_restore")


# --- pruning -----------------------------------------------------------------------------


def prune_age(text: str) -> timedelta:
    """`--older-than`: 180d, 12h, 2d12h...; a week at least."""
    try:
        age = parse_duration(text)
    except ValueError as exc:
        raise Failure(f"--older-than: {exc} (e.g. 180d or 90d)") from None
    if age < MIN_AGE:
        raise Failure(
            f"--older-than {text}: at least 7d (Telegram may redeliver or reuse update ids "
            "within a week, and recent rows are still in use)"
        )
    return age


# what pruning deletes, in the order it is reported
KINDS = ("inbox updates", "outbox messages", "button tokens", "invites")


def _prunable(cut: datetime) -> dict[str, tuple[Any, ColumnElement[bool]]]:
    closed = select(col(Ticket.id)).where(col(Ticket.state) == State.CLOSED)
    return {
        "inbox updates": (
            InboxUpdate,
            and_(
                col(InboxUpdate.processed_at) < cut,
                col(InboxUpdate.dead_at).is_(None),
            ),
        ),
        "outbox messages": (
            OutboxMessage,
            and_(
                col(OutboxMessage.state) == "sent",
                col(OutboxMessage.sent_at) < cut,
                or_(col(OutboxMessage.link_role).is_(None), col(OutboxMessage.link_role) != "card"),
            ),
        ),
        "button tokens": (
            ButtonAction,
            and_(
                col(ButtonAction.created_at) < cut,
                or_(col(ButtonAction.ticket_id).is_(None), col(ButtonAction.ticket_id).in_(closed)),
            ),
        ),
        "invites": (
            Invite,
            or_(
                col(Invite.used_at) < cut,
                and_(col(Invite.used_at).is_(None), col(Invite.expires_at) < cut),
            ),
        ),
    }


def prune(engine: Engine, cut: datetime, *, dry_run: bool) -> dict[str, int]:
    """Delete (or, `dry_run`, count) each kind's rows older than `cut`; one transaction
    per kind, so the running bot waits for none of them long."""
    counts: dict[str, int] = {}
    for kind, (table, where) in _prunable(cut).items():
        with engine.begin() as conn:
            if dry_run:
                query = select(func.count()).select_from(table).where(where)
                counts[kind] = int(conn.execute(query).scalar_one())
            else:
                result = conn.execute(delete(table).where(where))
                counts[kind] = int(result.rowcount or 0)
    return counts
