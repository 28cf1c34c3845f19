"""Text handling of the sandbox Bot API emulator: lengths in UTF-16 code units as Telegram
counts them, parse_mode HTML turned into entities, the entities a client attaches to typed
text, and the one-line rendering of messages for transcripts."""

from __future__ import annotations

import itertools
import re
from html.parser import HTMLParser
from typing import Any

from bot.sandbox.records import JSON
from bot.sandbox.wire import bad_request


def utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units: an emoji outside the BMP counts twice."""
    return len(text.encode("utf-16-le")) // 2


# ---------------------------------------------------------------------------------------------
# parse_mode HTML


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip


class _EntityError(Exception):
    pass


class _TelegramHtml(HTMLParser):
    """Telegram's HTML subset: plain text plus entities, rejecting any other tag the way
    Telegram does, so that a handler which forgets to escape user input fails in tests."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0, *(m.end() for m in re.finditer("\n", source))]
        self._parts: list[str] = []
        self._offset = 0
        self._open: list[tuple[str, JSON]] = []
        self._entities: list[JSON] = []

    def parse(self) -> tuple[str, list[JSON]]:
        self.feed(self._source)
        self.close()
        if self._open:
            tag = self._open[-1][0]
            raise _EntityError(f'Can\'t find end tag corresponding to start tag "{tag}"')
        entities = sorted(self._entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self._parts), entities

    def _byte_offset(self) -> int:
        line, column = self.getpos()
        return len(self._source[: self._line_starts[line - 1] + column].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        kind = _HTML_TAGS.get(tag)
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            kind = None
        if kind is None:
            offset = self._byte_offset()
            raise _EntityError(f'Unsupported start tag "{tag}" at byte offset {offset}')
        entity: JSON = {"type": kind, "offset": self._offset}
        if kind == "text_link":
            entity["url"] = attributes.get("href") or ""
        elif kind == "custom_emoji":
            entity["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif kind == "code" and self._open and self._open[-1][1]["type"] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self._open[-1][1]["language"] = language
            entity["type"] = ""
        self._open.append((tag, entity))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open[-1][0] != tag:
            expected = f'"</{self._open[-1][0]}>"' if self._open else "nothing"
            raise _EntityError(
                f"Unmatched end tag at byte offset {self._byte_offset()}, "
                f'expected {expected}, found "</{tag}>"'
            )
        _, entity = self._open.pop()
        entity["length"] = self._offset - entity["offset"]
        if entity["length"] > 0 and entity["type"]:
            self._entities.append(entity)

    def handle_data(self, data: str) -> None:
        self._parts.append(data)
        self._offset += utf16_len(data)


def format_text(text: str, parse_mode: str | None, explicit: Any) -> tuple[str, list[JSON]]:
    if parse_mode is None or parse_mode == "":
        return text, list(explicit) if isinstance(explicit, list) else []
    if parse_mode.lower() == "html":
        try:
            return _TelegramHtml(text).parse()
        except _EntityError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
    if parse_mode.lower() in ("markdown", "markdownv2"):
        return text, []
    raise bad_request("unsupported parse_mode")


def user_entities(text: str) -> list[JSON]:
    """What a Telegram client attaches to typed text: bot commands and @mentions."""
    entities = []
    patterns = (
        ("bot_command", r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?"),
        ("mention", r"(?<![\w@])@[A-Za-z0-9_]{5,32}"),
    )
    for kind, pattern in patterns:
        for match in re.finditer(pattern, text):
            offset = utf16_len(text[: match.start()])
            entities.append({"type": kind, "offset": offset, "length": utf16_len(match[0])})
    return sorted(entities, key=lambda e: e["offset"])


# ---------------------------------------------------------------------------------------------
# transcripts


def display_name(person: JSON) -> str:
    return " ".join(str(person[k]) for k in ("first_name", "last_name") if person.get(k))


def button_text(message: JSON, callback_data: str) -> str | None:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    for button in itertools.chain.from_iterable(rows):
        if button.get("callback_data") == callback_data:
            return str(button.get("text", ""))
    return None


def render_message(message: JSON) -> str:
    """One readable line per message for transcripts: media as [photo], buttons as [text]."""
    parts = []
    if "photo" in message:
        parts.append("[photo]")
    if "document" in message:
        parts.append(f"[document {message['document'].get('file_name', '')}]")
    if "location" in message:
        location = message["location"]
        parts.append(f"[location {location['latitude']}, {location['longitude']}]")
    if "sticker" in message:
        parts.append(f"[sticker {message['sticker'].get('emoji', '')}]")
    if "pinned_message" in message:
        parts.append(f"[pinned message {message['pinned_message'].get('message_id', '')}]")
    body = message.get("text") or message.get("caption")
    if body:
        parts.append(str(body).replace("\n", "\n    "))
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    buttons = " ".join(f"[{b.get('text', '')}]" for b in itertools.chain.from_iterable(rows))
    if buttons:
        parts.append(buttons)
    return " ".join(parts)
