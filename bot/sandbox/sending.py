"""The Bot API methods of the sandbox emulator that put, change or remove a bot message:
sendMessage and the other sending methods, copyMessage, the edits and deleteMessage, with
the checks they share (text and caption limits, keyboards, replies, uploads, flood limits)."""

from __future__ import annotations

import copy
import itertools
import time

from bot.sandbox.records import (
    CALLBACK_DATA_LIMIT,
    CAPTION_LIMIT,
    JSON,
    MESSAGE_LIMIT,
    NOT_MODIFIED,
    WRONG_FILE,
    FloodGate,
    StoredFile,
    StoredMessage,
)
from bot.sandbox.state import EmulatorState
from bot.sandbox.text import format_text, utf16_len
from bot.sandbox.wire import ApiError, ApiMethod, ApiParams, Upload, bad_request

_MEDIA_KEYS = ("photo", "document", "location", "sticker")
_BUTTON_ACTIONS = (
    "callback_data", "url", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip


class SendingMethods:
    """The bot's messages as the Bot API creates and changes them. `flood` (None: no limits)
    answers sending methods with 429 and retry_after past Telegram's rate limits."""

    def __init__(self, state: EmulatorState, flood: FloodGate | None) -> None:
        self._state = state
        self._flood = flood

    def table(self) -> dict[str, ApiMethod]:
        return {
            "sendChatAction": self._send_chat_action,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendSticker": self._send_sticker,
            "sendLocation": self._send_location,
            "copyMessage": self._copy_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
        }

    # -- Bot API methods ------------------------------------------------------------------

    async def _send_chat_action(self, p: ApiParams) -> bool:
        self._sending_chat(p)
        if not p.text("action"):
            raise bad_request("action is empty")
        return True

    async def _send_message(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        return self._post(chat_id, p, self._text(p), p.text("parse_mode"))

    async def _send_photo(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        caption, parse_mode = self._caption(p)
        photo = self._input_file(p, "photo")
        return self._post(chat_id, p, {"photo": photo.media, **caption}, parse_mode)

    async def _send_document(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        caption, parse_mode = self._caption(p)
        document = self._input_file(p, "document")
        return self._post(chat_id, p, {"document": document.media, **caption}, parse_mode)

    async def _send_sticker(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        sticker = self._input_file(p, "sticker")
        return self._post(chat_id, p, {"sticker": sticker.media})

    async def _send_location(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        latitude, longitude = p.number("latitude"), p.number("longitude")
        if latitude is None or not -90 <= latitude <= 90:
            raise bad_request("wrong latitude specified")
        if longitude is None or not -180 <= longitude <= 180:
            raise bad_request("wrong longitude specified")
        location = {"latitude": latitude, "longitude": longitude}
        return self._post(chat_id, p, {"location": location})

    async def _copy_message(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        from_chat = self._state.find_chat(p, "from_chat_id")
        source = self._state.messages.get((from_chat, p.integer("message_id") or 0))
        if source is None or source.deleted:
            raise bad_request("message to copy not found")
        keys = ("text", "entities", "caption", "caption_entities", *_MEDIA_KEYS)
        content = {key: source.message[key] for key in keys if key in source.message}
        parse_mode = None
        if "caption" in p and "text" not in content:
            content.pop("caption_entities", None)
            caption, parse_mode = self._caption(p)
            content["caption"] = caption.get("caption")
            content["caption_entities"] = caption.get("caption_entities")
        message = self._post(chat_id, p, content, parse_mode)
        return {"message_id": message["message_id"]}

    async def _edit_message_text(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        if "text" not in stored.message:
            raise bad_request("there is no text in the message to edit")
        changes = self._text(p)
        changes["reply_markup"] = self._markup(p)[0]
        edited = self._apply_edit(stored, "editMessageText", changes)
        stored.parse_mode = p.text("parse_mode")
        return edited

    async def _edit_message_caption(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        if "text" in stored.message or "location" in stored.message:
            raise bad_request("there is no caption in the message to edit")
        caption, _ = self._caption(p)
        changes = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities"),
            "reply_markup": self._markup(p)[0],
        }
        return self._apply_edit(stored, "editMessageCaption", changes)

    async def _edit_message_reply_markup(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        changes = {"reply_markup": self._markup(p)[0]}
        return self._apply_edit(stored, "editMessageReplyMarkup", changes)

    async def _delete_message(self, p: ApiParams) -> bool:
        stored = self._state.messages.get((self._state.find_chat(p), p.integer("message_id") or 0))
        if stored is None or stored.deleted:
            raise bad_request("message to delete not found")
        stored.deleted = True
        self._state.log_line(stored.message, " (deleted)")
        self._state.notify()
        return True

    # -- checks and storage shared by the methods -----------------------------------------

    def _sending_chat(self, params: ApiParams) -> int:
        chat_id = self._state.find_chat(params)
        if chat_id in self._state.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _caption(self, params: ApiParams) -> tuple[JSON, str | None]:
        raw = params.text("caption")
        parse_mode = params.text("parse_mode")
        if not raw:
            return {}, parse_mode
        caption, entities = format_text(raw, parse_mode, params.json("caption_entities"))
        if utf16_len(caption) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        content: JSON = {"caption": caption}
        if entities:
            content["caption_entities"] = entities
        return content, parse_mode

    def _text(self, params: ApiParams) -> JSON:
        text, entities = format_text(
            params.text("text") or "", params.text("parse_mode"), params.json("entities")
        )
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MESSAGE_LIMIT:
            raise bad_request("message is too long")
        return {"text": text, "entities": entities or None}

    def _markup(self, params: ApiParams) -> tuple[JSON | None, JSON | None]:
        """(inline keyboard shown on the message, any other keyboard sent alongside)."""
        markup = params.json("reply_markup")
        if markup is None:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return None, markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for button in itertools.chain.from_iterable(rows):
            if not isinstance(button, dict):
                raise bad_request("can't parse inline keyboard button: object expected")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
                raise bad_request("BUTTON_DATA_INVALID")
            if not any(action in button for action in _BUTTON_ACTIONS):
                raise bad_request("text buttons are unallowed in the inline keyboard")
        return (markup if any(rows) else None), None

    def _reply_target(self, chat_id: int, params: ApiParams) -> JSON | None:
        reply = params.json("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow = bool(reply.get("allow_sending_without_reply"))
        else:
            message_id = params.integer("reply_to_message_id")
            allow = params.flag("allow_sending_without_reply")
        if message_id is None:
            return None
        stored = self._state.messages.get((chat_id, int(message_id)))
        if stored is None or stored.deleted:
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return stored.message

    def _post(
        self, chat_id: int, params: ApiParams, content: JSON, parse_mode: str | None = None
    ) -> JSON:
        """The common tail of every sending method: keyboard, reply, flood limit, store."""
        state = self._state
        inline, keyboard = self._markup(params)
        target = self._reply_target(chat_id, params)
        if self._flood is not None:
            retry_after = self._flood.admit(chat_id, time.monotonic())
            if retry_after is not None:
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        content = {k: v for k, v in content.items() if v is not None}
        if inline is not None:
            content["reply_markup"] = inline
        message = state.next_message(chat_id, state.bot_user, content, target)
        stored = StoredMessage(message, True, parse_mode, keyboard)
        state.messages[(chat_id, message["message_id"])] = stored
        state.bot_log.append(stored)
        state.stats["sent_messages"] += 1
        state.log_line(message)
        state.notify()
        return copy.deepcopy(message)

    def _input_file(self, params: ApiParams, name: str) -> StoredFile:
        value = params.file(name)
        if isinstance(value, Upload):
            mime = {"photo": "image/jpeg", "sticker": "image/webp"}.get(name, value.content_type)
            return self._state.store_file(name, value.data, mime, value.filename)
        if not value:
            raise bad_request(f"there is no {name} in the request")
        stored = self._state.files.get(value)
        if stored is None:
            raise bad_request(WRONG_FILE)
        if stored.kind != name:
            raise bad_request("type of file mismatch")
        return stored

    def _editable(self, params: ApiParams) -> StoredMessage:
        if params.text("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id = self._state.find_chat(params)
        message_id = params.integer("message_id")
        stored = self._state.messages.get((chat_id, message_id or 0))
        if stored is None or stored.deleted:
            raise bad_request("message to edit not found")
        if not stored.by_bot:
            raise bad_request("message can't be edited")
        return stored

    def _apply_edit(self, stored: StoredMessage, method: str, changes: JSON) -> JSON:
        message = stored.message
        old = {key: message.get(key) for key in changes}
        if old == changes:
            raise bad_request(NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = copy.deepcopy(value)
        message["edit_date"] = int(self._state.clock())
        stored.edits.append(
            {"method": method, "date": message["edit_date"], "old": old, "new": changes}
        )
        self._state.log_line(message, " (edited)")
        self._state.notify()
        return copy.deepcopy(message)
