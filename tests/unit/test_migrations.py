"""The schema is only ever changed by migrations: after `upgrade`, the database matches the
models exactly, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models  # noqa: F401
from migrations.runner import current, upgrade
from models.db import make_engine


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_sqlite_migrations_match_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert current(engine) is not None
    assert _differences(engine) == []
    upgrade(engine)  # a second run is a no-op


def test_sqlite_pragmas_for_durability(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() > 0


def test_postgres_migrations_match_models(pg_engine: Engine) -> None:
    assert current(pg_engine) is not None
    assert _differences(pg_engine) == []


def _model_expressions(engine: Engine) -> dict[str, str]:
    """What the model says each generated column of the ticket is, in this database's SQL."""
    from models.ticket import FIGURE_COLUMNS, Ticket

    table = Ticket.__table__  # type: ignore[attr-defined]
    return {
        name: str(
            table.c[name].computed.sqltext.compile(
                dialect=engine.dialect, compile_kwargs={"literal_binds": True}
            )
        )
        for name in FIGURE_COLUMNS
    }


def test_sqlite_migrations_generate_the_model_s_figure_columns(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        created = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ticket'"
        ).scalar_one()
    expressions = _model_expressions(engine)
    assert len(expressions) == 8
    for name, expression in expressions.items():
        assert f" {name} " in created and f"GENERATED ALWAYS AS ({expression}) VIRTUAL" in created


def test_postgres_migrations_generate_the_model_s_figure_columns(pg_engine: Engine) -> None:
    """PostgreSQL rewrites an expression as it stores it: a table made from the model's
    expressions must read back the same as the migrated ticket's."""
    from sqlalchemy import Column, MetaData, Table

    from models.ticket import FIGURE_COLUMNS, Ticket

    ticket = Ticket.__table__  # type: ignore[attr-defined]
    used = {c.name for c in ticket.columns if c.name not in FIGURE_COLUMNS}
    model = Table(
        "ticket_as_modelled",
        MetaData(),
        *(Column(c.name, c.type) for c in ticket.columns if c.name in used),
        *(ticket.c[name]._copy() for name in FIGURE_COLUMNS),
    )
    stored = (
        "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
        " JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = CAST(:t AS regclass) AND a.attgenerated = 's'"
    )
    with pg_engine.begin() as conn:
        model.create(conn)
        migrated = {str(n): str(e) for n, e in conn.execute(text(stored), {"t": "ticket"})}
        modelled = {
            str(n): str(e) for n, e in conn.execute(text(stored), {"t": "ticket_as_modelled"})
        }
        model.drop(conn)
    assert set(migrated) == set(FIGURE_COLUMNS)
    assert migrated == modelled


def test_sqlite_next_alert_times_move_to_their_own_table_and_back(tmp_path: Path) -> None:
    """0011 moves each ticket's next alert time into `ticketalarm` (a row only for a ticket
    that has one); going back puts it on the ticket again."""
    import sqlite3

    from alembic import command

    from migrations.runner import alembic_config

    path = tmp_path / "a.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, "0010")
    columns = (
        "id, number, squad_id, enterprise_id, category_code, urgency, description, state,"
        " language, cycle, created_at, updated_at, plan_required, next_alert_at"
    )
    filed = "2026-01-05 09:00:00.000000"
    with sqlite3.connect(path) as raw:  # bare rows: no people or squads are needed here
        raw.executemany(
            f"INSERT INTO ticket ({columns})"
            " VALUES (?, ?, 1, 1, 'x', 'normal', 'd', 'open', 'zh-CN', 0, ?, ?, 0, ?)",
            [
                (1, "A-1", filed, filed, "2026-01-05 09:08:00.000000"),
                (2, "A-2", filed, filed, None),
            ],
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT * FROM ticketalarm").all() == [
            (1, "2026-01-05 09:08:00.000000")
        ]
        names = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(ticket)")]
        assert "next_alert_at" not in names
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0010")
    with engine.connect() as conn:
        back = conn.exec_driver_sql("SELECT id, next_alert_at FROM ticket ORDER BY id").all()
    assert back == [(1, "2026-01-05 09:08:00.000000"), (2, None)]
    engine.dispose()
