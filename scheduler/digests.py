"""The calendar jobs, in zone time: the morning digest every day and the monthly ranking on
the 1st. APScheduler calls `CalendarJobs.tick` every minute (and the service once at
start); the injected clock decides whether a job is due, so tests move a FakeClock instead
of waiting for 08:30. Each run claims its period in the scheduled-run ledger in the same
transaction as what it queues, so it happens once per period, across restarts and
processes. A job that was due while the bot was down runs when it is back: the digest the
same day, the ranking within the first week of the month."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.clock import Clock
from models.db import is_transient
from models.desk import Desk
from models.digest import queue_digests
from models.quiet_log import QuietLog, problem_key
from models.runs import claim_run, has_run
from models.zone.config import ZoneConfig

log = logging.getLogger(__name__)

RANKING_CATCH_UP_DAYS = 7  # a ranking the bot missed on the 1st goes out until the 7th

# Publishes the ranking of a month (given as its first day) through the outbox, inside the
# transaction that records the run: the ledger row and the messages commit together.
MonthlyRanking = Callable[[Desk, date], None]


def digest_day(zone: ZoneConfig, now: datetime) -> date | None:
    """The zone's today, once its digest time has come; None before then or if switched off."""
    if zone.digest_at is None:
        return None
    local = now.astimezone(zone.tz)
    return local.date() if local.time() >= zone.digest_at else None


def ranking_month(zone: ZoneConfig, now: datetime) -> date | None:
    """The month to rank (its first day), from this month's ranking time on the 1st until a
    week later (a ranking missed by a longer outage, or from before the bot ran, is not
    published weeks late); None otherwise, or if switched off."""
    if zone.monthly_ranking_at is None:
        return None
    local = now.astimezone(zone.tz)
    if local.day > RANKING_CATCH_UP_DAYS or (
        local.day == 1 and local.time() < zone.monthly_ranking_at
    ):
        return None
    return date(local.year - 1, 12, 1) if local.month == 1 else date(local.year, local.month - 1, 1)


def digest_run_key(day: date) -> str:
    return f"digest:{day.isoformat()}"


def ranking_run_key(month: date) -> str:
    return f"monthly_ranking:{month:%Y-%m}"


def send_morning_digest(engine: Engine, clock: Clock, zone: Callable[[Session], ZoneConfig]) -> int:
    """Queue today's digests if they are due and nobody has; returns how many were queued."""
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, clock.now(), zone(session))
        today = digest_day(desk.zone, desk.now)
        if today is None or has_run(session, digest_run_key(today)):
            return 0
        if not claim_run(session, digest_run_key(today), desk.now):
            return 0
        queued = queue_digests(desk, today)
        session.commit()
    log.info("morning digest of %s queued for %d reader(s)", today, queued)
    return queued


def publish_monthly_ranking(
    engine: Engine,
    clock: Clock,
    zone: Callable[[Session], ZoneConfig],
    ranking: MonthlyRanking,
) -> date | None:
    """Call `ranking` for last month if it is due and has not run; returns the month ranked.
    If `ranking` raises, nothing is recorded and the next tick tries again."""
    with Session(engine, expire_on_commit=False) as session:
        desk = Desk(session, clock.now(), zone(session))
        month = ranking_month(desk.zone, desk.now)
        if month is None or has_run(session, ranking_run_key(month)):
            return None
        if not claim_run(session, ranking_run_key(month), desk.now):
            return None
        ranking(desk, month)
        session.commit()
    log.info("monthly ranking of %s published", f"{month:%Y-%m}")
    return month


class CalendarJobs:
    """What runs on the zone's calendar; `tick` is safe to call as often as one likes."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        zone: Callable[[Session], ZoneConfig],
        after_commit: Callable[[], None] = lambda: None,
        monthly_ranking: MonthlyRanking | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.zone = zone
        self.after_commit = after_commit
        self.monthly_ranking = monthly_ranking  # None until a ranking is provided
        self._quiet = QuietLog(log)

    def tick(self) -> None:
        """Run whatever is due; a failure is logged (quietly when repeated) and the next
        tick tries again, since nothing of a failed run was recorded."""
        jobs: dict[str, Callable[[], object]] = {
            "digest": lambda: send_morning_digest(self.engine, self.clock, self.zone)
        }
        ranking = self.monthly_ranking
        if ranking is not None:
            jobs["monthly-ranking"] = lambda: publish_monthly_ranking(
                self.engine, self.clock, self.zone, ranking
            )
        for name, job in jobs.items():
            try:
                done = job()
            except Exception as exc:
                if not is_transient(exc):
                    self._quiet.error(
                        problem_key(name, exc), "%s failed: %s", name, exc, exc_info=exc
                    )
                continue
            if done:
                self.after_commit()
