"""Whole seconds between two stored moments, the same integer on SQLite and PostgreSQL: the
measure behind the figures' times (first reply, resolution) and the overdue list's lateness."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["seconds_between"]


class seconds_between(FunctionElement[int]):
    """Whole seconds from `start` to `end`, rounded: SQLite counts in Julian days,
    PostgreSQL in epoch seconds; both give the same integer for the same two moments."""

    type = Integer()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    end, start = list(element.clauses)
    return (
        f"CAST(ROUND((julianday({compiler.process(end, **kw)}) - "
        f"julianday({compiler.process(start, **kw)})) * 86400.0) AS INTEGER)"
    )


@compiles(seconds_between)  # PostgreSQL's, and any other database's (and str(query))
@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    end, start = list(element.clauses)
    return (
        f"CAST(ROUND(EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - "
        f"{compiler.process(start, **kw)}))) AS BIGINT)"
    )
