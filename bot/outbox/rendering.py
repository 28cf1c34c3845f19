"""How an outbox row reads: its catalog text in the reader's language and zone time, its
buttons, and Telegram's length limits (counted in UTF-16 code units)."""

from __future__ import annotations

import json

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.i18n import render, t
from models.org import Category
from models.outbox import Due
from models.zone.config import ZoneConfig

TELEGRAM_LIMIT = 4096
CAPTION_LIMIT = 1024


def clip(text: str, limit: int) -> str:
    """Telegram counts its limits in UTF-16 code units, so an emoji or a rare CJK character
    (outside the BMP) counts twice; a text clipped by code points could still be refused."""
    units = len(text.encode("utf-16-le")) // 2
    if units <= limit:
        return text
    kept, used = [], 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > limit - 1:
            break
        kept.append(char)
        used += width
    return "".join(kept) + "…"


class Rendering:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._names: dict[tuple[str, str], str] = {}

    def category_name(self, code: str, locale: str) -> str:
        key = (code, locale)
        if key not in self._names:
            with Session(self.engine) as session:
                for cat in session.exec(select(Category)).all():
                    self._names[(cat.code, "zh-CN")] = cat.name_zh
                    self._names[(cat.code, "en")] = cat.name_en
        return self._names.get(key, code)

    def text_of(self, row: Due, zone: ZoneConfig) -> str:
        return render(row.locale, row.template, json.loads(row.params), zone.tz, self.category_name)

    def markup_of(self, row: Due) -> InlineKeyboardMarkup | None:
        if not row.buttons:
            return None
        rows = []
        for line in json.loads(row.buttons):
            buttons = []
            for label, token in line:
                text = label[1:] if label.startswith("=") else t(row.locale, label)
                buttons.append(InlineKeyboardButton(text, callback_data=token))
            rows.append(buttons)
        return InlineKeyboardMarkup(rows)
