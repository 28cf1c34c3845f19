"""The zone file: the one document an admin edits to describe the whole zone.

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
    squads:
      - {code: PV, name: 光伏项目服务专班, lead: li.ming, members: [zhang.wei], projects: [PV01],
         group_chat_id: null}
    projects:
      - {code: PV01, name: ..., enterprise: ..., prefix: YZ, contacts: [person keys]}

The file is parsed with `yaml.compose` rather than `safe_load` so that every problem can be
reported as `file:line: field: message`; the admin editing a 600-line file needs the line,
not a Python traceback. All problems are collected and reported together, and nothing is
written unless the whole file is valid (see `models.zone_apply`).

Text fields take the scalar exactly as written, so `phone: 13812345678` or `code: 0123` are
not mangled into numbers, and durations like `1:30` (a YAML 1.1 sexagesimal number) fail
instead of quietly meaning 90 seconds. Unknown fields are refused: a typo such as `leader:`
must not silently leave a squad without its lead. A missing or `null` group_chat_id, telegram_id
or person language means "not set here": a binding or a choice made later in the bot is
kept, not wiped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, timedelta
from pathlib import Path

import yaml
from sqlalchemy.engine import Engine
from yaml.nodes import Node

from models.db import transaction
from models.sla.policy import DEFAULT_TARGETS, SlaTargets
from models.zone_apply import ApplyReport, apply_zone
from models.zone_reader import (
    CODE,
    ENV_NAME,
    KEY,
    PHONE,
    PREFIX,
    Fields,
    Reader,
    ZoneFileError,
    ZoneProblem,
)

__all__ = [
    "ApplyReport",
    "CategoryEntry",
    "DeadlineRule",
    "ManagerEntry",
    "PersonEntry",
    "ProjectEntry",
    "SquadEntry",
    "Webhook",
    "ZoneDocument",
    "ZoneFileError",
    "ZoneProblem",
    "ZoneSection",
    "apply_zone",
    "load_and_apply",
    "load_zone_file",
    "parse_zone",
]

LANGUAGES = ("zh-CN", "en")
URGENCIES = ("normal", "urgent")
CLOCKS = ("round_the_clock", "working_hours")
WEBHOOK_KINDS = ("json", "wecom", "dingtalk", "feishu")
DEFAULT_WORKING_HOURS = ("09:00-12:00", "13:30-17:30")


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
        """The JSON-ready values stored as ZoneSetting rows; read back by `models.zone`.
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


def _fields_of(cls: type) -> frozenset[str]:
    """The YAML field names are the dataclass field names, so the two cannot drift apart."""
    return frozenset(f.name for f in fields(cls))


_TOP = frozenset({"zone", "deadlines", "categories", "people", "managers", "squads", "projects"})
_ZONE = _fields_of(ZoneSection)
_TARGETS = frozenset({"response", "handling", "plan", "warn_at", "supervision_after", "clock"})
_RULE = _TARGETS | {"category", "urgency"}
_WEBHOOK = _fields_of(Webhook)
_CATEGORY = _fields_of(CategoryEntry)
_PERSON = _fields_of(PersonEntry)
_MANAGER = _fields_of(ManagerEntry)
_SQUAD = _fields_of(SquadEntry)
_PROJECT = _fields_of(ProjectEntry)


def load_zone_file(path: str | Path) -> ZoneDocument:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ZoneProblem(source, None, "", f"cannot read the file: {exc}")
        raise ZoneFileError([problem]) from exc
    return parse_zone(text, source)


def load_and_apply(engine: Engine, path: str | Path) -> ApplyReport:
    """Validate first, then write in one transaction: a bad file changes nothing."""
    document = load_zone_file(path)
    with transaction(engine) as session:
        return apply_zone(session, document)


