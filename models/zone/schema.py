"""What a zone file is: its sections and fields, the values they take, and their defaults.

Format (YAML; every list may be empty or omitted, `zone:` may not)::

    zone:
      code: YZ                  # default ticket-number prefix (letters/digits, max 8)
      name: 扬中经济开发区
      timezone: Asia/Shanghai   # any IANA name
      language: zh-CN           # zh-CN | en
      intake_squad: WINDOW      # squad for enterprises with no project (一窗通办)
      auto_close_after: 3d      # unconfirmed resolutions close themselves
      invite_ttl: 7d
      clock: round_the_clock    # or working_hours
      working_hours: ["09:00-12:00", "13:30-17:30"]
      extra_holidays: []        # ISO dates
      extra_workdays: []
      managers_chat: null       # optional Telegram group id for managers' alerts
      webhooks:                 # optional; secrets never in the file, only the env var name
        - {kind: wecom, url: "https://...", secret_env: SQUADBOT_WECOM_SECRET}
    deadlines:
      default: {response: 10m, handling: 2h, plan: 1d, warn_at: 80%, supervision_after: 1h}
      rules:                    # most specific wins; omitted fields inherit default
        - {category: water, urgency: urgent, response: 5m, handling: 1h}
        - {category: planning_permit, clock: working_hours}   # a rule may count office hours
    categories:
      - {code: water, zh: 临时停水, en: Temporary water outage}
    people:
      - {key: li.ming, name: 李明, phone: "138...", telegram_id: null, language: zh-CN}
    managers:
      - {person: wang.fang, top: true}   # top manager gets the formal supervision notice (督办)
    admins: [li.ming]           # may /invite, /reload the zone and see every ticket in the chat
    squads:
      - {code: PV, name: 光伏项目服务专班, lead: li.ming, members: [zhang.wei], projects: [PV01],
         group_chat_id: null}
    projects:
      - {code: PV01, name: ..., enterprise: ..., prefix: YZ, contacts: [person keys]}
    schedule:                   # optional; zone time, "HH:MM" or off
      digest: "08:30"           # the morning digest to every manager and lead
      monthly_ranking: "09:00"  # the ranking published on the 1st of each month
    alerts:                     # optional; alert storms (after downtime, a holiday, a mass breach)
      storm_threshold: 20       # more alerts of one level than this for one recipient within
      storm_window: 60s         # the window: one digest per level instead of one per ticket
    ranking:                    # optional; the monthly ranking of squads (每月亮榜)
      weights: {reply: 0.4, handling: 0.4, satisfaction: 0.2}
      min_tickets: 5            # fewer tickets in the month: listed, not ranked

Roles come from the file alone: an invite only binds a Telegram account to a person the file
lists in that role, and a role the file no longer lists is switched off when it is applied
(the only role held outside the file is a walk-in enterprise contact with no project).

Unknown fields are refused: a typo such as `leader:` must not silently leave a squad without
its lead. A missing or `null` group_chat_id, telegram_id or person language means "not set
here": a binding or a choice made later in the bot is kept, not wiped.

The classes below are the document once read (`models.zone.parse`) and what is written to
the database (`models.zone.apply`). The YAML field names are the dataclass field names, so
the two cannot drift apart; `models.zone.json_schema` describes the same fields for editors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date, time, timedelta

from models.sla.policy import SlaTargets

LANGUAGES = ("zh-CN", "en")
URGENCIES = ("normal", "urgent")
CLOCKS = ("round_the_clock", "working_hours")
WEBHOOK_KINDS = ("json", "wecom", "dingtalk", "feishu")

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_LANGUAGE = LANGUAGES[0]
DEFAULT_CLOCK = CLOCKS[0]
DEFAULT_AUTO_CLOSE = timedelta(days=3)
DEFAULT_INVITE_TTL = timedelta(days=7)
DEFAULT_WORKING_HOURS = ("09:00-12:00", "13:30-17:30")
DEFAULT_DIGEST_AT = time(8, 30)
DEFAULT_MONTHLY_RANKING_AT = time(9, 0)
DEFAULT_STORM_THRESHOLD = 20
DEFAULT_STORM_WINDOW = timedelta(seconds=60)
OFF = "off"  # a calendar job switched off

# Whole-value patterns (checked with fullmatch).
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PREFIX = re.compile(r"[A-Za-z0-9]{1,8}")
PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
PERIOD = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
TIME_OF_DAY = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class Webhook:
    kind: str
    url: str
    secret_env: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "url": self.url, "secret_env": self.secret_env}


@dataclass(frozen=True)
class ZoneSection:
    code: str
    name: str
    timezone: str
    language: str
    intake_squad: str
    auto_close_after: timedelta
    invite_ttl: timedelta
    clock: str
    working_hours: tuple[str, ...]
    extra_holidays: tuple[date, ...]
    extra_workdays: tuple[date, ...]
    managers_chat: int | None
    webhooks: tuple[Webhook, ...]

    def settings(self) -> dict[str, object]:
        """The JSON-ready values stored as ZoneSetting rows; read back by `models.zone.config`.
        Durations are stored in seconds so a reader never has to re-parse admin text."""
        return {
            "code": self.code,
            "name": self.name,
            "timezone": self.timezone,
            "language": self.language,
            "intake_squad": self.intake_squad,
            "auto_close_after": int(self.auto_close_after.total_seconds()),
            "invite_ttl": int(self.invite_ttl.total_seconds()),
            "clock": self.clock,
            "working_hours": list(self.working_hours),
            "extra_holidays": [d.isoformat() for d in self.extra_holidays],
            "extra_workdays": [d.isoformat() for d in self.extra_workdays],
            "managers_chat": self.managers_chat,
            "webhooks": [w.as_dict() for w in self.webhooks],
        }


@dataclass(frozen=True)
class DeadlineRule:
    category: str | None
    urgency: str | None
    targets: SlaTargets


@dataclass(frozen=True)
class CategoryEntry:
    code: str
    zh: str
    en: str


@dataclass(frozen=True)
class PersonEntry:
    key: str
    name: str
    phone: str | None = None
    telegram_id: int | None = None
    language: str | None = None


@dataclass(frozen=True)
class ManagerEntry:
    person: str
    top: bool = False


@dataclass(frozen=True)
class SquadEntry:
    code: str
    name: str
    lead: str
    members: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    group_chat_id: int | None = None


@dataclass(frozen=True)
class ProjectEntry:
    code: str
    name: str
    enterprise: str
    prefix: str
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleSection:
    """When the calendar jobs run, in zone time; None switches one off."""

    digest: time | None = DEFAULT_DIGEST_AT
    monthly_ranking: time | None = DEFAULT_MONTHLY_RANKING_AT

    def settings(self) -> dict[str, object]:
        """Stored as ZoneSetting rows: "HH:MM", or "off"."""
        return {
            "schedule_digest": schedule_text(self.digest),
            "schedule_monthly_ranking": schedule_text(self.monthly_ranking),
        }


@dataclass(frozen=True)
class AlertsSection:
    """When alerts become a storm: a recipient who would get more than `storm_threshold`
    alerts of one level within `storm_window` gets one digest for them instead."""

    storm_threshold: int = DEFAULT_STORM_THRESHOLD
    storm_window: timedelta = DEFAULT_STORM_WINDOW

    def settings(self) -> dict[str, object]:
        """Stored as ZoneSetting rows; the window in seconds."""
        return {
            "alerts_storm_threshold": self.storm_threshold,
            "alerts_storm_window": int(self.storm_window.total_seconds()),
        }


def schedule_text(at: time | None) -> str:
    return OFF if at is None else at.strftime("%H:%M")


def schedule_time(text: str) -> time | None:
    """ "08:30" -> 08:30, "off" -> None; ValueError for anything else."""
    if text == OFF:
        return None
    match = TIME_OF_DAY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time such as 08:30, or off")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class RankingWeights:
    """How much each promise weighs in a squad's score (models/ranking.py); only the
    proportions matter. A weight of 0 leaves that promise out."""

    reply: float = 0.4
    handling: float = 0.4
    satisfaction: float = 0.2

    def as_dict(self) -> dict[str, float]:
        return {"reply": self.reply, "handling": self.handling, "satisfaction": self.satisfaction}


@dataclass(frozen=True)
class RankingSection:
    weights: RankingWeights = RankingWeights()
    min_tickets: int = 5

    def settings(self) -> dict[str, object]:
        return {"weights": self.weights.as_dict(), "min_tickets": self.min_tickets}


@dataclass(frozen=True)
class ZoneDocument:
    source: str
    zone: ZoneSection
    default_targets: SlaTargets
    rules: tuple[DeadlineRule, ...]
    categories: tuple[CategoryEntry, ...]
    people: tuple[PersonEntry, ...]
    managers: tuple[ManagerEntry, ...]
    squads: tuple[SquadEntry, ...]
    projects: tuple[ProjectEntry, ...]
    schedule: ScheduleSection = ScheduleSection()
    alerts: AlertsSection = AlertsSection()
    admins: tuple[str, ...] = ()
    ranking: RankingSection = RankingSection()


def _fields_of(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


# The fields each mapping of the file accepts.
TOP_FIELDS = frozenset(
    {
        "zone",
        "deadlines",
        "categories",
        "people",
        "managers",
        "admins",
        "squads",
        "projects",
        "schedule",
        "alerts",
        "ranking",
    }
)
ZONE_FIELDS = _fields_of(ZoneSection)
DEADLINES_FIELDS = frozenset({"default", "rules"})
TARGET_FIELDS = frozenset({"response", "handling", "plan", "warn_at", "supervision_after", "clock"})
RULE_FIELDS = TARGET_FIELDS | {"category", "urgency"}
WEBHOOK_FIELDS = _fields_of(Webhook)
CATEGORY_FIELDS = _fields_of(CategoryEntry)
PERSON_FIELDS = _fields_of(PersonEntry)
MANAGER_FIELDS = _fields_of(ManagerEntry)
SQUAD_FIELDS = _fields_of(SquadEntry)
PROJECT_FIELDS = _fields_of(ProjectEntry)
SCHEDULE_FIELDS = _fields_of(ScheduleSection)
ALERTS_FIELDS = _fields_of(AlertsSection)
RANKING_FIELDS = _fields_of(RankingSection)
WEIGHT_FIELDS = _fields_of(RankingWeights)


def period(text: str) -> tuple[time, time]:
    """ "09:00-12:00" as stored after validation -> (09:00, 12:00)."""
    opens, closes = text.split("-")
    return time.fromisoformat(opens), time.fromisoformat(closes)
