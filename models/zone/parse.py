"""Parsing a zone file: YAML text in, a checked `ZoneDocument` out, or every problem at once.

The file is parsed with `yaml.compose` rather than `safe_load` so that every problem can be
reported as `file:line: field: message`; the admin editing a 600-line file needs the line,
not a Python traceback. All problems are collected and reported together, and nothing is
written unless the whole file is valid (see `models.zone.load`).

Text fields take the scalar exactly as written, so `phone: 13812345678` or `code: 0123` are
not mangled into numbers, and durations like `1:30` (a YAML 1.1 sexagesimal number) fail
instead of quietly meaning 90 seconds. What the fields are and mean: `models.zone.schema`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml
from yaml.nodes import Node

from models.sla.policy import DEFAULT_TARGETS, SlaTargets
from models.zone.reader import Fields, Reader, ZoneFileError, ZoneProblem
from models.zone.schema import (
    ALERTS_FIELDS,
    CATEGORY_FIELDS,
    CLOCKS,
    CODE,
    DEADLINES_FIELDS,
    DEFAULT_AUTO_CLOSE,
    DEFAULT_CLOCK,
    DEFAULT_INVITE_TTL,
    DEFAULT_LANGUAGE,
    DEFAULT_TIMEZONE,
    DEFAULT_WORKING_HOURS,
    ENV_NAME,
    KEY,
    LANGUAGES,
    MANAGER_FIELDS,
    PERSON_FIELDS,
    PHONE,
    PREFIX,
    PROJECT_FIELDS,
    RANKING_FIELDS,
    RULE_FIELDS,
    SCHEDULE_FIELDS,
    SQUAD_FIELDS,
    TARGET_FIELDS,
    TOP_FIELDS,
    URGENCIES,
    WEBHOOK_FIELDS,
    WEBHOOK_KINDS,
    WEIGHT_FIELDS,
    ZONE_FIELDS,
    AlertsSection,
    CategoryEntry,
    DeadlineRule,
    ManagerEntry,
    PersonEntry,
    ProjectEntry,
    RankingSection,
    RankingWeights,
    ScheduleSection,
    SquadEntry,
    Webhook,
    ZoneDocument,
    ZoneSection,
)

__all__ = ["load_zone_file", "parse_zone"]


def load_zone_file(path: str | Path) -> ZoneDocument:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = ZoneProblem(source, None, "", f"cannot read the file: {exc}")
        raise ZoneFileError([problem]) from exc
    return parse_zone(text, source)


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
    top = r.mapping(root, "", TOP_FIELDS)
    if top is None:
        return None
    zone_fields = top.section("zone", ZONE_FIELDS)
    if zone_fields is None:
        if top.value_node("zone") is None:
            top.missing("zone")
        return None
    zone = _zone(zone_fields)
    categories = _categories(top)
    default, rules = _deadlines(top)
    people = _people(top)
    managers = _managers(top)
    admins = top.refs("admins", "person", role="staff")
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
    schedule = _schedule(top)
    alerts = _alerts(top)
    ranking = _ranking(top)
    return ZoneDocument(
        r.source,
        zone,
        default,
        rules,
        categories,
        people,
        managers,
        squads,
        projects,
        schedule,
        alerts,
        admins,
        ranking,
    )


def _alerts(top: Fields) -> AlertsSection:
    section = top.section("alerts", ALERTS_FIELDS)
    default = AlertsSection()
    if section is None:
        return default
    threshold = section.integer("storm_threshold")
    if threshold is None:
        threshold = default.storm_threshold
    elif threshold < 1:
        section.fail("storm_threshold", "must be 1 or more")
        threshold = default.storm_threshold
    window = section.duration("storm_window", default.storm_window)
    if window < timedelta(seconds=1):
        section.fail("storm_window", "must be at least 1s")
        window = default.storm_window
    return AlertsSection(storm_threshold=threshold, storm_window=window)


def _schedule(top: Fields) -> ScheduleSection:
    section = top.section("schedule", SCHEDULE_FIELDS)
    if section is None:
        return ScheduleSection()
    default = ScheduleSection()
    return ScheduleSection(
        digest=section.time_of_day("digest", default.digest),
        monthly_ranking=section.time_of_day("monthly_ranking", default.monthly_ranking),
    )


def _zone(f: Fields) -> ZoneSection:
    timezone = f.text("timezone", default=DEFAULT_TIMEZONE)
    f.check_timezone("timezone", timezone)
    clock = f.text("clock", default=DEFAULT_CLOCK, choices=CLOCKS)
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
        language=f.text("language", default=DEFAULT_LANGUAGE, choices=LANGUAGES),
        intake_squad=f.ref("intake_squad", "squad"),
        auto_close_after=f.duration("auto_close_after", DEFAULT_AUTO_CLOSE),
        invite_ttl=f.duration("invite_ttl", DEFAULT_INVITE_TTL),
        clock=clock,
        working_hours=hours,
        extra_holidays=holidays,
        extra_workdays=workdays,
        managers_chat=f.integer("managers_chat"),
        webhooks=tuple(_webhook(w) for w in f.items("webhooks", WEBHOOK_FIELDS)),
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
    section = top.section("deadlines", DEADLINES_FIELDS)
    if section is None:
        return DEFAULT_TARGETS, ()
    default_fields = section.section("default", TARGET_FIELDS)
    default = _targets(default_fields, DEFAULT_TARGETS) if default_fields else DEFAULT_TARGETS
    rules: list[DeadlineRule] = []
    seen: dict[tuple[str | None, str | None], int] = {}
    for rule in section.items("rules", RULE_FIELDS):
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
    for f in top.items("categories", CATEGORY_FIELDS):
        code = f.unique("code", "category", pattern=CODE)
        found.append(CategoryEntry(code, f.text("zh"), f.text("en")))
    return tuple(found)


def _people(top: Fields) -> tuple[PersonEntry, ...]:
    found: list[PersonEntry] = []
    for f in top.items("people", PERSON_FIELDS):
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
    for f in top.items("managers", MANAGER_FIELDS):
        person = f.ref("person", "person", role="staff")
        if person:
            f.unique_value("person", "manager", person)
        found.append(ManagerEntry(person, f.boolean("top", default=False)))
    return tuple(found)


def _squads(top: Fields) -> tuple[SquadEntry, ...]:
    found: list[SquadEntry] = []
    served_by: dict[str, str] = {}
    for f in top.items("squads", SQUAD_FIELDS):
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
    for f in top.items("projects", PROJECT_FIELDS):
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


def _ranking(top: Fields) -> RankingSection:
    section = top.section("ranking", RANKING_FIELDS)
    if section is None:
        return RankingSection()
    base = RankingWeights()
    weights = base
    found = section.section("weights", WEIGHT_FIELDS)
    if found is not None:
        weights = RankingWeights(
            reply=found.number("reply", base.reply),
            handling=found.number("handling", base.handling),
            satisfaction=found.number("satisfaction", base.satisfaction),
        )
        if weights.reply + weights.handling + weights.satisfaction <= 0:
            found.fail("", "at least one weight must be more than 0")
    minimum = section.integer("min_tickets")
    if minimum is not None and minimum < 0:
        section.fail("min_tickets", f"{minimum} must be 0 or more")
        minimum = None
    return RankingSection(weights, RankingSection().min_tickets if minimum is None else minimum)
