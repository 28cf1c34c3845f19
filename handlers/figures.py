"""The managers' figures in the chat: /stats, /ranking, /overdue, /export. Who may read
what is `models.permissions.figures_scope` (managers: the zone; a squad's lead: that
squad), checked on every command; the figures are models' (models/figures.py and
neighbours); the charts and the ledger are drawn by bot/reports and sent through the
outbox as files the row owns. Figures are answered in a private chat, or in the managers'
group to a manager, never in a squad's group where members would read them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from telegram import Update
from telegram.ext import ContextTypes

from bot.reports import charts, export
from handlers.common import command_args
from handlers.figure_lines import Line, block, message, period_param, ranking_lines, squad_line
from handlers.work import Work, work
from models import figures, overdue, ranking
from models.outbox import queue, text_key, time_param
from models.periods import Period, PeriodError, parse_month, parse_period
from models.permissions import FiguresScope, figures_scope

log = logging.getLogger(__name__)

SQUADS_PER_MESSAGE = 12  # squad lines per message, so a zone of 25 squads stays readable
OVERDUE_PER_MESSAGE = 30
DEFAULT_REPORTS = Path("data") / "reports"


# --- who may ask, where ------------------------------------------------------------------


def _scope(update: Update, w: Work) -> FiguresScope | None:
    """The reader's scope, or None after saying why not."""
    if w.actor is None or not w.actor.has_role:
        w.say("start.no_role")
        return None
    scope = figures_scope(w.actor)
    if scope is None:
        w.say("figures.refused")
        return None
    chat = update.effective_chat
    private = chat is not None and chat.type == "private"
    managers_chat = chat is not None and chat.id == w.zone.managers_chat and scope.zone
    if not private and not managers_chat:
        w.say("group.use_private")
        return None
    return scope


def _argument(update: Update) -> str:
    message = update.effective_message
    return command_args(message)[0] if message is not None else ""


def _reports_dir(context: ContextTypes.DEFAULT_TYPE) -> Path:
    found = context.bot_data.get("reports_dir") if context.bot_data is not None else None
    return Path(found) if found is not None else DEFAULT_REPORTS


def _engine(w: Work) -> Engine:
    bind = w.session.get_bind()
    assert isinstance(bind, Engine)
    return bind


def _send_file(w: Work, template: str, params: dict[str, Any], kind: str, path: Path) -> None:
    queue(
        w.session,
        w.desk.now,
        chat_id=w.chat_id,
        template=template,
        locale=w.locale,
        params=params,
        kind=kind,
        local_path=str(path),
    )


def _say_lines(w: Work, rows: Sequence[Line]) -> None:
    w.say("figures.message", message(list(rows)))


# --- /stats --------------------------------------------------------------------------------


async def stats_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    scope = _scope(update, w)
    if scope is None:
        return
    try:
        period = parse_period(_argument(update), w.desk.now, w.zone.tz)
    except PeriodError:
        w.say("usage.stats")
        return
    found = figures.stats(w.session, period, w.desk.now, scope.squad_ids)
    when = period_param(period)
    if scope.zone:
        rows = [squad_line(f) for f in found.squads]
        first = rows[:SQUADS_PER_MESSAGE]
        head: list[Line] = [("stats.title_zone", {"period": when}), block(found.total)]
        _say_lines(w, [*head, ("stats.squads_header", {}), *first])
        for start in range(SQUADS_PER_MESSAGE, len(rows), SQUADS_PER_MESSAGE):
            more = rows[start : start + SQUADS_PER_MESSAGE]
            _say_lines(w, [("stats.more", {"period": when}), *more])
    else:
        body: list[Line] = []
        for f in found.squads:
            body += [("stats.title_squad", {"squad": f.name, "period": when}), block(f)]
        _say_lines(w, body)
    if period.kind != "day":
        await _stats_charts(w, context, period, scope)


