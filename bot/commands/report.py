"""`squadbot report --month YYYY-MM --out DIR`: a month's ledger and charts as files,
without the bot, for the whole zone, in the zone's language unless told otherwise. A large
month shows a progress bar while its tickets are written."""

from __future__ import annotations

import argparse
import contextlib
import functools
from pathlib import Path
from typing import Any

from bot.commands.common import open_database
from bot.commands.help import command_parser
from bot.settings import Settings
from bot.startup import Failure

LARGE = 5000  # tickets; below this the report is written before a bar would be drawn


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.reports.export import count_tickets, write_charts, write_workbook
    from bot.reports.ledger import Progress
    from models.clock import SystemClock
    from models.db import transaction
    from models.periods import PeriodError, parse_month
    from models.zone.config import read_zone

    engine = open_database(settings, create=False, need_zone=True)
    with transaction(engine) as session:
        zone = read_zone(session)
    try:
        period = parse_month(args.month, zone.tz)
    except PeriodError as exc:
        raise Failure(f"report: --month: {exc}") from None
    locale = args.lang or zone.language
    now = SystemClock().now()
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Failure(f"report: --out {out}: {exc.strerror}") from None
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
        count = write_workbook(
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
    print(f"{ledger}  ({count} tickets)")
    charts = write_charts(engine, period, now, out, scope=None, rules=zone.ranking, locale=locale)
    for chart in charts:
        print(chart)
    return 0


def register(sub: Any) -> None:
    report = command_parser(
        sub,
        "report",
        "write a month's ledger (.xlsx) and charts (.png) to a folder",
        "Write the month's ticket ledger (台账: a row per ticket, the squads' figures, the "
        "ranking) and its charts (the ranking, each day's tickets and on-time rates, the "
        "category mix) for the whole zone, as the managers' /export and /stats give them.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    report.add_argument("--month", required=True, help="YYYY-MM, in the zone's time")
    report.add_argument("--out", required=True, type=Path, help="the folder to write into")
    report.add_argument("--lang", choices=["zh-CN", "en"], help="default: the zone's language")
    report.set_defaults(handler=cmd_report)
