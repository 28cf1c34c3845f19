"""A JSON Schema of the zone file, built from `models.zone.schema`, for editors.

Committed as docs/zone.schema.json and printed by `squadbot org schema`; a test keeps the
committed file equal to what `json_schema_text()` builds, and building raises if a mapping
here lists other fields than the reader accepts.

The schema is advisory: the reader stays the judge of a file (references, duplicates, time
zones and overlapping hours are beyond a schema). Codes, keys and phones may be written
unquoted, so they take a YAML number too; every optional field may be null, meaning "not
set here".
"""

from __future__ import annotations

import json
import re
from datetime import time, timedelta
from typing import Any

from models.sla.durations import format_duration
from models.sla.policy import DEFAULT_TARGETS
from models.zone.schema import (
    ALERTS_FIELDS,
    CATEGORY_FIELDS,
    CLOCKS,
    CODE,
    DEADLINES_FIELDS,
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
    ENV_NAME,
    KEY,
    LANGUAGES,
    MANAGER_FIELDS,
    OFF,
    PERIOD,
    PERSON_FIELDS,
    PHONE,
    PREFIX,
    PROJECT_FIELDS,
    RANKING_FIELDS,
    RULE_FIELDS,
    SCHEDULE_FIELDS,
    SQUAD_FIELDS,
    TARGET_FIELDS,
    TIME_OF_DAY,
    TOP_FIELDS,
    URGENCIES,
    WEBHOOK_FIELDS,
    WEBHOOK_KINDS,
    WEIGHT_FIELDS,
    ZONE_FIELDS,
    RankingSection,
    schedule_text,
)

__all__ = ["json_schema", "json_schema_text"]

Schema = dict[str, Any]

_DURATION = (
    r"^\s*(?:[0-9]+|(?=[0-9])(?:[0-9]+\s*[dD]\s*)?(?:[0-9]+\s*[hH]\s*)?"
    r"(?:[0-9]+\s*[mM]\s*)?(?:[0-9]+\s*[sS]\s*)?)\s*$"
)
_RATIO = r"^\s*(?:[0-9]+(?:\.[0-9]*)?\s*%|0*\.[0-9]+)\s*$"


def _whole(pattern: re.Pattern[str]) -> str:
    return f"^(?:{pattern.pattern})$"


def _text(
    description: str, pattern: re.Pattern[str] | None = None, *, number: bool = False
) -> Schema:
    found: Schema = {"type": ["string", "integer"] if number else "string"}
    if pattern is not None:
        found["pattern"] = _whole(pattern)
    found["description"] = description
    return found


def _choice(description: str, choices: tuple[str, ...], default: str | None = None) -> Schema:
    found: Schema = {"type": "string", "enum": list(choices), "description": description}
    return found if default is None else {**found, "default": default}


def _duration(description: str, default: timedelta | None = None) -> Schema:
    found: Schema = {
        "type": ["string", "integer"],
        "pattern": _DURATION,
        "minimum": 1,
        "description": f"{description}: 90s, 10m, 2h, 1d, 1h30m; a bare number is seconds",
    }
    return found if default is None else {**found, "default": format_duration(default)}


def _ratio(default: float | None) -> Schema:
    found: Schema = {
        "type": ["string", "number"],
        "pattern": _RATIO,
        "exclusiveMinimum": 0,
        "exclusiveMaximum": 1,
        "description": "when to warn, as a share of the time allowed: 80% or 0.8",
    }
    return found if default is None else {**found, "default": f"{round(default * 100)}%"}


def _integer(description: str) -> Schema:
    return {"type": "integer", "description": description}


def _list(items: Schema, description: str, *, unique: bool = False) -> Schema:
    found: Schema = {"type": "array", "items": items, "description": description}
    return {**found, "uniqueItems": True} if unique else found


def _ref(description: str) -> Schema:
    return _text(description, number=True)


def _nullable(schema: Schema) -> Schema:
    kind = schema["type"]
    kinds = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    if "enum" in schema:
        return {**schema, "type": kinds, "enum": [*schema["enum"], None]}
    return {**schema, "type": kinds}


def _object(
    allowed: frozenset[str],
    description: str,
    properties: dict[str, Schema],
    required: tuple[str, ...] = (),
) -> Schema:
    """A mapping of the file; raises if its fields differ from those the reader accepts.
    Optional fields may be null: the reader takes null as "not given"."""
    if set(properties) != allowed or not set(required) <= allowed:
        raise ValueError(f"schema fields {sorted(properties)} are not {sorted(allowed)}")
    found: Schema = {"type": "object", "description": description, "additionalProperties": False}
    if required:
        found["required"] = list(required)
    found["properties"] = {
        name: value if name in required else _nullable(value) for name, value in properties.items()
    }
    return found


