"""How an outbox row reads: its catalog text in the reader's language and zone time, its
buttons, and Telegram's length limits (counted in UTF-16 code units)."""

from __future__ import annotations

import json

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from telegram import InlineKeyboardMarkup

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

    def keyboard_of(self, row: Due) -> str | None:
        """The row's buttons as the `reply_markup` JSON Telegram reads, labels in the
        reader's language: written here, not built as PTB's objects and serialised again
        (a dozen buttons took well over ten times as long that way)."""
        if not row.buttons:
            return None
        keyboard = [
            [
                {
                    "text": label[1:] if label.startswith("=") else t(row.locale, label),
                    "callback_data": token,
                }
                for label, token in line
            ]
            for line in json.loads(row.buttons)
        ]
        return json.dumps({"inline_keyboard": keyboard}, ensure_ascii=False)


def markup(keyboard: str | None) -> InlineKeyboardMarkup | None:
    """A keyboard's JSON as PTB's object, for the calls that take only that (photos and
    documents, sent by PTB's own methods)."""
    if keyboard is None:
        return None
    return InlineKeyboardMarkup.de_json(json.loads(keyboard), None)
