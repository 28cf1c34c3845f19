"""Catalogs of every user-facing string, in zh-CN and en, and the renderer that turns an
outbox row's template key and typed parameters into text in the reader's language."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

LOCALES = ("zh-CN", "en")
CATALOG_DIR = Path(__file__).with_name("locales")


@functools.cache
def catalog(locale: str) -> dict[str, str]:
    with (CATALOG_DIR / f"{locale}.yaml").open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    flat: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = str(node).rstrip("\n")

    walk("", data)
    return flat


def normalise(locale: object) -> str:
    """A catalog for whatever a client says its language is (Telegram's field is free text,
    and an update of an odd shape may carry anything there)."""
    if not locale or not isinstance(locale, str):
        return "zh-CN"
    if locale.lower().startswith("zh"):
        return "zh-CN"
    return "en" if locale.lower().startswith("en") else "zh-CN"


class _Params(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def t(locale: str, key: str, **params: Any) -> str:
    text = catalog(normalise(locale)).get(key) or catalog("zh-CN").get(key) or key
    return text.format_map(_Params(params)) if params else text


def format_time(value: datetime, locale: str, tz: ZoneInfo) -> str:
    local = value.astimezone(tz)
    if normalise(locale) == "zh-CN":
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local:%d %b %H:%M}"


def format_duration(seconds: int, locale: str) -> str:
    """3天 / 2小时30分钟 in Chinese; 3 days / 2 hours 30 minutes in English."""
    zh = normalise(locale) == "zh-CN"
    units = (
        (86400, "天", "day"),
        (3600, "小时", "hour"),
        (60, "分钟", "minute"),
        (1, "秒", "second"),
    )
    parts = []
    for size, zh_unit, en_unit in units:
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{zh_unit}" if zh else f"{count} {en_unit}{'s' * (count != 1)}")
    if not parts:
        return "0秒" if zh else "0 seconds"
    return "".join(parts) if zh else " ".join(parts)


def format_date(value: date, locale: str) -> str:
    if normalise(locale) == "zh-CN":
        return f"{value.month}月{value.day}日"
    return f"{value:%d %b}"


CategoryNames = Callable[[str, str], str]
# how a list of values becomes one parameter: a line each, or one line
_JOINERS = {"lines": "\n", "inline": " · "}


def render_value(value: Any, locale: str, tz: ZoneInfo, category_name: CategoryNames) -> Any:
    """Typed parameters are localised here, so the domain never formats for a reader."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return "-" if value is None else value
    ((kind, inner),) = value.items()
    if kind == "time":
        return format_time(datetime.fromisoformat(str(inner)), locale, tz)
    if kind == "date":
        return format_date(date.fromisoformat(str(inner)), locale)
    if kind == "category":
        return category_name(str(inner), locale)
    if kind == "state":
        return t(locale, f"state.{inner}")
    if kind == "key":
        return t(locale, str(inner))
    if kind == "duration":
        return format_duration(int(inner), locale)
    if kind == "text" and isinstance(inner, Mapping):  # a catalog text with its own params
        params = inner.get("params") or {}
        values = {k: render_value(v, locale, tz, category_name) for k, v in params.items()}
        return t(locale, str(inner.get("key")), **values)
    if kind in _JOINERS and isinstance(inner, list):  # several values: lines, or one line
        parts = (render_value(v, locale, tz, category_name) for v in inner)
        return _JOINERS[kind].join(str(p) for p in parts)
    return value


def render(
    locale: str,
    template: str,
    params: Mapping[str, Any],
    tz: ZoneInfo,
    category_name: CategoryNames,
) -> str:
    values = {k: render_value(v, locale, tz, category_name) for k, v in params.items()}
    return t(locale, template, **values)