def _targets(*, with_defaults: bool) -> dict[str, Schema]:
    """The fields of a promise; a rule shows no defaults, since it inherits the zone's."""
    t = DEFAULT_TARGETS

    def shown(value: timedelta) -> timedelta | None:
        return value if with_defaults else None

    return {
        "response": _duration("time allowed for the first reply", shown(t.response)),
        "handling": _duration("time allowed to resolve the problem", shown(t.handling)),
        "plan": _duration("time allowed to agree a plan, when one is asked", shown(t.plan)),
        "warn_at": _ratio(t.warn_ratio if with_defaults else None),
        "supervision_after": _duration(
            "from a breach to the formal supervision notice (督办)", shown(t.supervision_after)
        ),
        "clock": _choice("count this promise by another clock than the zone's", CLOCKS),
    }


def _zone_section() -> Schema:
    day = {"type": "string", "format": "date", "description": "an ISO date such as 2026-10-01"}
    hours = {"type": "string", "pattern": _whole(PERIOD), "description": "such as 09:00-12:00"}
    webhook = _object(
        WEBHOOK_FIELDS,
        "an alert webhook",
        {
            "kind": _choice("payload format", WEBHOOK_KINDS),
            "url": {"type": "string", "pattern": "^https?://", "description": "where to post"},
            "secret_env": _text("environment variable holding the secret", ENV_NAME),
        },
        required=("kind", "url"),
    )
    return _object(
        ZONE_FIELDS,
        "the zone itself",
        {
            "code": _text(
                "default ticket-number prefix, up to 8 letters or digits", PREFIX, number=True
            ),
            "name": _text("the zone's name"),
            "timezone": {**_text("an IANA time zone name"), "default": DEFAULT_TIMEZONE},
            "language": _choice("the zone's language", LANGUAGES, DEFAULT_LANGUAGE),
            "intake_squad": _ref("code of the squad for enterprises with no project (一窗通办)"),
            "auto_close_after": _duration(
                "an unconfirmed resolution closes itself after", DEFAULT_AUTO_CLOSE
            ),
            "invite_ttl": _duration("an invite expires after", DEFAULT_INVITE_TTL),
            "clock": _choice("which time counts towards deadlines", CLOCKS, DEFAULT_CLOCK),
            "working_hours": {
                **_list(hours, "office hours, for the working_hours clock"),
                "default": list(DEFAULT_WORKING_HOURS),
            },
            "extra_holidays": _list(
                day, "days off besides China's statutory holidays", unique=True
            ),
            "extra_workdays": _list(
                day, "working days besides China's make-up working days", unique=True
            ),
            "managers_chat": _integer("Telegram group id for the managers' alerts"),
            "webhooks": _list(webhook, "alert webhooks (group robots)"),
        },
        required=("code", "name", "intake_squad"),
    )


def _deadlines() -> Schema:
    rule = _object(
        RULE_FIELDS,
        "a promise for a category, an urgency or both; omitted fields inherit the default",
        {
            "category": _ref("code of a category"),
            "urgency": _choice("urgency", URGENCIES),
            **_targets(with_defaults=False),
        },
    )
    rule["anyOf"] = [{"required": ["category"]}, {"required": ["urgency"]}]
    default = _object(TARGET_FIELDS, "the promise for every ticket", _targets(with_defaults=True))
    return _object(
        DEADLINES_FIELDS,
        "the zone's promise, and rules for categories and urgencies",
        {"default": default, "rules": _list(rule, "most specific wins")},
    )


def _schedule() -> Schema:
    def at(description: str, default: time) -> Schema:
        return {
            "type": "string",
            "pattern": f"^(?:{TIME_OF_DAY.pattern}|{OFF})$",
            "default": schedule_text(default),
            "description": f'{description}, in zone time (quoted, such as "08:30"), or off',
        }

    return _object(
        SCHEDULE_FIELDS,
        "when the calendar jobs run",
        {
            "digest": at("the morning digest to every manager and lead", DEFAULT_DIGEST_AT),
            "monthly_ranking": at(
                "the monthly ranking, on the 1st of each month", DEFAULT_MONTHLY_RANKING_AT
            ),
        },
    )


