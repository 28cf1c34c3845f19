"""Wording an official would sign: one name for each deadline, no doubled words, Chinese
punctuation in Chinese text, nothing that says 'zero attachments', durations in words."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from bot.i18n import catalog, format_duration, render

CJK = re.compile(r"[\u4e00-\u9fff]")
TZ = ZoneInfo("Asia/Shanghai")


def names(_code: str, _locale: str) -> str:
    return "临时停水"


def test_chinese_text_uses_chinese_quotation_marks() -> None:
    for key, text in catalog("zh-CN").items():
        if key.startswith("demo.") or not CJK.search(text):
            continue
        assert '"' not in text, (key, text)


def test_no_stray_space_before_a_chinese_word_after_a_duration() -> None:
    for key, text in catalog("zh-CN").items():
        assert "} 内" not in text and "天 内" not in text, (key, text)


def test_one_name_for_the_handling_deadline() -> None:
    zh = catalog("zh-CN")
    assert zh["deadline.handling"] == "办结"
    assert "前办结" in zh["ticket.filed"] and "办结时限" in zh["ticket.card"]
    supervision = render(
        "zh-CN",
        "alert.supervision",
        {
            "number": "YZ-2611-0001",
            "category": "临时停水",
            "squad": "光伏专班",
            "deadline": {"key": "deadline.handling"},
            "due": "11月23日 11:00",
            "description": "停水",
        },
        TZ,
        names,
    )
    assert "办结超时未办结" not in supervision and "办结时限 11月23日 11:00 已过" in supervision


def test_attachments_are_mentioned_only_when_there_are_some() -> None:
    base = {"category": "临时停水", "urgency": "一般", "description": "停水"}
    for locale in ("zh-CN", "en"):
        none = render(locale, "new.confirm", {**base, "attachments": ""}, TZ, names)
        assert "0" not in none
        two = render(
            locale,
            "new.confirm",
            {
                **base,
                "attachments": {"text": {"key": "new.confirm_attachments", "params": {"count": 2}}},
            },
            TZ,
            names,
        )
        assert "2" in two


def test_nobody_owning_a_ticket_is_said_one_way() -> None:
    for locale in ("zh-CN", "en"):
        texts = catalog(locale)
        assert "owner.none" in texts and "alert.unclaimed" not in texts


def test_durations_read_as_words() -> None:
    assert format_duration(3 * 86400, "en") == "3 days"
    assert format_duration(86400 + 3600, "en") == "1 day 1 hour"
    assert format_duration(2 * 3600 + 30 * 60, "en") == "2 hours 30 minutes"
    assert format_duration(3 * 86400, "zh-CN") == "3天"
    assert format_duration(0, "en") == "0 seconds"
