"""The Bot API methods of the sandbox emulator (`bot.sandbox.emulator`) and the dispatch of HTTP
requests to them: token check, method lookup, injected faults and request accounting."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.sandbox.records import (
    JSON,
    POLL_CONFLICT,
    QUERY_TOO_OLD,
    SENDING_METHODS,
    WEBHOOK_CONFLICT,
    WRONG_FILE,
    Fault,
)
from bot.sandbox.state import EmulatorState
from bot.sandbox.text import display_name
from bot.sandbox.wire import (
    ApiError,
    ApiParams,
    HttpRequest,
    HttpResponse,
    api_error,
    api_ok,
    bad_request,
)

_MEDIA_KEYS = ("photo", "document", "location", "sticker")

_ApiMethod = Callable[["BotApiMethods", ApiParams], Awaitable[Any]]
_METHODS: dict[str, tuple[str, _ApiMethod]] = {}


def _api(name: str) -> Callable[[_ApiMethod], _ApiMethod]:
    """Register a Bot API method; Telegram matches method names case-insensitively."""

    def register(method: _ApiMethod) -> _ApiMethod:
        _METHODS[name.lower()] = (name, method)
        return method

    return register


class BotApiMethods(EmulatorState):
    """The Bot API as the bot sees it over HTTP, on top of the emulator's state."""

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        self.stats["requests"] += 1
        name = request.path
        recorded: JSON = {}
        try:
            if request.path.startswith("/file/bot"):
                token, _, file_path = request.path.removeprefix("/file/bot").partition("/")
                name, recorded = "/file", {"file_path": file_path}
                response = self._download(token, file_path)
            else:
                token, _, method = request.path.removeprefix("/bot").partition("/")
                if not request.path.startswith("/bot") or not method:
                    raise ApiError(404, "Not Found")
                if token != self.token:
                    raise ApiError(401, "Unauthorized")
                entry = _METHODS.get(method.lower())
                if entry is None:
                    raise ApiError(404, "Not Found")
                name, implementation = entry
                try:
                    values, uploads = request.params()
                except ValueError as exc:
                    raise bad_request(f"can't parse request: {exc}") from None
                params = ApiParams(values, uploads)
                recorded = params.for_record()
                response = api_ok(await self._invoke(name, implementation, params))
        except ApiError as error:
            response = api_error(error)
        self._account(name, recorded, response.status)
        return response

    async def _invoke(self, name: str, implementation: _ApiMethod, params: ApiParams) -> Any:
        fault = self._take_fault(name)
        if fault is not None and not fault.applied:
            raise fault.error()
        result = await implementation(self, params)
        if fault is not None:
            raise fault.error()
        return result

    def _take_fault(self, name: str) -> Fault | None:
        for key in (name.lower(), "*" if name in SENDING_METHODS else None):
            queue = self._faults.get(key) if key else None
            if queue:
                return queue.popleft()
        return None

    def _account(self, name: str, recorded: JSON, status: int) -> None:
        self.calls.append((name, recorded, status))
        if status == 429:
            self.stats["http_429"] += 1
        if 400 <= status < 500:
            self.stats["http_4xx"] += 1
        elif status >= 500:
            self.stats["http_5xx"] += 1
        self._notify()

    def _download(self, token: str, path: str) -> HttpResponse:
        stored = self._files_by_path.get(path)
        if token != self.token or stored is None:
            raise ApiError(404, "Not Found")
        return HttpResponse(200, stored.data, stored.mime_type)

    # -- Bot API methods ------------------------------------------------------------------

    @_api("getMe")
    async def _get_me(self, p: ApiParams) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    @_api("getUpdates")
    async def _get_updates(self, p: ApiParams) -> list[JSON]:
        if self.webhook_url:
            raise ApiError(409, WEBHOOK_CONFLICT)
        offset = p.integer("offset")
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = max(p.number("timeout") or 0.0, 0.0)
        allowed = p.json("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        if offset is not None and offset < 0:
            del self._updates[:offset]
        elif offset is not None:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older poll still waiting is answered with 409, as by Telegram

        def ready() -> bool:
            return bool(self._deliverable()) or self._poll_generation != generation

        if timeout > 0 and not ready():
            self.waiting_polls += 1
            self._notify()
            try:
                await self._wait_until(ready, timeout)
            finally:
                self.waiting_polls -= 1
        if self._poll_generation != generation:
            raise ApiError(409, POLL_CONFLICT)
        return self._deliverable()[:limit]

    def _deliverable(self) -> list[JSON]:
        """Pending updates, dropping kinds excluded by allowed_updates as Telegram does."""
        if self._allowed_updates:
            allowed = set(self._allowed_updates)
            self._updates = [u for u in self._updates if not set(u) - {"update_id"} - allowed]
        return self._updates

    @_api("setWebhook")
    async def _set_webhook(self, p: ApiParams) -> bool:
        url = p.text("url") or ""
        if url and not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    @_api("deleteWebhook")
    async def _delete_webhook(self, p: ApiParams) -> bool:
        self.webhook_url = ""
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    @_api("getWebhookInfo")
    async def _get_webhook_info(self, p: ApiParams) -> JSON:
        info: JSON = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    @staticmethod
    def _commands_key(p: ApiParams) -> tuple[str, str]:
        """Commands are kept per (scope, language), as Telegram resolves them."""
        scope = p.json("scope") or {"type": "default"}
        if not isinstance(scope, dict):
            raise bad_request("can't parse BotCommandScope JSON object")
        return (repr(sorted(scope.items())), p.text("language_code") or "")

    @_api("setMyCommands")
    async def _set_my_commands(self, p: ApiParams) -> bool:
        commands = p.json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be an array of at most 100 BotCommand objects")
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("command description must be 1-256 characters")
        self.commands[self._commands_key(p)] = commands
        return True

    @_api("getMyCommands")
    async def _get_my_commands(self, p: ApiParams) -> list[JSON]:
        return self.commands.get(self._commands_key(p), [])

    @_api("deleteMyCommands")
    async def _delete_my_commands(self, p: ApiParams) -> bool:
        self.commands.pop(self._commands_key(p), None)
        return True

    @_api("setChatMenuButton")
    async def _set_chat_menu_button(self, p: ApiParams) -> bool:
        if "chat_id" in p:
            self._chat(p)
        key = f"menu_button:{p.chat_ref() or 'default'}"
        self.settings[key] = p.json("menu_button") or {"type": "default"}
        return True

    @_api("getChatMenuButton")
    async def _get_chat_menu_button(self, p: ApiParams) -> JSON:
        chosen = self.settings.get(f"menu_button:{p.chat_ref() or 'default'}")
        return chosen or self.settings.get("menu_button:default") or {"type": "commands"}

    @_api("sendChatAction")
    async def _send_chat_action(self, p: ApiParams) -> bool:
        self._sending_chat(p)
        if not p.text("action"):
            raise bad_request("action is empty")
        return True

    @_api("sendMessage")
    async def _send_message(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        return self._post(chat_id, p, self._text(p), p.text("parse_mode"))

    @_api("sendPhoto")
    async def _send_photo(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        caption, parse_mode = self._caption(p)
        photo = self._input_file(p, "photo")
        return self._post(chat_id, p, {"photo": photo.media, **caption}, parse_mode)

    @_api("sendDocument")
    async def _send_document(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        caption, parse_mode = self._caption(p)
        document = self._input_file(p, "document")
        return self._post(chat_id, p, {"document": document.media, **caption}, parse_mode)

    @_api("sendSticker")
    async def _send_sticker(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        sticker = self._input_file(p, "sticker")
        return self._post(chat_id, p, {"sticker": sticker.media})

    @_api("sendLocation")
    async def _send_location(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        latitude, longitude = p.number("latitude"), p.number("longitude")
        if latitude is None or not -90 <= latitude <= 90:
            raise bad_request("wrong latitude specified")
        if longitude is None or not -180 <= longitude <= 180:
            raise bad_request("wrong longitude specified")
        location = {"latitude": latitude, "longitude": longitude}
        return self._post(chat_id, p, {"location": location})

    @_api("copyMessage")
    async def _copy_message(self, p: ApiParams) -> JSON:
        chat_id = self._sending_chat(p)
        source = self._messages.get((self._chat(p, "from_chat_id"), p.integer("message_id") or 0))
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

    @_api("editMessageText")
    async def _edit_message_text(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        if "text" not in stored.message:
            raise bad_request("there is no text in the message to edit")
        changes = self._text(p)
        changes["reply_markup"] = self._markup(p)[0]
        edited = self._apply_edit(stored, "editMessageText", changes)
        stored.parse_mode = p.text("parse_mode")
        return edited

    @_api("editMessageCaption")
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

    @_api("editMessageReplyMarkup")
    async def _edit_message_reply_markup(self, p: ApiParams) -> JSON:
        stored = self._editable(p)
        changes = {"reply_markup": self._markup(p)[0]}
        return self._apply_edit(stored, "editMessageReplyMarkup", changes)

    @_api("deleteMessage")
    async def _delete_message(self, p: ApiParams) -> bool:
        stored = self._messages.get((self._chat(p), p.integer("message_id") or 0))
        if stored is None or stored.deleted:
            raise bad_request("message to delete not found")
        stored.deleted = True
        self._log_line(stored.message, " (deleted)")
        self._notify()
        return True

    @_api("answerCallbackQuery")
    async def _answer_callback_query(self, p: ApiParams) -> bool:
        query_id = p.text("callback_query_id") or ""
        query = self._queries.get(query_id)
        if (
            query is None
            or query.answered
            or time.monotonic() - query.created > self.callback_query_ttl
        ):
            raise bad_request(QUERY_TOO_OLD)
        query.answered = True
        answer = {
            "query_id": query_id,
            "text": p.text("text"),
            "show_alert": p.flag("show_alert"),
            "url": p.text("url"),
            "user_id": query.user_id,
        }
        self.callback_answers.append(answer)
        if answer["text"]:
            kind = "alert" if answer["show_alert"] else "toast"
            user = display_name(self._users.get(query.user_id, {}))
            self._transcript.append(f"  ({kind} to {user}) {answer['text']}")
        self._notify()
        return True

    @_api("getFile")
    async def _get_file(self, p: ApiParams) -> JSON:
        stored = self._files.get(p.text("file_id") or "")
        if stored is None:
            raise bad_request(WRONG_FILE)
        return stored.as_file()

    @_api("getChat")
    async def _get_chat(self, p: ApiParams) -> JSON:
        gift_types = (
            "unlimited_gifts",
            "limited_gifts",
            "unique_gifts",
            "premium_subscription",
            "gifts_from_channels",
        )
        chat = copy.deepcopy(self._chats[self._chat(p)])
        chat["accent_color_id"] = 0
        chat["max_reaction_count"] = 11
        chat["accepted_gift_types"] = dict.fromkeys(gift_types, False)
        return chat

    @_api("close")
    async def _close(self, p: ApiParams) -> bool:
        return True

    @_api("logOut")
    async def _log_out(self, p: ApiParams) -> bool:
        return True


def _recorder(name: str) -> _ApiMethod:
    """Settings the emulator only needs to remember, for tests to read from `settings`."""

    async def record(emu: BotApiMethods, p: ApiParams) -> bool:
        emu.settings[name] = p.for_record()
        return True

    return record


for _name in ("setMyDescription", "setMyShortDescription", "setMyName"):
    _api(_name)(_recorder(_name))
