"""The zh-CN and en catalogs agree with each other and with the code that uses them."""

from __future__ import annotations

import ast
import re
import string
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.i18n import LOCALES, catalog, render, t

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("bot", "handlers", "models", "scheduler")
KEY_SHAPE = re.compile(r"^[a-z_]+\.[a-z_.]+$")
# The literal head of a dynamic key: "alert." in f"alert.{level}", "new.got_" in f"new.got_{kind}".
PREFIX_SHAPE = re.compile(r"^[a-z_]+\.[a-z_.]*$")
# Keyword arguments whose string values are never catalog keys (SQL "table.column" references).
NOT_KEY_KEYWORDS = frozenset({"foreign_key"})

# Families of keys built at run time from data rather than written out in the code:
# ticket states and urgencies, deadline names, history actions, invite roles, attachment
# kinds, extension statuses, alert levels (for webhook titles) and bot command names.
DYNAMIC_FAMILIES = (
    "state.",
    "urgency.",
    "deadline.",
    "history.",
    "start.bound.",
    "new.got_",
    "extension.status.",
    "extension.decided.",
    "alert_title.",
    "command.",
)

SH = ZoneInfo("Asia/Shanghai")


def keys(locale: str) -> set[str]:
    return set(catalog(locale))


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def known_heads() -> set[str]:
    return {key.split(".", 1)[0] for key in keys("zh-CN")}


def source_files() -> list[Path]:
    return sorted(path for d in SOURCE_DIRS for path in (ROOT / d).rglob("*.py"))


@cache
def references() -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]:
    """(literal keys, dynamic prefixes) found in the code, each paired with its location."""
    heads = known_heads()
    literals: set[tuple[str, str]] = set()
    prefixes: set[tuple[str, str]] = set()
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                skip.update(id(part) for part in node.values)
                first = node.values[0] if node.values else None
                if (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and len(node.values) > 1
                    and PREFIX_SHAPE.match(first.value)
                    and first.value.split(".", 1)[0] in heads
                ):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    prefixes.add((first.value, where))
            elif isinstance(node, ast.keyword) and node.arg in NOT_KEY_KEYWORDS:
                skip.add(id(node.value))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
                and KEY_SHAPE.match(node.value)
                and node.value.split(".", 1)[0] in heads
            ):
                literals.add((node.value, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return frozenset(literals), frozenset(prefixes)


def test_both_locales_are_checked() -> None:
    assert set(LOCALES) == {"zh-CN", "en"}


def test_catalogs_have_the_same_keys() -> None:
    zh, en = keys("zh-CN"), keys("en")
    assert sorted(zh - en) == [], "keys missing from en.yaml"
    assert sorted(en - zh) == [], "keys missing from zh-CN.yaml"


@pytest.mark.parametrize("key", sorted(keys("zh-CN")))
def test_placeholders_match(key: str) -> None:
    zh = catalog("zh-CN")[key]
    en = catalog("en").get(key)
    assert en is not None, f"{key} missing from en.yaml"
    assert placeholders(en) == placeholders(zh), key


def test_no_message_is_empty() -> None:
    for locale in LOCALES:
        empty = sorted(key for key, text in catalog(locale).items() if not text.strip())
        assert empty == [], f"empty messages in {locale}"


def test_scan_finds_references() -> None:
    literals, prefixes = references()
    assert {"ticket.filed", "error.stale_button"} <= {key for key, _ in literals}
    assert "alert." in {prefix for prefix, _ in prefixes}


def test_every_referenced_key_exists() -> None:
    literals, _ = references()
    catalog_keys = keys("zh-CN")
    missing = sorted(f"{key} ({where})" for key, where in literals if key not in catalog_keys)
    assert missing == []


def test_every_dynamic_prefix_matches_a_key() -> None:
    _, prefixes = references()
    catalog_keys = keys("zh-CN")
    dangling = sorted(
        f"{prefix} ({where})"
        for prefix, where in prefixes
        if not any(key.startswith(prefix) for key in catalog_keys)
    )
    assert dangling == []


def test_every_dynamic_family_matches_a_key() -> None:
    catalog_keys = keys("zh-CN")
    empty = [f for f in DYNAMIC_FAMILIES if not any(k.startswith(f) for k in catalog_keys)]
    assert empty == []


def test_every_key_is_used() -> None:
    literals, prefixes = references()
    used = {key for key, _ in literals}
    starts = tuple({prefix for prefix, _ in prefixes}) + DYNAMIC_FAMILIES
    unused = sorted(k for k in keys("zh-CN") if k not in used and not k.startswith(starts))
    assert unused == []


def category_name(code: str, locale: str) -> str:
    return {"zh-CN": "停水", "en": "Water cut"}[locale] if code == "water" else code


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("zh-CN", "11月5日 18:30"), ("en", "05 Nov 18:30")],
)
def test_render_shows_times_in_shanghai(locale: str, expected: str) -> None:
    # 10:30 UTC is 18:30 in Shanghai.
    text = render(
        locale,
        "ticket.summary",
        {"handling_due": {"time": "2026-11-05T10:30:00+00:00"}},
        SH,
        category_name,
    )
    assert expected in text
    assert "10:30" not in text


