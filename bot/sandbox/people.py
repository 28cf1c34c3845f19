"""The simulated people of the sandbox emulator: who exists (users who started the bot,
groups the bot is in) and what they do, each action turned into the update Telegram would
deliver to the bot. `BotApiEmulator` offers these as its own methods."""

from __future__ import annotations

import bisect
import copy
import time
from collections.abc import Iterable

from bot.sandbox.records import JSON, TINY_PNG, PendingQuery, StoredMessage
from bot.sandbox.state import EmulatorState
from bot.sandbox.text import button_text, display_name, user_entities


class SimulatedPeople:
    """People and groups, and the messages, edits and button presses they send the bot."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    # -- people and chats -----------------------------------------------------------------

    def add_user(
        self,
        user_id: int,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "zh-hans",
    ) -> JSON:
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: JSON = {"id": user_id, "type": "private", "first_name": first_name}
        for key, value in (("last_name", last_name), ("username", username)):
            if value is not None:
                user[key] = chat[key] = value
        if language_code is not None:
            user["language_code"] = language_code
        self._state.users[user_id] = user
        self._state.chats[user_id] = chat
        return copy.deepcopy(user)

    def add_group(self, chat_id: int, title: str, member_ids: Iterable[int] = ()) -> JSON:
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        members = set(member_ids)
        unknown = members - self._state.users.keys()
        if unknown:
            raise ValueError(f"add_user first: {sorted(unknown)}")
        kind = "supergroup" if chat_id <= -(10**12) else "group"
        self._state.chats[chat_id] = {"id": chat_id, "type": kind, "title": title}
        self._state.members[chat_id] = members
        return copy.deepcopy(self._state.chats[chat_id])

    def block(self, user_id: int) -> None:
        self._state.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self._state.blocked.discard(user_id)

    # -- messages -------------------------------------------------------------------------

    def send_text(
        self, user_id: int, text: str, chat_id: int | None = None, reply_to: int | None = None
    ) -> JSON:
        content: JSON = {"text": text}
        entities = user_entities(text)
        if entities:
            content["entities"] = entities
        return self._message(user_id, chat_id, content, reply_to)

    def send_photo(
        self,
        user_id: int,
        chat_id: int | None = None,
        caption: str | None = None,
        data: bytes = TINY_PNG,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        stored = self._state.store_file("photo", data, "image/jpeg", None)
        content: JSON = {"photo": copy.deepcopy(stored.media)}
        if caption:
            content["caption"] = caption
        return self._message(user_id, chat_id, content, reply_to)

    def send_document(
        self,
        user_id: int,
        filename: str,
        data: bytes,
        mime_type: str = "application/octet-stream",
        chat_id: int | None = None,
        caption: str | None = None,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        stored = self._state.store_file("document", data, mime_type, filename)
        content: JSON = {"document": copy.deepcopy(stored.media)}
        if caption:
            content["caption"] = caption
        return self._message(user_id, chat_id, content, reply_to)

    def send_location(
        self,
        user_id: int,
        lat: float,
        lon: float,
        chat_id: int | None = None,
        *,
        reply_to: int | None = None,
    ) -> JSON:
        content = {"location": {"latitude": lat, "longitude": lon}}
        return self._message(user_id, chat_id, content, reply_to)

    def send_sticker(
        self,
        user_id: int,
        chat_id: int | None = None,
        emoji: str = "👍",
        *,
        reply_to: int | None = None,
    ) -> JSON:
        stored = self._state.store_file("sticker", TINY_PNG, "image/webp", None, emoji=emoji)
        content = {"sticker": copy.deepcopy(stored.media)}
        return self._message(user_id, chat_id, content, reply_to)

    def edit_text_by_user(self, user_id: int, chat_id: int, message_id: int, text: str) -> JSON:
        state = self._state
        stored = state.messages.get((chat_id, message_id))
        if stored is None or stored.by_bot or stored.message["from"]["id"] != user_id:
            raise ValueError(f"user {user_id} has no message {message_id} in chat {chat_id}")
        stored.message["text"] = text
        stored.message.pop("entities", None)
        if entities := user_entities(text):
            stored.message["entities"] = entities
        stored.message["edit_date"] = int(state.clock())
        state.log_line(stored.message, " (edited)")
        if state.visible_to_bot(stored.message):
            state.push_update("edited_message", stored.message)
        return copy.deepcopy(stored.message)

    def _message(
        self, user_id: int, chat_id: int | None, content: JSON, reply_to: int | None
    ) -> JSON:
        """A message the user writes in a chat they are in, queued as an update if the bot
        can see it."""
        state = self._state
        user = state.user(user_id)
        chat_id = user_id if chat_id is None else chat_id
        if chat_id not in state.chats:
            raise ValueError(f"unknown chat {chat_id}")
        state.check_member(user_id, chat_id)
        target = None
        if reply_to is not None:
            replied = state.messages.get((chat_id, reply_to))
            if replied is None:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
            target = replied.message
        message = state.next_message(chat_id, user, content, target)
        state.messages[(chat_id, message["message_id"])] = StoredMessage(message, by_bot=False)
        state.log_line(message)
        if state.visible_to_bot(message):
            state.push_update("message", message)
        else:
            state.notify()
        return copy.deepcopy(message)

    def pin_inaccessible(self, chat_id: int, user_id: int, old_message_id: int) -> JSON:
        state = self._state
        user = state.user(user_id)
        if chat_id not in state.chats:
            raise ValueError(f"unknown chat {chat_id}")
        state.check_member(user_id, chat_id)
        if old_message_id <= 0:
            raise ValueError("message ids are positive")
        # The pinned message is older than the service message about it.
        last = state.last_message_id.get(chat_id, 0)
        state.last_message_id[chat_id] = max(last, old_message_id)
        pinned = {
            "chat": copy.deepcopy(state.chats[chat_id]),
            "message_id": old_message_id,
            "date": 0,  # what makes it an InaccessibleMessage
        }
        message = state.next_message(chat_id, user, {"pinned_message": pinned}, None)
        state.messages[(chat_id, message["message_id"])] = StoredMessage(message, by_bot=False)
        state.log_line(message)
        state.push_update("message", message)  # service messages ignore privacy mode
        return copy.deepcopy(message)

    # -- buttons and raw updates ----------------------------------------------------------

    def press(
        self,
        user_id: int,
        chat_id: int,
        message_id: int,
        callback_data: str,
        *,
        strict: bool = True,
    ) -> str:
        state = self._state
        user = state.user(user_id)
        state.check_member(user_id, chat_id)
        stored = state.messages.get((chat_id, message_id))
        if stored is None or stored.deleted or not stored.by_bot:
            raise ValueError(f"no bot message {message_id} in chat {chat_id}")
        label = button_text(stored.message, callback_data)
        if strict and label is None:
            raise ValueError(f"message {message_id} has no button with data {callback_data!r}")
        query_id = str(next(state.query_seq))
        state.queries[query_id] = PendingQuery(user_id, time.monotonic())
        query = {
            "id": query_id,
            "from": copy.deepcopy(user),
            "message": copy.deepcopy(stored.message),
            "chat_instance": str(abs(chat_id) * 7919 + state.bot_user["id"]),
            "data": callback_data,
        }
        state.transcript.append(
            f"[{state.chat_label(chat_id)}] {display_name(user)} pressed [{label or callback_data}]"
        )
        state.push_update("callback_query", query)
        return query_id

    def send_raw_update(self, update: JSON) -> int:
        state = self._state
        update = copy.deepcopy(update)
        update_id = update.setdefault("update_id", state.next_update_id)
        state.next_update_id = max(state.next_update_id, int(update_id) + 1)
        bisect.insort(state.updates, update, key=lambda u: int(u["update_id"]))
        state.notify()
        return int(update_id)