async def _stats_charts(
    w: Work, context: ContextTypes.DEFAULT_TYPE, period: Period, scope: FiguresScope
) -> None:
    days = figures.daily(w.session, period, w.desk.now, scope.squad_ids)
    mix = figures.category_mix(w.session, period, scope.squad_ids)
    names = export.namer(figures.category_names(w.session))
    folder = _reports_dir(context)
    tag = f"{period.label}-{uuid.uuid4().hex[:8]}"
    locale = w.locale
    try:
        daily = await asyncio.to_thread(
            charts.daily_chart, days, period, locale, folder / f"daily-{tag}.png"
        )
        mixed = await asyncio.to_thread(
            charts.category_chart, mix, period, locale, names, folder / f"categories-{tag}.png"
        )
    except Exception as exc:  # the figures stand without their pictures
        log.warning("charts for %s could not be drawn: %s", period.label, exc, exc_info=exc)
        w.say("figures.chart_failed")
        return
    when = period_param(period)
    _send_file(w, "stats.chart_daily", {"period": when}, "photo", daily)
    _send_file(w, "stats.chart_categories", {"period": when}, "photo", mixed)


# --- /ranking ------------------------------------------------------------------------------


def month_asked(argument: str, w: Work) -> Period:
    """YYYY-MM, or this month in the zone's time."""
    if argument:
        return parse_month(argument, w.zone.tz)
    return parse_period("month", w.desk.now, w.zone.tz)


async def ranking_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    scope = _scope(update, w)
    if scope is None:
        return
    argument = _argument(update)
    try:
        period = month_asked(argument, w)
    except PeriodError:
        w.say("usage.ranking")
        return
    found = ranking.ranking(w.session, period, w.desk.now, w.zone.ranking)
    _say_lines(w, ranking_lines(found, scope.squad_ids))
    if not scope.zone:
        return  # the chart shows every squad: for the zone's managers
    when = period_param(period)
    path = _reports_dir(context) / f"ranking-{period.label}-{uuid.uuid4().hex[:8]}.png"
    try:
        await asyncio.to_thread(charts.ranking_chart, found, w.locale, path)
    except Exception as exc:
        log.warning("the ranking chart could not be drawn: %s", exc, exc_info=exc)
        w.say("figures.chart_failed")
        return
    _send_file(w, "ranking.chart", {"period": when}, "photo", path)


# --- /overdue ------------------------------------------------------------------------------


async def overdue_command(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    scope = _scope(update, w)
    if scope is None:
        return
    found, total = overdue.overdue(w.session, w.desk.now, scope.squad_ids)
    if not found:
        w.say("overdue.none")
        return
    rows: list[Line] = [
        (
            "overdue.line",
            {
                "number": o.number,
                "squad": o.squad,
                "owner": o.owner or text_key("owner.none"),
                "deadline": text_key(f"deadline.{o.deadline}"),
                "late": {"duration": max(60, round(o.late_s / 60) * 60)},
                "due": time_param(o.due),
            },
        )
        for o in found
    ]
    for start in range(0, len(rows), OVERDUE_PER_MESSAGE):
        chunk = rows[start : start + OVERDUE_PER_MESSAGE]
        head: list[Line] = [("overdue.header", {"count": total})] if start == 0 else []
        _say_lines(w, [*head, *chunk])
    if total > len(found):
        w.say("overdue.more", {"count": total - len(found)})


# --- /export -------------------------------------------------------------------------------


async def export_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    w = work()
    scope = _scope(update, w)
    if scope is None:
        return
    argument = _argument(update)
    try:
        period = month_asked(argument, w)
    except PeriodError:
        w.say("usage.export")
        return
    path = _reports_dir(context) / f"ledger-{period.label}-{uuid.uuid4().hex[:8]}.xlsx"
    # built beside the update's transaction, on a connection of its own, off the event loop
    count = await asyncio.to_thread(
        export.write_workbook,
        _engine(w),
        period,
        w.desk.now,
        path,
        scope=scope.squad_ids,
        rules=w.zone.ranking,
        locale=w.locale,
        tz=w.zone.tz,
    )
    params = {"period": period_param(period), "count": count}
    _send_file(w, "export.caption", params, "document", path)


__all__ = [
    "export_command",
    "overdue_command",
    "ranking_command",
    "stats_command",
]
