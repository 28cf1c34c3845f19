"""`squadbot report --month YYYY-MM --out DIR`: the month's ledger and charts as files,
without the bot, for the whole zone, in the zone's language unless told otherwise. A large
month shows a progress bar while its tickets are written."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from pathlib import Path

from bot.reports.export import count_tickets, write_charts, write_workbook
from bot.reports.ledger import Progress
from bot.settings import Settings
from migrations.runner import upgrade
from models.clock import SystemClock
from models.db import make_engine, transaction
from models.periods import PeriodError, parse_month
from models.zone.config import read_zone

LARGE = 5000  # tickets; below this the report is written before a bar would be drawn


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="write a month's ledger (.xlsx) and charts (.png)")
    report.add_argument("--month", required=True, help="YYYY-MM, in the zone's time")
    report.add_argument("--out", required=True, type=Path, help="folder to write into")
    report.add_argument("--lang", choices=["zh-CN", "en"], help="default: the zone's language")


def run(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with transaction(engine) as session:
        zone = read_zone(session)
    try:
        period = parse_month(args.month, zone.tz)
    except PeriodError as exc:
        print(f"report: --month: {exc}", file=sys.stderr)
        return 2
    locale = args.lang or zone.language
    now = SystemClock().now()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ledger = out / f"ledger-{period.label}.xlsx"
    total = count_tickets(engine, period, None)
    progress: Progress | None = None
    with contextlib.ExitStack() as stack:
        if total >= LARGE:
            from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            bar = stack.enter_context(Bar("{task.description}", *columns, transient=True))
            task = bar.add_task(ledger.name, total=total)
            progress = functools.partial(bar.advance, task)
        write_workbook(
            engine,
            period,
            now,
            ledger,
            scope=None,
            rules=zone.ranking,
            locale=locale,
            tz=zone.tz,
            progress=progress,
        )
    print(f"{ledger}  ({total} tickets)")
    for chart in write_charts(
        engine, period, now, out, scope=None, rules=zone.ranking, locale=locale
    ):
        print(chart)
    return 0
