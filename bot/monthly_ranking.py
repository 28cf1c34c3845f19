"""Publishing the month's ranking (每月亮榜) on the 1st: what `scheduler.digests` calls,
inside the transaction that records the month's run, so the messages and the record commit
together and the ranking goes out once. Every manager (and the managers' group) gets the
whole ranking with its chart, each squad's lead their own squads' places; each in their
language. It stands here, in the running bot, because it draws a chart."""

from __future__ import annotations

import logging
import uuid
from datetime import date
from pathlib import Path

from sqlmodel import col, select

from bot.reports.charts import ranking_chart
from handlers.figure_lines import message, period_param, ranking_lines
from models.desk import Desk
from models.org import Membership, Person, Role
from models.outbox import enqueue
from models.people import managers
from models.periods import month_period
from models.ranking import Ranking, ranking

log = logging.getLogger(__name__)


class MonthlyRanking:
    """The hook: `publish(desk, month)` for the month starting on that day."""

    def __init__(self, reports_dir: Path) -> None:
        self.reports_dir = reports_dir

    def __call__(self, desk: Desk, month: date) -> None:
        period = month_period(month.year, month.month, desk.zone.tz)
        found = ranking(desk.session, period, desk.now, desk.zone.ranking)
        key = f"monthly-ranking:{period.label}"
        charts: dict[str, Path | None] = {}
        try:
            zone_readers = managers(desk.session)
            for manager in zone_readers:
                if manager.telegram_user_id is not None:
                    locale = desk.locale_of(manager)
                    self._post(desk, found, manager.telegram_user_id, locale, charts, key)
            if desk.zone.managers_chat is not None:
                chat = desk.zone.managers_chat
                self._post(desk, found, chat, desk.zone.language, charts, key)
            already = {m.id for m in zone_readers}
            for lead, squads in self._leads(desk):
                if lead.telegram_user_id is None or lead.id in already:
                    continue
                enqueue(
                    desk.session,
                    desk.now,
                    chat_id=lead.telegram_user_id,
                    template="figures.message",
                    locale=desk.locale_of(lead),
                    params=message(ranking_lines(found, squads)),
                    dedupe_key=f"{key}:lead:{lead.id}",
                )
        finally:
            for chart in charts.values():  # each row has its own copy
                if chart is not None:
                    chart.unlink(missing_ok=True)

    def _post(
        self,
        desk: Desk,
        found: Ranking,
        chat_id: int,
        locale: str,
        charts: dict[str, Path | None],
        key: str,
    ) -> None:
        enqueue(
            desk.session,
            desk.now,
            chat_id=chat_id,
            template="figures.message",
            locale=locale,
            params=message(ranking_lines(found, None)),
            dedupe_key=f"{key}:{chat_id}",
        )
        if locale not in charts:
            charts[locale] = self._chart(found, locale)
        chart = charts[locale]
        if chart is None:
            return
        # each row owns its file, and removes it once sent: one copy per recipient
        copy = chart.with_name(f"{chart.stem}-{chat_id}{chart.suffix}")
        copy.write_bytes(chart.read_bytes())
        enqueue(
            desk.session,
            desk.now,
            chat_id=chat_id,
            template="ranking.chart",
            locale=locale,
            params={"period": period_param(found.period)},
            kind="photo",
            local_path=str(copy),
            dedupe_key=f"{key}:{chat_id}:chart",
        )

    def _chart(self, found: Ranking, locale: str) -> Path | None:
        name = f"ranking-{found.period.label}-{locale}-{uuid.uuid4().hex[:8]}.png"
        path = self.reports_dir / name
        try:
            return ranking_chart(found, locale, path)
        except Exception as exc:  # the ranking is published without its picture
            log.warning("the monthly ranking chart could not be drawn: %s", exc, exc_info=exc)
            return None

    @staticmethod
    def _leads(desk: Desk) -> list[tuple[Person, set[int]]]:
        """Each squad lead with the squads they lead."""
        rows = desk.session.exec(
            select(Person, Membership.squad_id)
            .join(Membership, col(Membership.person_id) == col(Person.id))
            .where(Membership.role == Role.LEAD, col(Membership.active))
        ).all()
        found: dict[int, tuple[Person, set[int]]] = {}
        for person, squad_id in rows:
            if person.id is None or squad_id is None:
                continue
            found.setdefault(person.id, (person, set()))[1].add(squad_id)
        return list(found.values())