def _alerts() -> Schema:
    return _object(
        ALERTS_FIELDS,
        "alert storms: many alerts for one recipient at once come as one digest per level",
        {
            "storm_threshold": {
                **_integer(
                    "more alerts of one level than this for one recipient within the window"
                    " come as one digest"
                ),
                "minimum": 1,
                "default": DEFAULT_STORM_THRESHOLD,
            },
            "storm_window": _duration(
                "the window the threshold counts alerts in", DEFAULT_STORM_WINDOW
            ),
        },
    )


def _ranking() -> Schema:
    base = RankingSection()

    def weight(name: str, what: str) -> Schema:
        default = getattr(base.weights, name)
        return {"type": "number", "minimum": 0, "default": default, "description": what}

    weights = _object(
        WEIGHT_FIELDS,
        "how much each promise weighs in a squad's score; only the proportions matter",
        {
            "reply": weight("reply", "share of first replies on time"),
            "handling": weight("handling", "share of problems handled on time"),
            "satisfaction": weight("satisfaction", "average rating, out of 5"),
        },
    )
    return _object(
        RANKING_FIELDS,
        "the monthly ranking of squads (每月亮榜)",
        {
            "weights": weights,
            "min_tickets": {
                "type": "integer",
                "minimum": 0,
                "default": base.min_tickets,
                "description": "a squad with fewer tickets in the month is listed, not ranked",
            },
        },
    )


def json_schema() -> Schema:
    """A JSON Schema (draft-07) of the zone file, for editors such as yaml-language-server."""
    staff = "key of a person; zone staff cannot also be enterprise contacts"
    category = _object(
        CATEGORY_FIELDS,
        "a category of problem",
        {
            "code": _text("category code", CODE, number=True),
            "zh": _text("name in Chinese"),
            "en": _text("name in English"),
        },
        required=("code", "zh", "en"),
    )
    person = _object(
        PERSON_FIELDS,
        "a person: zone staff or an enterprise contact",
        {
            "key": _text("the person's key, used in the rest of the file", KEY, number=True),
            "name": _text("full name"),
            "phone": _text("phone number", PHONE, number=True),
            "telegram_id": _integer("Telegram user id; null keeps a binding made in the bot"),
            "language": _choice("null keeps the language chosen in the bot", LANGUAGES),
        },
        required=("key", "name"),
    )
    manager = _object(
        MANAGER_FIELDS,
        "a manager: receives breach alerts, approves extensions",
        {
            "person": _ref(staff),
            "top": {
                "type": "boolean",
                "default": False,
                "description": "receives the formal supervision notice (督办)",
            },
        },
        required=("person",),
    )
    squad = _object(
        SQUAD_FIELDS,
        "a service squad (服务专班)",
        {
            "code": _text("squad code", CODE, number=True),
            "name": _text("the squad's name"),
            "lead": _ref(staff),
            "members": _list(_ref(staff), "the squad's members besides the lead", unique=True),
            "projects": _list(
                _ref("code of a project"), "projects served, one squad each", unique=True
            ),
            "group_chat_id": _integer("Telegram group id; null keeps a group bound in the bot"),
        },
        required=("code", "name", "lead"),
    )
    project = _object(
        PROJECT_FIELDS,
        "an enterprise's project",
        {
            "code": _text("project code", CODE, number=True),
            "name": _text("the project's name"),
            "enterprise": _text("the enterprise's name"),
            "prefix": _text(
                "ticket-number prefix; the zone code when omitted", PREFIX, number=True
            ),
            "contacts": _list(
                _ref("key of a person"), "people who speak for the enterprise", unique=True
            ),
        },
        required=("code", "name", "enterprise"),
    )
    document = _object(
        TOP_FIELDS,
        "a squadbot zone file",
        {
            "zone": _zone_section(),
            "deadlines": _deadlines(),
            "categories": _list(category, "categories, in the order the bot offers them"),
            "people": _list(person, "everyone the file names"),
            "managers": _list(manager, "the zone's managers"),
            "admins": _list(
                _ref(staff),
                "admins: may /invite, /reload the zone and see every ticket in the chat",
                unique=True,
            ),
            "squads": _list(squad, "service squads"),
            "projects": _list(project, "projects"),
            "schedule": _schedule(),
            "alerts": _alerts(),
            "ranking": _ranking(),
        },
        required=("zone",),
    )
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "squadbot zone file",
        **document,
    }


def json_schema_text() -> str:
    """The schema as committed in docs/zone.schema.json and printed by `squadbot org schema`."""
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"