def parse_zone(text: str, source: str = "<zone>") -> ZoneDocument:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "syntax error"
        raise ZoneFileError([ZoneProblem(source, line, "", f"not valid YAML: {problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ZoneFileError([ZoneProblem(source, None, "", f"not valid YAML: {exc}")]) from exc
    reader = Reader(source)
    if root is None:
        reader.fail(None, "zone", "the file is empty")
        raise ZoneFileError(reader.problems)
    document = _document(reader, root)
    if reader.problems or document is None:
        raise ZoneFileError(reader.problems)
    return document


def _document(r: Reader, root: Node) -> ZoneDocument | None:
    top = r.mapping(root, "", _TOP)
    if top is None:
        return None
    zone_fields = top.section("zone", _ZONE)
    if zone_fields is None:
        if top.value_node("zone") is None:
            top.missing("zone")
        return None
    zone = _zone(zone_fields)
    categories = _categories(top)
    default, rules = _deadlines(top)
    people = _people(top)
    managers = _managers(top)
    projects = _projects(top, zone.code)
    squads = _squads(top)
    r.check_refs(
        {
            "person": {p.key for p in people},
            "project": {p.code for p in projects},
            "category": {c.code for c in categories},
            "squad": {s.code for s in squads},
        }
    )
    r.check_roles_do_not_mix()
    return ZoneDocument(
        r.source, zone, default, rules, categories, people, managers, squads, projects
    )


def _zone(f: Fields) -> ZoneSection:
    timezone = f.text("timezone", default="Asia/Shanghai")
    f.check_timezone("timezone", timezone)
    clock = f.text("clock", default=CLOCKS[0], choices=CLOCKS)
    hours = f.working_hours("working_hours", DEFAULT_WORKING_HOURS)
    holidays = f.dates("extra_holidays")
    workdays = f.dates("extra_workdays")
    clash = sorted(set(holidays) & set(workdays))
    if clash:
        f.fail("extra_workdays", f"{clash[0].isoformat()} is also an extra holiday")
    if clock == "working_hours" and not hours:
        f.fail("working_hours", "the working_hours clock needs at least one period")
    return ZoneSection(
        code=f.text("code", pattern=PREFIX, what="code (letters and digits, up to 8)"),
        name=f.text("name"),
        timezone=timezone,
        language=f.text("language", default="zh-CN", choices=LANGUAGES),
        intake_squad=f.ref("intake_squad", "squad"),
        auto_close_after=f.duration("auto_close_after", timedelta(days=3)),
        invite_ttl=f.duration("invite_ttl", timedelta(days=7)),
        clock=clock,
        working_hours=hours,
        extra_holidays=holidays,
        extra_workdays=workdays,
        managers_chat=f.integer("managers_chat"),
        webhooks=tuple(_webhook(w) for w in f.items("webhooks", _WEBHOOK)),
    )


def _webhook(f: Fields) -> Webhook:
    url = f.text("url")
    if url and not url.startswith(("https://", "http://")):
        f.fail("url", f"{url!r} must start with https:// or http://")
    return Webhook(
        kind=f.text("kind", choices=WEBHOOK_KINDS),
        url=url,
        secret_env=f.optional("secret_env", pattern=ENV_NAME, what="environment variable name"),
    )


def _targets(f: Fields, base: SlaTargets) -> SlaTargets:
    return SlaTargets(
        response=f.duration("response", base.response),
        handling=f.duration("handling", base.handling),
        plan=f.duration("plan", base.plan),
        warn_ratio=f.ratio("warn_at", base.warn_ratio),
        supervision_after=f.duration("supervision_after", base.supervision_after),
        clock=f.optional("clock", choices=CLOCKS) or base.clock,
    )


def _deadlines(top: Fields) -> tuple[SlaTargets, tuple[DeadlineRule, ...]]:
    section = top.section("deadlines", frozenset({"default", "rules"}))
    if section is None:
        return DEFAULT_TARGETS, ()
    default_fields = section.section("default", _TARGETS)
    default = _targets(default_fields, DEFAULT_TARGETS) if default_fields else DEFAULT_TARGETS
    rules: list[DeadlineRule] = []
    seen: dict[tuple[str | None, str | None], int] = {}
    for rule in section.items("rules", _RULE):
        category = rule.ref("category", "category", required=False) or None
        urgency = rule.optional("urgency", choices=URGENCIES)
        if category is None and urgency is None:
            rule.fail("", "a rule needs a category or an urgency; use deadlines.default otherwise")
            continue
        key = (category, urgency)
        if key in seen:
            rule.fail("", f"same category and urgency as the rule at line {seen[key]}")
            continue
        seen[key] = rule.line
        rules.append(DeadlineRule(category, urgency, _targets(rule, default)))
    return default, tuple(rules)


def _categories(top: Fields) -> tuple[CategoryEntry, ...]:
    found: list[CategoryEntry] = []
    for f in top.items("categories", _CATEGORY):
        code = f.unique("code", "category", pattern=CODE)
        found.append(CategoryEntry(code, f.text("zh"), f.text("en")))
    return tuple(found)


def _people(top: Fields) -> tuple[PersonEntry, ...]:
    found: list[PersonEntry] = []
    for f in top.items("people", _PERSON):
        key = f.unique("key", "person", pattern=KEY)
        telegram_id = f.integer("telegram_id")
        if telegram_id is not None:
            f.unique_value("telegram_id", "telegram_id", telegram_id)
        found.append(
            PersonEntry(
                key=key,
                name=f.text("name"),
                phone=f.optional("phone", pattern=PHONE, what="phone number"),
                telegram_id=telegram_id,
                language=f.optional("language", choices=LANGUAGES),
            )
        )
    return tuple(found)


def _managers(top: Fields) -> tuple[ManagerEntry, ...]:
    found: list[ManagerEntry] = []
    for f in top.items("managers", _MANAGER):
        person = f.ref("person", "person", role="staff")
        if person:
            f.unique_value("person", "manager", person)
        found.append(ManagerEntry(person, f.boolean("top", default=False)))
    return tuple(found)


def _squads(top: Fields) -> tuple[SquadEntry, ...]:
    found: list[SquadEntry] = []
    served_by: dict[str, str] = {}
    for f in top.items("squads", _SQUAD):
        code = f.unique("code", "squad", pattern=CODE)
        lead = f.ref("lead", "person", role="staff")
        members = f.refs("members", "person", role="staff")
        if lead and lead in members:
            f.fail("members", f"{lead!r} is already the lead of this squad")
        projects: list[str] = []
        for project, path, node in f.located_refs("projects", "project"):
            if project in served_by:
                f.fail(
                    path,
                    f"project {project!r} is already served by squad {served_by[project]!r}",
                    node,
                )
            projects.append(project)
            served_by.setdefault(project, code)
        group = f.integer("group_chat_id")
        if group is not None:
            f.unique_value("group_chat_id", "group_chat_id", group)
        found.append(SquadEntry(code, f.text("name"), lead, members, tuple(projects), group))
    return tuple(found)


def _projects(top: Fields, zone_code: str) -> tuple[ProjectEntry, ...]:
    found: list[ProjectEntry] = []
    for f in top.items("projects", _PROJECT):
        found.append(
            ProjectEntry(
                code=f.unique("code", "project", pattern=CODE),
                name=f.text("name"),
                enterprise=f.text("enterprise"),
                prefix=f.optional(
                    "prefix", pattern=PREFIX, what="prefix (letters and digits, up to 8)"
                )
                or zone_code,
                contacts=f.refs("contacts", "person", role="enterprise"),
            )
        )
    return tuple(found)
