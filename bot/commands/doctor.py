"""`squadbot doctor`: everything the running bot needs, checked once, one line each.

The settings, the database and its migrations, the Bot API through the proxy and who the
bot is, each alert webhook robot reachable (a HEAD request: no alert is ever posted), every
squad with a lead and a bound group, and whether holidays are known for the next 60 days.
Each line is ✓ or ✗, a failing one naming the setting or command that fixes it; the exit
code is 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.commands.common import open_database, zone_loaded
from bot.commands.help import command_parser
from bot.settings import Settings
from bot.startup import Failure, check_bot_api, masked_url, proxy_for
from models.org import Membership, Person, Role, Squad
from models.sla.calendar import WorkingHours, statutory_data_covers
from models.zone.config import read_zone

HORIZON = 60  # days ahead the holiday calendar must cover
ROBOT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    ok: bool
    text: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.text}"


def _database(settings: Settings) -> tuple[Check, Engine | None]:
    try:
        engine = open_database(settings, create=False, need_zone=True, announce=False)
    except Failure as exc:
        return Check(False, f"database: {exc.message}"), None
    return Check(True, "database reachable, at the newest schema, zone loaded"), engine


async def _bot_api(settings: Settings) -> Check:
    if settings.telegram_token is None:
        return Check(False, "Bot API: no token: set SQUADBOT_TELEGRAM_TOKEN")
    proxy = proxy_for(settings.telegram_api_url, settings.proxy_url)
    via = f" through {masked_url(proxy.url)}" if proxy.url else ""
    try:
        me = await check_bot_api(settings.telegram_token, settings.telegram_api_url, proxy)
    except Failure as exc:
        return Check(False, f"Bot API: {exc.message}")
    return Check(True, f"Bot API at {settings.telegram_api_url}{via}: @{me.username} (id {me.id})")


async def _robots(webhooks: list[dict[str, Any]]) -> list[Check]:
    checks: list[Check] = []
    async with httpx.AsyncClient(timeout=ROBOT_TIMEOUT, trust_env=False) as client:
        for hook in webhooks:
            url = str(hook.get("url") or "")
            name = f"webhook {hook.get('kind', 'json')} {masked_url(url) if url else '(no url)'}"
            try:
                answer = await client.head(url)
            except (httpx.HTTPError, ValueError) as exc:
                checks.append(
                    Check(
                        False,
                        f"{name}: not reachable ({type(exc).__name__}): correct its url under "
                        "`webhooks:` in the zone file",
                    )
                )
                continue
            # a robot answers HEAD as it likes (405, 404): any HTTP answer means reachable
            checks.append(Check(True, f"{name}: reachable (HTTP {answer.status_code})"))
    return checks


def _squads(session: Session) -> list[Check]:
    checks: list[Check] = []
    squads = session.exec(select(Squad).where(col(Squad.active)).order_by(col(Squad.code))).all()
    for squad in squads:
        leads = session.exec(
            select(Person)
            .join(Membership, col(Membership.person_id) == col(Person.id))
            .where(
                Membership.squad_id == squad.id,
                Membership.role == Role.LEAD,
                col(Membership.active),
            )
        ).all()
        problems = []
        if not leads:
            problems.append("no lead: add one under the squad's `lead:` in the zone file")
        elif not any(p.telegram_user_id for p in leads):
            problems.append(
                "the lead has not joined: `squadbot invite --role lead --squad "
                f"{squad.code} --person KEY`"
            )
        if squad.group_chat_id is None:
            problems.append(
                f"no group bound: `squadbot invite --role group --squad {squad.code}`, then "
                "/bind CODE in the group"
            )
        if problems:
            checks.append(Check(False, f"squad {squad.code}: " + "; ".join(problems)))
        else:
            checks.append(Check(True, f"squad {squad.code}: lead and group bound"))
    return checks


def calendar_check(calendar: WorkingHours | None, today: date) -> Check:
    """Whether holidays are known for the next HORIZON days."""
    days = [today + timedelta(days=n) for n in range(HORIZON + 1)]
    if calendar is not None:
        missing = [d for d in days if not calendar.covers(d)]
    else:
        missing = [d for d in days if not statutory_data_covers(d)]
    if not missing:
        return Check(True, f"holiday calendar covers the next {HORIZON} days")
    year = missing[0].year
    advice = (
        f"chinesecalendar has no holidays for {year} (its data ends on "
        f"{missing[0] - timedelta(days=1)}): list {year}'s statutory holidays under "
        "`extra_holidays:` and its make-up working days under `extra_workdays:` in the zone "
        "file (as the State Council publishes them), or upgrade chinesecalendar"
    )
    if calendar is None:
        return Check(True, f"holiday calendar: not used (round the clock); {advice}")
    return Check(False, f"holiday calendar: {advice}")


async def _doctor(settings: Settings) -> list[Check]:
    checks = [Check(True, "settings read")]
    db_check, engine = _database(settings)
    checks.append(db_check)
    checks.append(await _bot_api(settings))
    if engine is None or not zone_loaded(engine):
        return checks
    with Session(engine) as session:
        zone = read_zone(session)
        checks.extend(_squads(session))
    checks.extend(await _robots(zone.webhooks))
    uses_hours = zone.clock == "working_hours" or any(
        targets.clock == "working_hours" for targets in zone.sla.values()
    )
    hours = zone.calendars.get("working_hours")
    today = datetime_now_in(zone.tz)
    checks.append(
        calendar_check(hours if uses_hours and isinstance(hours, WorkingHours) else None, today)
    )
    engine.dispose()
    return checks


def datetime_now_in(tz: Any) -> date:
    from datetime import datetime

    return datetime.now(tz).date()


def cmd_doctor(settings: Settings, _args: argparse.Namespace) -> int:
    checks = asyncio.run(_doctor(settings))
    for check in checks:
        print(check.line())
    return 0 if all(c.ok for c in checks) else 1


def register(sub: Any) -> None:
    command_parser(
        sub,
        "doctor",
        "check the settings, database, Bot API, webhooks, squads and holiday calendar",
        "Check everything the running bot needs, one line each (✓ or ✗ with the setting to "
        "change): the settings, the database and its migrations, the Bot API through the "
        "proxy and who the bot is, each webhook robot reachable (never sends an alert), every "
        "squad with a lead and a bound group, and holidays known for the next 60 days. Exits "
        "0 when every check passes, 1 otherwise.",
        settings=(
            "SQUADBOT_TELEGRAM_TOKEN",
            "SQUADBOT_DATABASE_URL",
            "SQUADBOT_TELEGRAM_API_URL",
            "SQUADBOT_PROXY_URL",
        ),
    ).set_defaults(handler=cmd_doctor)
