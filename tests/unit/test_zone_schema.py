"""The zone file's JSON Schema: the committed copy is the generated one, it never refuses a
file the reader accepts, and it flags the field-level mistakes an editor can see."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from models.zone import json_schema as json_schema_module
from models.zone.json_schema import json_schema, json_schema_text
from models.zone.parse import parse_zone
from models.zone.reader import ZoneFileError
from models.zone.schema import SQUAD_FIELDS
from tests.unit.test_zone_file import EXAMPLE, MINIMAL, _mutate

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "zone.schema.json"

# What the reader accepts beyond MINIMAL: unquoted numbers as text, bare seconds, a ratio
# as a number, nulls for "not set here", dates, and a rule with its own clock.
VARIANT = (
    MINIMAL.replace('phone: "13800138011"', "phone: 13800138011, telegram_id: null")
    .replace("auto_close_after: 3d", "auto_close_after: 259200\n  invite_ttl: 1d 12h")
    .replace("warn_at: 80%", "warn_at: 0.75, supervision_after: 30m")
    .replace(
        "clock: round_the_clock",
        "clock: working_hours\n  extra_holidays: [2026-10-09]\n  extra_workdays: []\n"
        "  managers_chat: null",
    )
    .replace(
        "urgency: urgent, response: 5m, handling: 1h}",
        "urgency: urgent, response: 5m, handling: 1h}\n    - {urgency: normal, clock: null}\n"
        "    - {category: water, clock: round_the_clock}",
    )
    .replace("{person: wang.fang, top: true}", "{person: wang.fang, top: null}")
    .replace("lead: li.ming}", "lead: li.ming, members: null, group_chat_id: null}")
    .replace("contacts: [qian.hao]}", "contacts: [qian.hao], prefix: 2026}")
)


def editor_view(text: str) -> Any:
    """The file as a YAML 1.2 editor reads it: dates stay text."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value.isoformat() if isinstance(value, date) else value

    return plain(yaml.safe_load(text))


def schema_errors(text: str) -> list[str]:
    validator = Draft7Validator(json_schema())
    return [e.message for e in validator.iter_errors(editor_view(text))]


def test_the_committed_schema_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == json_schema_text(), (
        "regenerate it: squadbot org schema > docs/zone.schema.json"
    )


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    Draft7Validator.check_schema(json_schema())


@pytest.mark.parametrize(
    "text", [EXAMPLE.read_text(encoding="utf-8"), MINIMAL, VARIANT], ids=["example", "min", "var"]
)
def test_files_the_reader_accepts_pass_the_schema(text: str) -> None:
    parse_zone(text, "zone.yaml")
    assert schema_errors(text) == []


@pytest.mark.parametrize(
    ("marker", "replacement"),
    [
        ("language:", "  language: fr"),
        ("clock:", "  clock: office"),
        ("auto_close_after:", "  auto_close_after: 3 days"),
        ("working_hours:", '  working_hours: ["9am-noon"]'),
        ("code: YZ", "  code: YZ-ZONE-2026"),
        ("kind: wecom", '    - {kind: json, url: "ftp://example.invalid/hook"}'),
        ("kind: wecom", '    - {kind: json, url: "https://x.invalid", secret: abc}'),
        ("category: water, urgency", "    - {category: water, urgency: asap, response: 5m}"),
        ("category: water, urgency", "    - {response: 5m}"),
        ("{code: water", "  - {code: water, zh: 临时停水}"),
        ("key: zhang.wei", "  - {key: zhang.wei, name: 张伟, telegram_id: abc}"),
        ("key: zhang.wei", "  - {key: zhang.wei, name: 张伟, phone: call me}"),
        ("person: wang.fang", "  - {person: wang.fang, top: yes please}"),
        ("code: WINDOW", "  - {code: WINDOW, name: 一窗通办, leader: li.ming}"),
        ("code: PV,", "  - {code: PV, name: 光伏, lead: li.ming, members: [zhang.wei, zhang.wei]}"),
        ("code: PV01", "  - {code: PV01, enterprise: 晶曜新能源}"),
        ("code: PV01", "  - {code: PV01, name: 光伏, enterprise: 晶曜, prefix: 光伏}"),
        ("code: PV01", "  - {code: PV01, name: 光伏, enterprise: 晶曜, contacts: qian.hao}"),
    ],
)
def test_field_mistakes_are_flagged_by_the_schema_and_refused_by_the_reader(
    marker: str, replacement: str
) -> None:
    text, _ = _mutate(marker, replacement)
    with pytest.raises(ZoneFileError):
        parse_zone(text, "zone.yaml")
    assert schema_errors(text) != []


@pytest.mark.parametrize(
    "section",
    ['schedule: {digest: "8.30"}', "schedule: {digest: never}", 'schedule: {at: "09:00"}'],
)
def test_schedule_mistakes_are_flagged_by_the_schema_and_refused_by_the_reader(
    section: str,
) -> None:
    text = MINIMAL + section + "\n"
    with pytest.raises(ZoneFileError):
        parse_zone(text, "zone.yaml")
    assert schema_errors(text) != []


def test_a_schedule_switched_off_passes_the_schema() -> None:
    text = MINIMAL + 'schedule: {digest: "off", monthly_ranking: "07:00"}\n'
    parse_zone(text, "zone.yaml")
    assert schema_errors(text) == []


def test_a_file_without_a_zone_is_flagged() -> None:
    assert schema_errors("categories: []\n") == ["'zone' is a required property"]


def test_the_schema_cannot_list_other_fields_than_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(json_schema_module, "SQUAD_FIELDS", SQUAD_FIELDS | {"leader"})
    with pytest.raises(ValueError, match="leader"):
        json_schema()


@pytest.mark.parametrize(
    "section",
    ["alerts: {storm_threshold: 0}", "alerts: {storm_window: soon}", "alerts: {window: 60s}"],
)
def test_alert_storm_mistakes_are_flagged_by_the_schema_and_refused_by_the_reader(
    section: str,
) -> None:
    text = MINIMAL + section + "\n"
    with pytest.raises(ZoneFileError):
        parse_zone(text, "zone.yaml")
    assert schema_errors(text) != []


def test_alert_storm_settings_pass_the_schema() -> None:
    text = MINIMAL + "alerts: {storm_threshold: 50, storm_window: 5m}\n"
    parse_zone(text, "zone.yaml")
    assert schema_errors(text) == []
