"""`squadbot db backup|restore|prune`: a backup taken while tickets are being filed restores
into a database that matches the models and holds every ticket committed before it began;
restore refuses what is not a squadbot backup and an existing database without --force;
prune deletes exactly the plumbing rows it should and nothing of tickets, history or the
alert ledger; a missing pg_dump is one line."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, func, select

import models  # noqa: F401
from bot.cli import main
from migrations.runner import current
from models import filing
from models.db import make_engine
from models.desk import Desk
from models.lifecycle import State
from models.org import Person
from models.people import Actor, active_memberships
from models.plumbing import AlertRecord, InboxUpdate, Invite, OutboxMessage
from models.ticket import Attachment, ButtonAction, Ticket, TicketEvent
from models.zone.config import read_zone
from tests.conftest import PG_DSN
from tests.harness import zone_database

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=200)
RECENT = NOW - timedelta(days=1)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("SQUADBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def use(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", f"sqlite:///{path}")


def file_ticket(engine: Engine, moment: datetime, description: str = "变电站规划许可") -> int:
    """qian.hao (PV01) files a ticket through the domain; its id."""
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, moment, read_zone(session))
        person = session.exec(select(Person).where(Person.key == "qian.hao")).one()
        assert person.id is not None
        ent = Actor(person=person, memberships=active_memberships(session, person.id))
        filing.start_draft(desk, ent)
        filing.choose_category(desk, ent, "planning_permit")
        filing.describe(desk, ent, description)
        filing.choose_urgency(desk, ent, "normal")
        ticket = filing.submit(desk, ent)
        session.commit()
        assert ticket.id is not None
        return ticket.id


def numbers(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(Ticket.number)).all())


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


# --- backup and restore --------------------------------------------------------------------


def test_backup_while_filing_restores_every_ticket_committed_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = zone_database(tmp_path)  # tmp_path / squadbot.db
    use(monkeypatch, tmp_path / "squadbot.db")
    stop = threading.Event()
    filed: list[int] = []
    errors: list[BaseException] = []

    def keep_filing() -> None:
        writer = make_engine(f"sqlite:///{tmp_path / 'squadbot.db'}")
        try:
            while not stop.is_set():
                filed.append(file_ticket(writer, datetime.now(UTC), f"停水 {len(filed)}"))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            writer.dispose()

    thread = threading.Thread(target=keep_filing, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(filed) < 5 and not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        committed = numbers(engine)  # read before the backup begins
        during = len(filed)
        code, out, err = run(capsys, "db", "backup", str(tmp_path / "copy.db"))
        deadline = time.monotonic() + 30
        while len(filed) < during + 5 and not errors and time.monotonic() < deadline:
            time.sleep(0.01)  # the writer went on after the backup, too
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert code == 0, err
    assert len(committed) >= 5
    assert len(filed) >= during + 5

    copy = tmp_path / "copy.db"
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    with sqlite3.connect(copy) as conn:
        in_copy = int(conn.execute("SELECT count(*) FROM ticket").fetchone()[0])
    assert f"wrote {copy}: " in out
    assert f"{in_copy} ticket(s)" in out
    assert "KiB" in out or "MiB" in out

    target = tmp_path / "restored" / "squadbot.db"
    target.parent.mkdir()
    use(monkeypatch, target)
    code, out, err = run(capsys, "db", "restore", str(copy))
    assert code == 0, err
    assert f"restored {copy} into {target}: {in_copy} ticket(s)" in out
    restored = make_engine(f"sqlite:///{target}")
    try:
        assert differences(restored) == []
        got = numbers(restored)
        assert committed <= got  # every ticket committed before the backup began
        assert got <= numbers(engine)
        with Session(restored) as session:  # each restored ticket whole, history with it
            events = session.exec(select(func.count()).select_from(TicketEvent)).one()
        assert events >= len(got)
    finally:
        restored.dispose()
        engine.dispose()


def test_restore_refuses_what_is_not_a_squadbot_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, tmp_path / "new.db")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n" * 10)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE stuff (id INTEGER)")
    unknown = tmp_path / "future.db"
    zone_database(tmp_path).dispose()
    shutil.copy(tmp_path / "squadbot.db", unknown)
    with sqlite3.connect(unknown) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")

    for backup, said in (
        (text_file, "is not an SQLite database"),
        (other, "not a squadbot one"),
        (unknown, "schema 9999, which this squadbot does not know"),
        (tmp_path / "missing.db", "no backup at"),
    ):
        code, out, err = run(capsys, "db", "restore", "--force", str(backup))
        assert code == 2, (backup, out, err)
        assert said in err
        assert len(err.strip().splitlines()) == 2  # the database line, then the refusal
        assert not (tmp_path / "new.db").exists()


def test_restore_refuses_an_existing_database_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = zone_database(tmp_path)
    file_ticket(engine, RECENT)
    engine.dispose()
    use(monkeypatch, tmp_path / "squadbot.db")
    assert run(capsys, "db", "backup", str(tmp_path / "one.db"))[0] == 0

    engine = make_engine(f"sqlite:///{tmp_path / 'squadbot.db'}")
    file_ticket(engine, RECENT)  # the live database moves on: two tickets
    code, _out, err = run(capsys, "db", "restore", str(tmp_path / "one.db"))
    assert code == 2
    assert "a database exists at" in err and "--force" in err
    assert len(numbers(engine)) == 2  # untouched

    code, _out, err = run(capsys, "db", "backup", str(tmp_path / "one.db"))
    assert code == 2 and "exists" in err  # a backup is not overwritten either

    code, _out, err = run(capsys, "db", "restore", "--force", str(tmp_path / "one.db"))
    assert code == 0, err
    assert len(numbers(engine)) == 1  # the backup's, seen by a connection open throughout
    assert current(engine) is not None
    assert differences(engine) == []
    engine.dispose()


def test_restore_migrates_an_older_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from migrations.runner import upgrade

    older = make_engine(f"sqlite:///{tmp_path / 'older.db'}")
    upgrade(older, "0001")
    older.dispose()
    use(monkeypatch, tmp_path / "fresh.db")
    code, out, err = run(capsys, "db", "restore", str(tmp_path / "older.db"))
    assert code == 0, err
    assert "schema 0001" in out
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert differences(engine) == []
    engine.dispose()


# --- PostgreSQL ----------------------------------------------------------------------------


def test_pg_dump_missing_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", "postgresql+psycopg://bot:s3cret@127.0.0.1/bot")
    code, out, err = run(capsys, "db", "backup", str(tmp_path / "bot.dump"))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[-1].startswith("squadbot: pg_dump is not on PATH")
    assert "postgresql-client" in lines[-1]
    assert len(lines) == 2  # the database line, then the cause
    assert "s3cret" not in err
    assert not (tmp_path / "bot.dump").exists()


def test_pg_restore_without_force_prints_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = tmp_path / "bot.dump"
    dump.write_bytes(b"PGDMP" + b"\0" * 100)
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", "postgresql+psycopg://bot:s3cret@127.0.0.1/bot")
    code, out, err = run(capsys, "db", "restore", str(dump))
    assert code == 0, err
    assert "pg_restore --clean --if-exists --no-owner --single-transaction" in out
    assert f"postgresql://bot:***@127.0.0.1/bot {dump}" in out
    assert "s3cret" not in out + err


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not on PATH")
def test_postgres_backup_with_pg_dump(
    pg_engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert PG_DSN is not None
    with pg_engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    monkeypatch.setenv("SQUADBOT_DATABASE_URL", PG_DSN)
    dump = tmp_path / "pg.dump"
    code, out, err = run(capsys, "db", "backup", str(dump))
    assert code == 0, err
    assert out.startswith(f"wrote {dump}: ")
    assert dump.read_bytes()[:5] == b"PGDMP"
    listing = subprocess.run(
        ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    assert f"TABLE {schema} ticket " in listing


# --- prune ---------------------------------------------------------------------------------


def _counts(session: Session, *tables: Any) -> dict[str, int]:
    return {t.__name__: session.exec(select(func.count()).select_from(t)).one() for t in tables}


def test_prune_deletes_exactly_the_plumbing_older_than_the_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = zone_database(tmp_path)
    use(monkeypatch, tmp_path / "squadbot.db")
    open_id = file_ticket(engine, RECENT)
    closed_id = file_ticket(engine, RECENT)
    with Session(engine, expire_on_commit=False) as session:
        closed = session.get(Ticket, closed_id)
        assert closed is not None
        closed.state = State.CLOSED
        session.add(closed)
        ent = session.exec(select(Person).where(Person.key == "qian.hao")).one()

        def inbox(n: int, processed: datetime | None, dead: datetime | None) -> InboxUpdate:
            row = InboxUpdate(
                update_id=n,
                digest=f"d{n}",
                payload="{}",
                received_at=OLD if processed in (None, OLD) else processed,
                processed_at=processed,
                dead_at=dead,
            )
            session.add(row)
            return row

        def outbox(
            state: str, sent: datetime | None, link_role: str | None = None
        ) -> OutboxMessage:
            row = OutboxMessage(
                created_at=OLD,
                chat_id=1,
                template="x",
                state=state,
                next_attempt_at=OLD,
                sent_at=sent,
                ticket_id=open_id if link_role else None,
                link_role=link_role,
            )
            session.add(row)
            return row

        def button(token: str, created: datetime, ticket_id: int | None) -> ButtonAction:
            row = ButtonAction(token=token, action="page", ticket_id=ticket_id, created_at=created)
            session.add(row)
            return row

        def invite(code: str, expires: datetime, used: datetime | None) -> Invite:
            row = Invite(
                code=code, role="enterprise", created_at=OLD, expires_at=expires, used_at=used
            )
            session.add(row)
            return row

        doomed_inbox = [inbox(1, OLD, None)]
        kept_inbox = [inbox(2, OLD, OLD), inbox(3, None, None), inbox(4, RECENT, None)]
        doomed_outbox = [outbox("sent", OLD), outbox("sent", OLD, "thread")]
        kept_outbox = [
            outbox("sent", OLD, "card"),  # the ticket's card: edited and replied to later
            outbox("failed", None),
            outbox("pending", None),
            outbox("sent", RECENT),
        ]
        doomed_buttons = [button("old-none", OLD, None), button("old-closed", OLD, closed_id)]
        kept_buttons = [button("old-open", OLD, open_id), button("new-none", RECENT, None)]
        doomed_invites = [
            invite("usedold", NOW + timedelta(days=1), OLD),
            invite("expold", OLD, None),
        ]
        kept_invites = [
            invite("usednew", OLD, RECENT),
            invite("live", NOW + timedelta(days=3), None),
            invite("expnew", RECENT, None),
        ]
        session.add(
            AlertRecord(
                ticket_id=open_id, deadline="response", level="warn", due_at=OLD, fired_at=OLD
            )
        )
        session.add(TicketEvent(ticket_id=open_id, actor_id=ent.id, action="note", at=OLD))
        session.add(Attachment(ticket_id=open_id, kind="photo", added_at=OLD))
        session.commit()
        gone: dict[str, set[object]] = {
            "inbox": {r.id for r in doomed_inbox},
            "outbox": {r.id for r in doomed_outbox},
            "button": {r.token for r in doomed_buttons},
            "invite": {r.id for r in doomed_invites},
        }
        kept_ids: dict[str, set[object]] = {
            "inbox": {r.id for r in kept_inbox},
            "outbox": {r.id for r in kept_outbox},
            "button": {r.token for r in kept_buttons},
            "invite": {r.id for r in kept_invites},
        }

    def present() -> dict[str, set[object]]:
        with Session(engine) as session:
            return {
                "inbox": set(session.exec(select(InboxUpdate.id)).all()),
                "outbox": set(session.exec(select(OutboxMessage.id)).all()),
                "button": set(session.exec(select(ButtonAction.token)).all()),
                "invite": set(session.exec(select(Invite.id)).all()),
            }

    ledger = (Ticket, TicketEvent, Attachment, AlertRecord)
    with Session(engine) as session:
        kept_before = _counts(session, *ledger)
    before = present()
    assert all(gone[k] <= before[k] and kept_ids[k] <= before[k] for k in gone)

    code, out, err = run(capsys, "db", "prune", "--older-than", "180d", "--dry-run")
    assert code == 0, err
    expected = (
        "inbox updates: would delete 1\n"
        "outbox messages: would delete 2\n"
        "button tokens: would delete 2\n"
        "invites: would delete 2\n"
    )
    assert out.startswith(expected)
    assert "would delete 7 row(s) older than" in out
    assert present() == before

    code, out, err = run(capsys, "db", "prune", "--older-than", "180d")
    assert code == 0, err
    assert out.startswith(expected.replace("would delete", "deleted"))
    after = present()
    for kind in before:
        assert after[kind] == before[kind] - gone[kind], kind
    with Session(engine) as session:
        assert _counts(session, *ledger) == kept_before
        assert session.exec(select(Ticket).where(col(Ticket.id) == closed_id)).one()

    code, out, _err = run(capsys, "db", "prune", "--older-than", "180d")
    assert code == 0 and "deleted 0 row(s)" in out  # nothing left to do
    engine.dispose()


@pytest.mark.parametrize(
    ("age", "said"),
    [
        ("6d", "at least 7d"),
        ("12h", "at least 7d"),
        ("soon", "invalid duration"),
        ("-9d", "greater"),
    ],
)
def test_prune_refuses_a_short_or_unreadable_age(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    age: str,
    said: str,
) -> None:
    use(monkeypatch, tmp_path / "none.db")
    code, out, err = run(capsys, "db", "prune", f"--older-than={age}")
    assert code == 2
    assert out == ""
    assert said in err
    assert len(err.strip().splitlines()) == 1
