"""`squadbot db upgrade|backup|restore|prune`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import make_url

from bot.commands.common import (
    announce_database,
    database_errors,
    database_label,
    migrate,
    open_database,
    sqlite_path,
)
from bot.commands.help import command_parser, subcommands
from bot.settings import Settings
from bot.startup import Failure
from migrations.runner import alembic_config, current
from models.db import make_engine


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    engine = open_database(settings, create=True)
    print(f"database is at the newest schema ({current(engine)})")
    return 0


def _is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def _sqlite_file(settings: Settings) -> Path:
    path = sqlite_path(settings.database_url)
    if path is None:
        raise Failure(
            "SQUADBOT_DATABASE_URL: backups need an SQLite file or a PostgreSQL database, "
            "not an in-memory one"
        )
    return path


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _check_target(file: Path, force: bool) -> None:
    if file.is_dir():
        raise Failure(f"{file} is a folder: give the backup's file name")
    if file.exists() and not force:
        raise Failure(f"{file} exists: choose another name, or add --force to replace it")


def cmd_db_backup(settings: Settings, args: argparse.Namespace) -> int:
    from bot.backups import backup_postgres, backup_sqlite

    announce_database(database_label(settings.database_url))
    file: Path = args.file
    _check_target(file, args.force)
    if _is_postgres(settings.database_url):
        size = backup_postgres(settings.database_url, file)
        print(f"wrote {file}: {_size(size)} (pg_dump --format=custom)")
        return 0
    copied = backup_sqlite(_sqlite_file(settings), file)
    print(
        f"wrote {file}: {_size(copied.size)}, {copied.tickets} ticket(s), schema {copied.revision}"
    )
    return 0


def _known_revisions(settings: Settings) -> set[str]:
    engine = make_engine(settings.database_url)
    try:
        script = ScriptDirectory.from_config(alembic_config(engine))
        return {s.revision for s in script.walk_revisions()}
    finally:
        engine.dispose()


def cmd_db_restore(settings: Settings, args: argparse.Namespace) -> int:
    from bot.backups import (
        check_pg_dump,
        check_sqlite_backup,
        restore_command,
        restore_postgres,
        restore_sqlite,
    )

    label = database_label(settings.database_url)
    announce_database(label)
    backup: Path = args.file
    if _is_postgres(settings.database_url):
        check_pg_dump(backup)
        if not args.force:
            shown = " ".join(restore_command(settings.database_url, backup, shown=True))
            print("With the bot stopped, restore the dump with (the password in PGPASSWORD or")
            print("~/.pgpass), then run `squadbot db upgrade`:")
            print(f"  {shown}")
            print("or repeat this command with --force to have it done.")
            return 0
        restore_postgres(settings.database_url, backup)
        print(f"restored {backup} into {label}")
    else:
        target = _sqlite_file(settings)
        revision, tickets = check_sqlite_backup(backup, _known_revisions(settings))
        if target.is_dir():
            raise Failure(f"SQUADBOT_DATABASE_URL: {target} is a folder, not a database file")
        if target.exists() and not args.force:
            raise Failure(
                f"a database exists at {target}: stop the bot and add --force to replace it "
                "with the backup (take a backup of it first)"
            )
        restore_sqlite(backup, target)
        print(f"restored {backup} into {target}: {tickets} ticket(s), schema {revision}")
    engine = make_engine(settings.database_url)
    try:
        with database_errors(label):
            migrate(engine)
            print(f"database is at the newest schema ({current(engine)})")
    finally:
        engine.dispose()
    return 0


def cmd_db_prune(settings: Settings, args: argparse.Namespace) -> int:
    from bot.backups import KINDS, prune, prune_age

    age = prune_age(args.older_than)
    engine = open_database(settings, create=False)
    cut = datetime.now(UTC) - age
    with database_errors(database_label(settings.database_url)):
        counts = prune(engine, cut, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    when = cut.isoformat(timespec="seconds")
    for kind in KINDS:
        print(f"{kind}: {verb} {counts[kind]}")
    print(f"{verb} {sum(counts.values())} row(s) older than {when}")
    return 0


def register(sub: Any) -> None:
    group = command_parser(
        sub,
        "db",
        "the database: schema, backups, pruning",
        "The database's schema, changed only by squadbot's own migrations; backups and "
        "restores; pruning what only the plumbing needed.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    db = subcommands(group, "db_command")
    command_parser(
        db,
        "upgrade",
        "apply pending migrations (creates the database if there is none)",
        "Apply every pending migration; `run` and `org load` do this too. Prints nothing "
        "about migrations when there are none.",
        settings=("SQUADBOT_DATABASE_URL",),
    ).set_defaults(handler=cmd_db_upgrade)

    backup = command_parser(
        db,
        "backup",
        "write a consistent copy of the database to FILE (safe while the bot runs)",
        "SQLite: an online copy through SQLite's backup API, consistent while the bot "
        "writes, as one self-contained file. PostgreSQL: `pg_dump --format=custom` (from the "
        "postgresql-client package). Prints the file's size (and, for SQLite, the tickets in "
        "the copy). Keep the data folder (attachments) with it.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    backup.add_argument("file", type=Path, metavar="FILE", help="the backup to write")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.set_defaults(handler=cmd_db_backup)

    restore = command_parser(
        db,
        "restore",
        "put a backup in place of the database, then migrate it to the newest schema",
        "SQLite: checks that FILE is a squadbot database at a migration this squadbot knows, "
        "then copies it into SQUADBOT_DATABASE_URL's file through SQLite's backup API; an "
        "existing database is replaced only with --force (stop the bot first). PostgreSQL: "
        "prints the pg_restore command to run, or runs it with --force. Then migrates the "
        "database to the newest schema.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a backup from `db backup`")
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace an existing database (PostgreSQL: run pg_restore --clean)",
    )
    restore.set_defaults(handler=cmd_db_restore)

    prune = command_parser(
        db,
        "prune",
        "delete handled updates, sent messages, old button tokens and invites",
        "Delete rows older than --older-than that only the plumbing needed: handled inbox "
        "updates (dead letters are kept), sent outbox messages (ticket cards are kept), "
        "button tokens of closed tickets or of none, and used or expired invites. Tickets, "
        "their history, attachments and the alert ledger are never touched. Prints the "
        "count of each kind.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="e.g. 180d or 90d (12h, 2d12h... also read); at least 7d",
    )
    prune.add_argument("--dry-run", action="store_true", help="count only, delete nothing")
    prune.set_defaults(handler=cmd_db_prune)
