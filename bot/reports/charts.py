"""The managers' charts as PNG files: the ranking as bars, each day's tickets with their
on-time rates, and the mix of problem categories. Drawn headless on matplotlib's Agg
canvas (no pyplot, no display, no global figure state), with a Chinese font, labelled in
the reader's language. Every chart is WIDTH x HEIGHT pixels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.i18n import t
from bot.reports.fonts import use_chinese_font
from models.figures import Day
from models.periods import Period
from models.ranking import Ranking

WIDTH, HEIGHT, DPI = 1200, 700, 100
BLUE, RED, GREEN, ORANGE, GREY = "#3b6fb6", "#c8322f", "#2e8b57", "#e08a1e", "#9a9a9a"

CategoryNames = Callable[[str, str], str]


def _figure() -> Figure:
    use_chinese_font()
    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def period_name(period: Period, locale: str) -> str:
    if period.kind == "month":
        return t(locale, "period.month", year=period.first_day.year, month=period.first_day.month)
    if period.kind == "week":
        last = period.dates()[-1]
        return t(locale, "period.week", start=period.first_day.isoformat(), end=last.isoformat())
    return t(locale, "period.day", day=period.first_day.isoformat())


def ranking_chart(ranking: Ranking, locale: str, path: Path) -> Path:
    """Ranked squads' scores as horizontal bars, best at the top, the red flag in red; the
    squads not ranked are named beneath the bars."""
    figure = _figure()
    axes = figure.add_subplot(1, 1, 1)
    ranked = [s for s in ranking.standings if s.rank is not None]
    names = [f"{s.rank}. {s.name}" for s in ranked]
    scores = [s.score or 0.0 for s in ranked]
    colours = [RED if s.red_flag else BLUE for s in ranked]
    positions = list(range(len(ranked)))[::-1]
    axes.barh(positions, scores, color=colours)
    axes.set_yticks(positions, names)
    axes.set_xlim(0, 105)
    axes.set_xlabel(t(locale, "chart.score"))
    for y, value, standing in zip(positions, scores, ranked, strict=True):
        label = f"{value:.1f}"
        if standing.red_flag:
            label += "  " + t(locale, "chart.red_flag")
        axes.text(value + 1, y, label, va="center")
    if not ranked:
        axes.text(52, 0.5, t(locale, "ranking.none"), ha="center", va="center")
        axes.set_yticks([])
    axes.set_title(t(locale, "chart.ranking_title", period=period_name(ranking.period, locale)))
    unranked = [s.name for s in ranking.standings if s.rank is None]
    if unranked:
        note = t(
            locale,
            "chart.unranked",
            min=ranking.rules.min_tickets,
            squads="、".join(unranked) if locale == "zh-CN" else ", ".join(unranked),
        )
        figure.text(0.01, 0.01, note, fontsize=8, color=GREY, wrap=True)
    figure.subplots_adjust(left=0.3, right=0.95, top=0.92, bottom=0.14)
    return _save(figure, path)


def daily_chart(days: Sequence[Day], period: Period, locale: str, path: Path) -> Path:
    """Tickets filed each day (bars) and the share of their first replies and handling on
    time (lines, right-hand axis); a day with nothing decided leaves a gap in its line."""
    figure = _figure()
    axes = figure.add_subplot(1, 1, 1)
    x = list(range(len(days)))
    axes.bar(x, [d.filed for d in days], color=BLUE, alpha=0.6, label=t(locale, "chart.filed"))
    axes.set_ylabel(t(locale, "chart.filed"))
    step = max(1, -(-len(days) // 15))  # at most 15 dates under the bars
    axes.set_xticks(x[::step], [f"{d.day.month}/{d.day.day}" for d in days][::step])
    rates = axes.twinx()
    for label, colour, values in (
        ("chart.reply_on_time", GREEN, [d.reply.share for d in days]),
        ("chart.handling_on_time", ORANGE, [d.handling.share for d in days]),
    ):
        shown = [float("nan") if v is None else 100 * v for v in values]
        rates.plot(x, shown, color=colour, marker="o", label=t(locale, label))
    rates.set_ylim(0, 105)
    rates.set_ylabel(t(locale, "chart.on_time_percent"))
    bars, bar_labels = axes.get_legend_handles_labels()
    lines, line_labels = rates.get_legend_handles_labels()
    axes.legend(bars + lines, bar_labels + line_labels, loc="upper left")
    axes.set_title(t(locale, "chart.daily_title", period=period_name(period, locale)))
    figure.subplots_adjust(left=0.07, right=0.93, top=0.92, bottom=0.08)
    return _save(figure, path)


def category_chart(
    mix: Sequence[tuple[str, int]],
    period: Period,
    locale: str,
    category_name: CategoryNames,
    path: Path,
) -> Path:
    """Tickets per category, most frequent at the top, with each one's share."""
    figure = _figure()
    axes = figure.add_subplot(1, 1, 1)
    total = sum(n for _, n in mix) or 1
    positions = list(range(len(mix)))[::-1]
    axes.barh(positions, [n for _, n in mix], color=BLUE)
    axes.set_yticks(positions, [category_name(code, locale) for code, _ in mix])
    for y, (_, n) in zip(positions, mix, strict=True):
        axes.text(n, y, f" {n} ({100 * n / total:.0f}%)", va="center")
    if not mix:
        axes.text(0.5, 0.5, t(locale, "chart.no_tickets"), ha="center", va="center")
        axes.set_yticks([])
    axes.set_xlabel(t(locale, "chart.filed"))
    axes.margins(x=0.15)
    axes.set_title(t(locale, "chart.categories_title", period=period_name(period, locale)))
    figure.subplots_adjust(left=0.22, right=0.95, top=0.92, bottom=0.08)
    return _save(figure, path)