@pytest.mark.parametrize("locale", LOCALES)
def test_render_fills_ticket_filed(locale: str) -> None:
    params = {
        "number": "YZ-2611-0001",
        "category": {"category": "water"},
        "response_due": {"time": "2026-11-05T02:10:00+00:00"},
        "handling_due": {"time": "2026-11-05T04:00:00+00:00"},
    }
    text = render(locale, "ticket.filed", params, SH, category_name)
    assert "{" not in text and "}" not in text, text
    assert "YZ-2611-0001" in text
    assert category_name("water", locale) in text
    assert "10:10" in text and "12:00" in text


def test_english_has_no_untranslated_chinese() -> None:
    han = re.compile(r"[\u4e00-\u9fff]")
    # Only the language switch names both languages, so either reader can find it.
    assert sorted(k for k, text in catalog("en").items() if han.search(text)) == ["command.lang"]


def test_english_readers_get_english() -> None:
    assert t("en", "error.ticket_closed", number="YZ-1") == "Ticket YZ-1 is closed."
    assert t("en-US", "state.open") == catalog("en")["state.open"]
    assert t("zh-hans", "state.open") == catalog("zh-CN")["state.open"]


def test_dynamic_families_cover_the_domain_values() -> None:
    from models.invites import INVITE_ROLES
    from models.lifecycle import State
    from models.sla.policy import AlertKind, DeadlineKind
    from models.zone.schema import URGENCIES

    expected = (
        [f"state.{s.value}" for s in State]
        + [f"urgency.{u}" for u in URGENCIES]
        + [f"deadline.{d.value}" for d in DeadlineKind]
        + [f"alert.{a.value}" for a in AlertKind]
        + [f"alert_title.{a.value}" for a in AlertKind]
        + [f"start.bound.{r}" for r in INVITE_ROLES if r != "group"]
        + [f"extension.{s}" for s in ("approved", "refused", "expired")]
        + [f"extension.status.{s}" for s in ("pending", "approved", "refused", "expired")]
    )
    catalog_keys = keys("zh-CN")
    assert [key for key in expected if key not in catalog_keys] == []


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh-CN", "共 2 个工单（第 1/3 页）：\n【光伏专班】\n待认领 3 · 处理中 1\n11月23日"),
        ("en", "2 ticket(s) (page 1/3):\n[光伏专班]\nUnclaimed 3 · In progress 1\n23 Nov"),
    ],
)
def test_render_nests_texts_lists_and_dates(locale: str, expected: str) -> None:
    """A list in one message: catalog texts inside a text, one per line or on one line,
    each in the reader's language."""
    params = {
        "header": {
            "text": {"key": "my.header_paged", "params": {"count": 2, "page": 1, "pages": 3}}
        },
        "body": {
            "lines": [
                {"text": {"key": "my.squad_heading", "params": {"squad": "光伏专班"}}},
                {
                    "inline": [
                        {
                            "text": {
                                "key": "my.state_count",
                                "params": {"state": {"state": s}, "count": n},
                            }
                        }
                        for s, n in (("open", 3), ("claimed", 1))
                    ]
                },
                {"date": "2026-11-23"},
            ]
        },
    }
    assert render(locale, "my.page", params, SH, category_name) == expected
