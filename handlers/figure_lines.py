"""How the figures read in the chat: each figure as a typed parameter of a catalog line,
rendered at send time in the reader's language (a whole table in one message is a list of
such lines)."""

from __future__ import annotations

from typing import Any

from models.figures import Figures, Rate
from models.outbox import nested, text_key
from models.periods import Period
from models.ranking import Standing

Line = tuple[str, dict[str, Any]]


def period_param(period: Period) -> dict[str, Any]:
    if period.kind == "month":
        first = period.first_day
        return nested("period.month", {"year": first.year, "month": first.month})
    if period.kind == "week":
        last = period.dates()[-1]
        week = {"start": period.first_day.isoformat(), "end": last.isoformat()}
        return nested("period.week", week)
    return nested("period.day", {"day": period.first_day.isoformat()})


def percent(share: float | None) -> str | None:
    return None if share is None else f"{100 * share:.1f}%"


def rate_param(rate: Rate) -> Any:
    if rate.share is None:
        return text_key("stats.no_data")
    return nested(
        "stats.rate", {"share": percent(rate.share), "kept": rate.kept, "judged": rate.judged}
    )


def short_rate(rate: Rate) -> Any:
    return percent(rate.share) or text_key("stats.no_data")


def duration_param(seconds: int | None) -> Any:
    if seconds is None:
        return text_key("stats.no_data")
    # to the second while it is short; to the minute once minutes are what matter
    return {"duration": seconds if seconds < 600 else round(seconds / 60) * 60}


def rating_param(f: Figures | Standing) -> Any:
    if f.rating is None:
        return text_key("stats.no_ratings")
    count = f.rating_count
    return nested("stats.rating", {"average": f"{f.rating:.1f}", "count": count})


def _common(f: Figures) -> dict[str, Any]:
    first, done = f.first_response, f.resolution
    return {
        "filed": f.filed,
        "open": f.open,
        "resolved": f.resolved,
        "reply_median": duration_param(first.median),
        "reply_p90": duration_param(first.p90),
        "done_median": duration_param(done.median),
        "done_p90": duration_param(done.p90),
        "warnings": f.alerts.get("warning", 0),
        "breaches": f.alerts.get("breach", 0),
        "supervisions": f.alerts.get("supervision", 0),
        "rating": rating_param(f),
    }


def block(f: Figures) -> Line:
    """One squad, or the zone, in full: a line per figure."""
    return (
        "stats.block",
        {
            **_common(f),
            "reply": rate_param(f.reply),
            "handling": rate_param(f.handling),
            "plan": rate_param(f.plan),
            "rework": rate_param(f.rework),
        },
    )


def squad_line(f: Figures) -> Line:
    """One squad in one line, for the zone's table."""
    return (
        "stats.squad_line",
        {
            **_common(f),
            "squad": f.name,
            "reply": short_rate(f.reply),
            "handling": short_rate(f.handling),
            "plan": short_rate(f.plan),
            "rework": short_rate(f.rework),
        },
    )


def movement(standing: Standing) -> Any:
    if standing.movement is None:
        return ""
    return nested(f"ranking.move.{standing.movement}", {"n": standing.places})


def score_text(standing: Standing) -> str:
    return f"{standing.score:.1f}" if standing.score is not None else "-"
