"""How the figures read in the chat: each figure as a typed parameter of a catalog line,
rendered at send time in the reader's language (a whole table in one message is a list of
such lines)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from models.figures import Figures, Rate
from models.outbox import lines, nested, text_key
from models.periods import Period
from models.ranking import Ranking, Standing

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


def ranking_lines(found: Ranking, squads: Collection[int] | None) -> list[Line]:
    """The ranking as one message: for the zone (`squads` None) every squad, ranked then
    listed; for a lead (`squads` theirs) their own squads' places. Both name the red flag."""
    rules = found.rules
    weights = rules.weights
    total = weights.reply + weights.handling + weights.satisfaction
    rows: list[Line] = [
        (
            "ranking.title",
            {
                "period": period_param(found.period),
                "reply": f"{100 * weights.reply / total:.0f}",
                "handling": f"{100 * weights.handling / total:.0f}",
                "satisfaction": f"{100 * weights.satisfaction / total:.0f}",
                "min": rules.min_tickets,
            },
        )
    ]
    if squads is not None:
        for s in found.only(squads):
            if s.rank is None:
                params = {"squad": s.name, "tickets": s.tickets, "min": rules.min_tickets}
                rows.append(("ranking.yours_unranked", params))
            else:
                params = {
                    "squad": s.name,
                    "rank": s.rank,
                    "ranked": found.ranked,
                    "score": score_text(s),
                    "move": movement(s),
                }
                rows.append(("ranking.yours", params))
    else:
        for s in found.standings:
            if s.rank is None:
                continue
            params = {
                "rank": s.rank,
                "squad": s.name,
                "score": score_text(s),
                "move": movement(s),
                "tickets": s.tickets,
                "flag": nested("ranking.flag", {}) if s.red_flag else "",
            }
            rows.append(("ranking.line", params))
        if found.ranked == 0:
            rows.append(("ranking.none", {}))
        unranked = [s for s in found.standings if s.rank is None]
        if unranked:
            rows.append(("ranking.unranked_header", {"min": rules.min_tickets}))
            rows += [
                ("ranking.unranked_line", {"squad": s.name, "tickets": s.tickets}) for s in unranked
            ]
    if found.red_flag is not None:
        rows.append(("ranking.red_flag", {"squad": found.red_flag.name}))
    return rows


def message(rows: list[Line]) -> dict[str, Any]:
    """The params of `figures.message`: the rows, one per line."""
    return {"body": lines([nested(key, params) for key, params in rows])}
