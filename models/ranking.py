"""The monthly ranking of squads (每月亮榜) and its rotating red flag (流动红旗).

A squad's score, out of 100, is the weighted mean of what it has figures for:

    reply         share of first replies on time       (models/promises.py)
    handling      share of problems handled on time
    satisfaction  average rating / 5

with the weights of the zone file's `ranking.weights` (default 0.4, 0.4, 0.2). A part the
squad has no figure for (no rating yet, say) is left out and the other weights count in
proportion, rather than scoring it as nought. Squads are ordered by score, then by the
number of tickets (more work done at the same standard ranks higher), then by code so the
order is always the same. A squad with fewer than `ranking.min_tickets` tickets filed in
the month is listed but not ranked. The red flag goes to the first-ranked squad. Movement
compares each rank with the month before: up, down, the same, or new (not ranked then).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from models.figures import Figures, Rate, Scope, cohort, squads_in
from models.periods import Period
from models.zone.schema import RankingSection, RankingWeights

STARS = 5


@dataclass(frozen=True)
class Standing:
    squad_id: int
    code: str
    name: str
    tickets: int
    reply: Rate
    handling: Rate
    rating: float | None
    rating_count: int
    score: float | None  # None: nothing to score yet
    rank: int | None  # None: not ranked (too few tickets, or nothing to score)
    previous: int | None  # the rank the month before, if ranked then
    red_flag: bool = False

    @property
    def movement(self) -> str | None:
        """up | down | same | new; None when not ranked this month."""
        if self.rank is None:
            return None
        if self.previous is None:
            return "new"
        if self.rank < self.previous:
            return "up"
        return "down" if self.rank > self.previous else "same"

    @property
    def places(self) -> int:
        """How many places up or down (0 when the same, new or not ranked)."""
        if self.rank is None or self.previous is None:
            return 0
        return abs(self.previous - self.rank)


@dataclass(frozen=True)
class Ranking:
    period: Period
    rules: RankingSection
    standings: list[Standing]  # ranked first, in rank order; then the unranked, by code

    @property
    def red_flag(self) -> Standing | None:
        return next((s for s in self.standings if s.red_flag), None)

    @property
    def ranked(self) -> int:
        return sum(1 for s in self.standings if s.rank is not None)

    def only(self, scope: Scope) -> list[Standing]:
        return [s for s in self.standings if scope is None or s.squad_id in scope]


def score(figures: Figures, weights: RankingWeights) -> float | None:
    parts: list[tuple[float, float]] = []
    if figures.reply.share is not None:
        parts.append((weights.reply, figures.reply.share))
    if figures.handling.share is not None:
        parts.append((weights.handling, figures.handling.share))
    if figures.rating is not None:
        parts.append((weights.satisfaction, figures.rating / STARS))
    total = sum(weight for weight, _ in parts)
    if total <= 0:
        return None
    # rounded so that equal standards compare equal, whatever order the sums were taken in
    return round(100 * sum(weight * value for weight, value in parts) / total, 2)


def _ranks(
    session: Session, period: Period, now: datetime, rules: RankingSection
) -> tuple[dict[int, Figures], dict[int, float | None], dict[int, int]]:
    found = cohort(session, period, now, None)
    scores = {sid: score(f, rules.weights) for sid, f in found.items()}
    codes = {s.id: s.code for s in squads_in(session, None)}
    eligible = [
        sid for sid, f in found.items() if f.filed >= rules.min_tickets and scores[sid] is not None
    ]
    eligible.sort(key=lambda sid: (-(scores[sid] or 0.0), -found[sid].filed, codes.get(sid, "")))
    return found, scores, {sid: n for n, sid in enumerate(eligible, start=1)}


def ranking(session: Session, period: Period, now: datetime, rules: RankingSection) -> Ranking:
    """Every squad of the zone (active, or with tickets this month), ranked or listed."""
    found, scores, ranks = _ranks(session, period, now, rules)
    _, _, before = _ranks(session, period.previous(), now, rules)
    standings: list[Standing] = []
    for squad in squads_in(session, None):
        sid = squad.id
        assert sid is not None
        if not squad.active and sid not in found:
            continue
        f = found.get(sid) or Figures(sid, squad.code, squad.name)
        rank = ranks.get(sid)
        standings.append(
            Standing(
                squad_id=sid,
                code=squad.code,
                name=squad.name,
                tickets=f.filed,
                reply=f.reply,
                handling=f.handling,
                rating=f.rating,
                rating_count=f.rating_count,
                score=scores.get(sid),
                rank=rank,
                previous=before.get(sid),
                red_flag=rank == 1,
            )
        )
    standings.sort(key=lambda s: (s.rank is None, s.rank or 0, s.code))
    return Ranking(period, rules, standings)
