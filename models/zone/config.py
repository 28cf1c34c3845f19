"""The zone as the running domain sees it: settings, calendar and deadline table in one value.

Read from the ZoneSetting and SlaRule rows written by `models.zone.apply`, never from the
YAML file, so a running bot and the admin's CLI always agree on what is in force. Before any
zone file is loaded the bot still works, on the zone's published promise (10分钟回复、
2小时处理、1天内敲定推进计划), round the clock, in Asia/Shanghai and Chinese.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from models.org import Category, Membership, Person, Project, Role, SlaRule, Squad, ZoneSetting
from models.sla.calendar import BusinessCalendar, RoundTheClock, build_calendar
from models.sla.durations import format_duration
from models.sla.policy import DEFAULT_TARGETS, SlaTargets, resolve_targets
from models.zone.schema import (
    DEFAULT_AUTO_CLOSE,
    DEFAULT_CLOCK,
    DEFAULT_DIGEST_AT,
    DEFAULT_INVITE_TTL,
    DEFAULT_LANGUAGE,
    DEFAULT_MONTHLY_RANKING_AT,
    DEFAULT_STORM_THRESHOLD,
    DEFAULT_STORM_WINDOW,
    DEFAULT_TIMEZONE,
    DEFAULT_WORKING_HOURS,
    RankingSection,
    RankingWeights,
    period,
    schedule_text,
    schedule_time,
)

__all__ = ["ZoneConfig", "describe_org", "mask_phone", "read_zone"]

DEFAULT_CODE = "ZONE"
DEFAULT_INTAKE_SQUAD = "WINDOW"

SlaTable = dict[tuple[str | None, str | None], SlaTargets]


@dataclass
class ZoneConfig:
    code: str = DEFAULT_CODE
    name: str = ""
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    language: str = DEFAULT_LANGUAGE
    intake_squad_code: str = DEFAULT_INTAKE_SQUAD
    auto_close_after: timedelta = DEFAULT_AUTO_CLOSE
    invite_ttl: timedelta = DEFAULT_INVITE_TTL
    calendar: BusinessCalendar = field(default_factory=RoundTheClock)
    managers_chat: int | None = None
    webhooks: list[dict[str, str | None]] = field(default_factory=list)
    sla: SlaTable = field(default_factory=lambda: {(None, None): DEFAULT_TARGETS})
    clock: str = DEFAULT_CLOCK
    working_hours: tuple[str, ...] = DEFAULT_WORKING_HOURS
    calendars: dict[str, BusinessCalendar] = field(default_factory=dict)
    # the calendar jobs, in zone time; None: switched off
    digest_at: time | None = DEFAULT_DIGEST_AT
    monthly_ranking_at: time | None = DEFAULT_MONTHLY_RANKING_AT
    # alert storms: more than this many alerts of one level for one recipient within the
    # window come as one digest (models/alerts.py)
    storm_threshold: int = DEFAULT_STORM_THRESHOLD
    storm_window: timedelta = DEFAULT_STORM_WINDOW
    ranking: RankingSection = field(default_factory=RankingSection)

    def calendar_for(self, targets: SlaTargets) -> BusinessCalendar:
        """A policy may count time its own way; otherwise the zone's clock applies."""
        if targets.clock is None or targets.clock == self.clock:
            return self.calendar
        return self.calendars.get(targets.clock, self.calendar)

    def targets(self, category: str, urgency: str) -> SlaTargets:
        return resolve_targets(self.sla, category, urgency)


def _settings(session: Session) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for row in session.exec(select(ZoneSetting)).all():
        try:
            found[row.key] = json.loads(row.value)
        except ValueError:
            continue  # a hand-edited row must not stop the bot; the default applies
    return found


def _text(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) and value else default


def _seconds(raw: dict[str, Any], key: str, default: timedelta) -> timedelta:
    value = raw.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    return default


def _count(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key)
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
    )


def _schedule(raw: dict[str, Any], key: str, default: time | None) -> time | None:
    value = raw.get(key)
    try:
        return schedule_time(value) if isinstance(value, str) else default
    except ValueError:
        return default  # a hand-edited row must not stop the bot


def _dates(raw: dict[str, Any], key: str) -> frozenset[date]:
    value = raw.get(key)
    return (
        frozenset(date.fromisoformat(d) for d in value) if isinstance(value, list) else frozenset()
    )


