"""A period's report as files: the ledger workbook and the charts, from a session of its
own (the chat's /export runs it beside the update's transaction, in a worker thread), for
the bot and for `squadbot report` alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.reports import charts
from bot.reports.ledger import Progress, write_ledger
from models import figures
from models.figures import Scope
from models.ledger import ledger_count, ledger_rows
from models.periods import Period
from models.ranking import ranking
from models.zone.schema import RankingSection

CategoryNames = Callable[[str, str], str]


def namer(names: Mapping[str, tuple[str, str]]) -> CategoryNames:
    def name(code: str, locale: str) -> str:
        zh, en = names.get(code, (code, code))
        return zh if locale == "zh-CN" else en

    return name


def count_tickets(engine: Engine, period: Period, scope: Scope) -> int:
    with Session(engine) as session:
        return ledger_count(session, period, scope)


def write_workbook(
    engine: Engine,
    period: Period,
    now: datetime,
    path: Path,
    *,
    scope: Scope,
    rules: RankingSection,
    locale: str,
    tz: ZoneInfo,
    progress: Progress | None = None,
) -> int:
    """The ledger of the period's tickets in scope; returns how many tickets it holds."""
    with Session(engine) as session:
        names = namer(figures.category_names(session))
        stats = figures.stats(session, period, now, scope)
        standings = ranking(session, period, now, rules).only(scope)
        rows = ledger_rows(session, period, now, scope)
        return write_ledger(
            path,
            rows,
            stats,
            standings,
            locale=locale,
            tz=tz,
            category_name=names,
            progress=progress,
        )


def write_charts(
    engine: Engine,
    period: Period,
    now: datetime,
    folder: Path,
    *,
    scope: Scope,
    rules: RankingSection,
    locale: str,
) -> list[Path]:
    """The ranking (for the whole zone only), the daily chart and the category mix."""
    with Session(engine) as session:
        names = namer(figures.category_names(session))
        days = figures.daily(session, period, now, scope)
        mix = figures.category_mix(session, period, scope)
        ranked = ranking(session, period, now, rules) if scope is None else None
    label = period.label
    written = []
    if ranked is not None:
        written.append(charts.ranking_chart(ranked, locale, folder / f"ranking-{label}.png"))
    written.append(charts.daily_chart(days, period, locale, folder / f"daily-{label}.png"))
    written.append(
        charts.category_chart(mix, period, locale, names, folder / f"categories-{label}.png")
    )
    return written
