"""The monthly ledger (台账) as an .xlsx workbook: every ticket of the period, a summary
row per squad, and the ranking; headers in the reader's language, frozen, with filters and
column widths. Written with openpyxl's write-only workbook, row by row as the database
streams them, so a month of 100k tickets is never held in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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


def write_tickets(
    sheet: WriteOnlyWorksheet,
    rows: Iterable[LedgerRow],
    locale: str,
    tz: ZoneInfo,
    category_name: CategoryNames,
    progress: Progress | None = None,
) -> int:
    kept = {1: t(locale, "ledger.kept"), 0: t(locale, "ledger.missed")}
    urgencies: dict[str, str] = {}
    states: dict[str, str] = {}
    categories: dict[str, str] = {}
    count = 0
    for row in rows:
        if row.category_code not in categories:
            categories[row.category_code] = category_name(row.category_code, locale)
        if row.urgency not in urgencies:
            urgencies[row.urgency] = t(locale, f"urgency.{row.urgency}")
        if row.state not in states:
            states[row.state] = t(locale, f"state.{row.state}")
        sheet.append(
            (
                row.number,
                row.squad,
                row.project,
                row.enterprise,
                categories[row.category_code],
                urgencies[row.urgency],
                states[row.state],
                _local(row.filed, tz),
                _local(row.first_response, tz),
                _local(row.plan_agreed, tz),
                _local(row.resolved, tz),
                _local(row.closed, tz),
                kept.get(row.reply) if row.reply is not None else None,
                kept.get(row.handling) if row.handling is not None else None,
                kept.get(row.plan) if row.plan is not None else None,
                row.owner,
                row.led_by,
                row.rating,
                _short(row.description),
                _short(row.summary),
            )
        )
        count += 1
        if progress is not None and count % 1000 == 0:
            progress(1000)
    if progress is not None and count % 1000:
        progress(count % 1000)
    return count


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
) -> Path:
    """The workbook: the period's tickets, the squads' figures, and the ranking's lines
    given (a lead is given only their own squad's)."""
    book = Workbook(write_only=True)
    tickets = _sheet(book, t(locale, "ledger.sheet.tickets"), TICKET_COLUMNS, locale)
    count = write_tickets(tickets, rows, locale, tz, category_name, progress)
    _filter(tickets, len(TICKET_COLUMNS), count)
    squads = _sheet(book, t(locale, "ledger.sheet.squads"), SUMMARY_COLUMNS, locale)
    _filter(squads, len(SUMMARY_COLUMNS), write_summary(squads, stats, locale))
    ranking = _sheet(book, t(locale, "ledger.sheet.ranking"), RANKING_COLUMNS, locale)
    _filter(ranking, len(RANKING_COLUMNS), write_ranking(ranking, standings, locale))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    book.save(partial)
    partial.replace(path)  # a reader never sees half a workbook
    return path