def _ranking(raw: dict[str, Any]) -> RankingSection:
    """The ranking's weights as applied from the file; defaults for anything unreadable."""
    value = raw.get("ranking")
    if not isinstance(value, dict):
        return RankingSection()
    given = value.get("weights")
    given = given if isinstance(given, dict) else {}
    base = RankingWeights()

    def weight(name: str) -> float:
        found = given.get(name)
        if isinstance(found, int | float) and not isinstance(found, bool) and found >= 0:
            return float(found)
        return float(getattr(base, name))

    weights = RankingWeights(weight("reply"), weight("handling"), weight("satisfaction"))
    if weights.reply + weights.handling + weights.satisfaction <= 0:
        weights = base
    minimum = value.get("min_tickets")
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
        minimum = RankingSection().min_tickets
    return RankingSection(weights, minimum)


def _sla_table(session: Session) -> SlaTable:
    table: SlaTable = {}
    for rule in session.exec(select(SlaRule)).all():
        table[(rule.category_code, rule.urgency)] = SlaTargets(
            response=timedelta(seconds=rule.response_s),
            handling=timedelta(seconds=rule.handling_s),
            plan=timedelta(seconds=rule.plan_s),
            warn_ratio=rule.warn_ratio,
            supervision_after=timedelta(seconds=rule.supervision_s),
            clock=rule.clock,
        )
    table.setdefault((None, None), DEFAULT_TARGETS)
    return table


def read_zone(session: Session) -> ZoneConfig:
    raw = _settings(session)
    tz = ZoneInfo(_text(raw, "timezone", DEFAULT_TIMEZONE))
    clock = _text(raw, "clock", DEFAULT_CLOCK)
    hours_raw = raw.get("working_hours")
    hours = tuple(hours_raw) if isinstance(hours_raw, list) and hours_raw else DEFAULT_WORKING_HOURS
    calendars: dict[str, BusinessCalendar] = {
        mode: build_calendar(
            mode,
            tz,
            [period(h) for h in hours],
            _dates(raw, "extra_holidays"),
            _dates(raw, "extra_workdays"),
        )
        for mode in ("round_the_clock", "working_hours")
    }
    calendar = calendars.get(clock) or calendars["round_the_clock"]
    chat = raw.get("managers_chat")
    hooks = raw.get("webhooks")
    return ZoneConfig(
        code=_text(raw, "code", DEFAULT_CODE),
        name=_text(raw, "name", ""),
        tz=tz,
        language=_text(raw, "language", DEFAULT_LANGUAGE),
        intake_squad_code=_text(raw, "intake_squad", DEFAULT_INTAKE_SQUAD),
        auto_close_after=_seconds(raw, "auto_close_after", DEFAULT_AUTO_CLOSE),
        invite_ttl=_seconds(raw, "invite_ttl", DEFAULT_INVITE_TTL),
        calendar=calendar,
        managers_chat=chat if isinstance(chat, int) and not isinstance(chat, bool) else None,
        webhooks=[dict(h) for h in hooks if isinstance(h, dict)] if isinstance(hooks, list) else [],
        sla=_sla_table(session),
        clock=clock,
        working_hours=hours,
        calendars=calendars,
        digest_at=_schedule(raw, "schedule_digest", DEFAULT_DIGEST_AT),
        monthly_ranking_at=_schedule(raw, "schedule_monthly_ranking", DEFAULT_MONTHLY_RANKING_AT),
        storm_threshold=_count(raw, "alerts_storm_threshold", DEFAULT_STORM_THRESHOLD),
        storm_window=_seconds(raw, "alerts_storm_window", DEFAULT_STORM_WINDOW),
        ranking=_ranking(raw),
    )


