"""The monthly ledger (台账) as an .xlsx workbook: every ticket of the period, a summary
row per squad, and the ranking; headers in the reader's language, frozen, with filters and
column widths. openpyxl writes the workbook; the tickets' rows, as many as a month holds,
are streamed into it as the database yields them (bot/reports/sheetxml.py), so a month of
100k tickets is never held in memory and takes seconds, not minutes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from bot.i18n import t
from bot.reports.sheetxml import fill_sheet
from models.figures import Rate, Stats
from models.ledger import LedgerRow
from models.ranking import Standing

CategoryNames = Callable[[str, str], str]
Progress = Callable[[int], None]

# (catalog key under ledger.column., width in characters)
TICKET_COLUMNS = (
    ("number", 16),
    ("squad", 24),
    ("project", 24),
    ("enterprise", 28),
    ("category", 14),
    ("urgency", 8),
    ("state", 12),
    ("filed", 17),
    ("first_response", 17),
    ("plan_agreed", 17),
    ("resolved", 17),
    ("closed", 17),
    ("reply_kept", 10),
    ("handling_kept", 10),
    ("plan_kept", 10),
    ("owner", 10),
    ("led_by", 10),
    ("rating", 6),
    ("description", 50),
    ("summary", 40),
)
SUMMARY_COLUMNS = (
    ("squad_code", 10),
    ("squad", 28),
    ("filed_count", 8),
    ("open_count", 8),
    ("resolved_count", 8),
    ("reply_rate", 12),
    ("handling_rate", 12),
    ("plan_rate", 12),
    ("reply_median_min", 14),
    ("reply_p90_min", 14),
    ("resolution_median_h", 14),
    ("resolution_p90_h", 14),
    ("warnings", 8),
    ("breaches", 8),
    ("supervisions", 8),
    ("rework_rate", 10),
    ("rating", 8),
    ("ratings", 8),
)
RANKING_COLUMNS = (
    ("rank", 6),
    ("squad", 28),
    ("tickets", 8),
    ("reply_rate", 12),
    ("handling_rate", 12),
    ("rating", 8),
    ("score", 8),
    ("movement", 10),
    ("red_flag", 10),
)
HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDE5F0")
PERCENT = "0.0%"
DATE_FORMAT = "yyyy-mm-dd hh:mm"
FIRST_DATE_COLUMN = 7  # 0-based: "filed"
SHORT = 200  # characters of description and summary kept in a cell


def _sheet(
    book: Workbook, title: str, columns: Sequence[tuple[str, int]], locale: str
) -> WriteOnlyWorksheet:
    """A sheet with its header written: frozen and filtered. Widths and the frozen row are
    set before the first row, as a write-only sheet needs."""
    sheet: WriteOnlyWorksheet = book.create_sheet(title)
    for index, (_, width) in enumerate(columns, start=1):
        # a write-only sheet gets these from Worksheet._setup, which the stubs do not know
        sheet.column_dimensions[get_column_letter(index)].width = width  # type: ignore[attr-defined]
    sheet.freeze_panes = "A2"
    header = []
    for key, _ in columns:
        cell = WriteOnlyCell(sheet, t(locale, f"ledger.column.{key}"))
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(vertical="center")
        header.append(cell)
    sheet.append(header)
    return sheet


def _filter(sheet: WriteOnlyWorksheet, columns: int, rows: int) -> None:
    sheet.auto_filter.ref = f"A1:{get_column_letter(columns)}{rows + 1}"  # type: ignore[attr-defined]


def _local(value: datetime | None, tz: ZoneInfo) -> datetime | None:
    """Excel has no time zones: the zone's local time, as the squads read it."""
    return None if value is None else value.astimezone(tz).replace(tzinfo=None)


def _percent(sheet: WriteOnlyWorksheet, rate: Rate) -> Any:
    if rate.share is None:
        return None
    cell = WriteOnlyCell(sheet, round(rate.share, 4))
    cell.number_format = PERCENT
    return cell