def mask_phone(phone: str | None) -> str | None:
    """Phone numbers of enterprise staff are personal data: an org listing pasted into a
    chat must not leak them, but the ends are enough for an admin to tell two apart."""
    if not phone:
        return None
    digits = phone.replace(" ", "").replace("-", "")
    n = len(digits)
    head, tail = (3, 4) if n >= 11 else (2, 2) if n >= 7 else (0, min(2, n // 3))
    return digits[:head] + "*" * (n - head - tail) + digits[n - tail :]


def _masked_url(url: str | None) -> str | None:
    """WeCom and Feishu robots carry their key in the URL, so only the host and path show."""
    if not url:
        return None
    parts = urlsplit(url)
    hidden = "?…" if parts.query else ""
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}{hidden}"


def _targets_json(category: str | None, urgency: str | None, t: SlaTargets) -> dict[str, Any]:
    return {
        "category": category,
        "urgency": urgency,
        "response": format_duration(t.response),
        "handling": format_duration(t.handling),
        "plan": format_duration(t.plan),
        "warn_at": f"{round(t.warn_ratio * 100)}%",
        "supervision_after": format_duration(t.supervision_after),
        "clock": t.clock or "zone",
    }


def describe_org(session: Session) -> dict[str, Any]:
    """Everything `squadbot org show --json` prints; active rows only, phones masked."""
    zone = read_zone(session)
    squads = {s.id: s for s in session.exec(select(Squad).where(col(Squad.active))).all()}
    projects = {p.id: p for p in session.exec(select(Project).where(col(Project.active))).all()}
    people = {p.id: p for p in session.exec(select(Person).order_by(col(Person.key))).all()}
    memberships = session.exec(
        select(Membership).where(col(Membership.active)).order_by(col(Membership.id))
    ).all()

    def keys(role: str, *, squad_id: int | None = None, project_id: int | None = None) -> list[str]:
        return sorted(
            people[m.person_id].key
            for m in memberships
            if m.role == role
            and (squad_id is None or m.squad_id == squad_id)
            and (project_id is None or m.project_id == project_id)
        )

    roles: dict[int | None, list[str]] = {}
    for m in memberships:
        where = squads.get(m.squad_id) if m.squad_id else projects.get(m.project_id)
        label = m.role if where is None else f"{m.role}:{where.code}"
        if m.role == Role.MANAGER and m.is_top:
            label = "manager:top"
        roles.setdefault(m.person_id, []).append(label)

    return {
        "zone": {
            "code": zone.code,
            "name": zone.name,
            "timezone": zone.tz.key,
            "language": zone.language,
            "intake_squad": zone.intake_squad_code,
            "clock": zone.clock,
            "working_hours": list(zone.working_hours),
            "auto_close_after": format_duration(zone.auto_close_after),
            "invite_ttl": format_duration(zone.invite_ttl),
            "managers_chat_bound": zone.managers_chat is not None,
            "schedule": {
                "digest": schedule_text(zone.digest_at),
                "monthly_ranking": schedule_text(zone.monthly_ranking_at),
            },
            "alerts": {
                "storm_threshold": zone.storm_threshold,
                "storm_window": format_duration(zone.storm_window),
            },
            "webhooks": [
                {
                    "kind": h.get("kind"),
                    "url": _masked_url(h.get("url")),
                    "secret_env": h.get("secret_env"),
                }
                for h in zone.webhooks
            ],
        },
        "projects": [
            {
                "code": p.code,
                "name": p.name,
                "enterprise": p.enterprise,
                "prefix": p.number_prefix,
                "squad": squads[p.squad_id].code if p.squad_id in squads else None,
                "contacts": keys(Role.ENTERPRISE, project_id=p.id),
            }
            for p in sorted(projects.values(), key=lambda p: p.code)
        ],
        "squads": [
            {
                "code": s.code,
                "name": s.name,
                "intake": s.is_intake,
                "lead": keys(Role.LEAD, squad_id=s.id),
                "members": keys(Role.MEMBER, squad_id=s.id),
                "projects": sorted(p.code for p in projects.values() if p.squad_id == s.id),
                "group_bound": s.group_chat_id is not None,
            }
            for s in sorted(squads.values(), key=lambda s: s.code)
        ],
        "people": [
            {
                "key": p.key,
                "name": p.name,
                "phone": mask_phone(p.phone),
                "language": p.language,
                "roles": sorted(roles.get(p.id, [])),
                "telegram_bound": p.telegram_user_id is not None,
                "from_file": p.from_file,
            }
            for p in people.values()
        ],
        "managers": [
            {"person": people[m.person_id].key, "name": people[m.person_id].name, "top": m.is_top}
            for m in memberships
            if m.role == Role.MANAGER
        ],
        "admins": sorted(people[m.person_id].key for m in memberships if m.role == Role.ADMIN),
        "categories": [
            {"code": c.code, "zh": c.name_zh, "en": c.name_en}
            for c in session.exec(
                select(Category).where(col(Category.active)).order_by(col(Category.position))
            ).all()
        ],
        "deadlines": [
            _targets_json(category, urgency, targets)
            for (category, urgency), targets in sorted(
                zone.sla.items(), key=lambda item: (item[0][0] or "", item[0][1] or "")
            )
        ],
    }