def _minutes(seconds: int | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _hours(seconds: int | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _short(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def ticket_values(
    rows: Iterable[LedgerRow], locale: str, tz: ZoneInfo, category_name: CategoryNames
) -> Iterator[tuple[object, ...]]:
    """Each ticket's cells, in TICKET_COLUMNS order, in the reader's language."""
    kept = {1: t(locale, "ledger.kept"), 0: t(locale, "ledger.missed")}

    @functools.cache
    def category(code: str) -> str:
        return category_name(code, locale)

    @functools.cache
    def label(key: str) -> str:
        return t(locale, key)

    for row in rows:
        yield (
            row.number,
            row.squad,
            row.project,
            row.enterprise,
            category(row.category_code),
            label(f"urgency.{row.urgency}"),
            label(f"state.{row.state}"),
            _local(row.filed, tz),
            _local(row.first_response, tz),
            _local(row.plan_agreed, tz),
            _local(row.resolved, tz),
            _local(row.closed, tz),
            None if row.reply is None else kept[row.reply],
            None if row.handling is None else kept[row.handling],
            None if row.plan is None else kept[row.plan],
            row.owner,
            row.led_by,
            row.rating,
            _short(row.description),
            _short(row.summary),
        )


def _template_row(sheet: WriteOnlyWorksheet) -> list[object]:
    """A row with one date in the date format, so openpyxl registers the style the
    streamed dates use (models of the cells, never kept: bot/reports/sheetxml.py)."""
    cell = WriteOnlyCell(sheet, datetime(2000, 1, 1))
    cell.number_format = DATE_FORMAT
    return [None] * FIRST_DATE_COLUMN + [cell]


def write_summary(sheet: WriteOnlyWorksheet, stats: Stats, locale: str) -> int:
    rows = [*stats.squads, replace(stats.total, name=t(locale, "ledger.total"))]
    for f in rows:
        sheet.append(
            (
                f.code or None,
                f.name,
                f.filed,
                f.open,
                f.resolved,
                _percent(sheet, f.reply),
                _percent(sheet, f.handling),
                _percent(sheet, f.plan),
                _minutes(f.first_response.median),
                _minutes(f.first_response.p90),
                _hours(f.resolution.median),
                _hours(f.resolution.p90),
                f.alerts.get("warning", 0),
                f.alerts.get("breach", 0),
                f.alerts.get("supervision", 0),
                _percent(sheet, f.rework),
                round(f.rating, 2) if f.rating is not None else None,
                f.rating_count,
            )
        )
    return len(rows)


def movement(standing: Standing, locale: str) -> str | None:
    if standing.movement is None:
        return None
    return t(locale, f"ranking.move.{standing.movement}", n=standing.places)


def write_ranking(sheet: WriteOnlyWorksheet, standings: Sequence[Standing], locale: str) -> int:
    flag = t(locale, "chart.red_flag")
    for s in standings:
        sheet.append(
            (
                s.rank,
                s.name,
                s.tickets,
                _percent(sheet, s.reply),
                _percent(sheet, s.handling),
                round(s.rating, 2) if s.rating is not None else None,
                s.score,
                movement(s, locale),
                flag if s.red_flag else None,
            )
        )
    return len(standings)


def write_ledger(
    path: Path,
    rows: Iterable[LedgerRow],
    stats: Stats,
    standings: Sequence[Standing],
    *,
    locale: str,
    tz: ZoneInfo,
    category_name: CategoryNames,
    progress: Progress | None = None,
) -> int:
    """The workbook: the period's tickets, the squads' figures, and the ranking's lines
    given (a lead is given only their own squad's). Returns how many tickets it holds."""
    book = Workbook(write_only=True)
    tickets = _sheet(book, t(locale, "ledger.sheet.tickets"), TICKET_COLUMNS, locale)
    tickets.append(_template_row(tickets))
    _filter(tickets, len(TICKET_COLUMNS), 1)
    squads = _sheet(book, t(locale, "ledger.sheet.squads"), SUMMARY_COLUMNS, locale)
    _filter(squads, len(SUMMARY_COLUMNS), write_summary(squads, stats, locale))
    ranking = _sheet(book, t(locale, "ledger.sheet.ranking"), RANKING_COLUMNS, locale)
    _filter(ranking, len(RANKING_COLUMNS), write_ranking(ranking, standings, locale))
    path.parent.mkdir(parents=True, exist_ok=True)
    template = path.with_name(path.name + ".template")
    partial = path.with_name(path.name + ".part")
    try:
        book.save(template)
        values = ticket_values(rows, locale, tz, category_name)
        count = fill_sheet(template, partial, 1, values, len(TICKET_COLUMNS), progress)
        partial.replace(path)  # a reader never sees half a workbook
    finally:
        template.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return count
