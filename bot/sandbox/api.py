"""The Bot API of the sandbox emulator as the bot sees it over HTTP: the dispatch of each
request (token check, method lookup, injected faults, request accounting, file downloads)
and the methods that are not about sending messages (updates, webhooks, commands, menu
button, callback answers, files, chats). The sending methods live in `bot.sandbox.sending`."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from typing import Any
from urllib.parse import urlsplit

from bot.sandbox.records import (
    JSON,
    POLL_CONFLICT,
    QUERY_TOO_OLD,
    SENDING_METHODS,
    WEBHOOK_CONFLICT,
    WRONG_FILE,
    Fault,
    FloodGate,
)
from bot.sandbox.sending import SendingMethods
from bot.sandbox.state import EmulatorState
from bot.sandbox.text import display_name
from bot.sandbox.webhook import WebhookPoster
from bot.sandbox.wire import (
    ApiError,
    ApiMethod,
    ApiParams,
    HttpRequest,
    HttpResponse,
    api_error,
    api_ok,
    bad_request,
)

WEBHOOK_PORTS = (443, 80, 88, 8443)

# Settings the emulator only needs to remember, for tests to read from `settings`.
_RECORDED = ("setMyDescription", "setMyShortDescription", "setMyName")


class BotApi:
    """Answers the HTTP requests of one bot from its method table. Telegram matches method
    names case-insensitively, so the table is keyed by the lower-case name."""

    def __init__(self, state: EmulatorState, flood: FloodGate | None) -> None:
        self._state = state
        self._sending = SendingMethods(state, flood)
        self.poster = WebhookPoster(state)  # posts the updates while a webhook is set
        table = {**self._table(), **self._sending.table()}
        self._methods: dict[str, tuple[str, ApiMethod]] = {
            name.lower(): (name, method) for name, method in table.items()
        }

    def _table(self) -> dict[str, ApiMethod]:
        table: dict[str, ApiMethod] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "getChat": self._get_chat,
            "close": self._close,
            "logOut": self._log_out,
        }
        for name in _RECORDED:
            table[name] = self._recorder(name)
        return table

    # -- HTTP -----------------------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse:
        self._state.stats["requests"] += 1
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
                if token != self._state.token:
                    raise ApiError(401, "Unauthorized")
                entry = self._methods.get(method.lower())
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

    async def _invoke(self, name: str, implementation: ApiMethod, params: ApiParams) -> Any:
        if name in SENDING_METHODS and self._state.sending_latency > 0:
            await asyncio.sleep(self._state.sending_latency)
        fault = self._take_fault(name, params.chat_ref())
        if fault is not None and not fault.applied:
            raise fault.error()
        result = await implementation(params)
        if fault is not None:
            raise fault.error()
        return result

    def _take_fault(self, name: str, chat: int | str | None) -> Fault | None:
        for key in (name.lower(), "*" if name in SENDING_METHODS else None):
            for scoped in (f"{key}@{chat}", key) if key else ():
                queue = self._state.faults.get(scoped)
                if queue:
                    return queue.popleft()
        rate = self._state.fault_rate
        return rate.draw(name) if rate is not None else None

    def _account(self, name: str, recorded: JSON, status: int) -> None:
        stats = self._state.stats
        self._state.calls.append((name, recorded, status))
        if status == 429:
            stats["http_429"] += 1
        if 400 <= status < 500:
            stats["http_4xx"] += 1
        elif status >= 500:
            stats["http_5xx"] += 1
        self._state.notify()

    def _download(self, token: str, path: str) -> HttpResponse:
        stored = self._state.files_by_path.get(path)
        if token != self._state.token or stored is None:
            raise ApiError(404, "Not Found")
        return HttpResponse(200, stored.data, stored.mime_type)

    # -- the bot and its updates ----------------------------------------------------------

    async def _get_me(self, p: ApiParams) -> JSON:
        return {
            **self._state.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self._state.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, p: ApiParams) -> list[JSON]:
        state = self._state
        if state.webhook_url:
            raise ApiError(409, WEBHOOK_CONFLICT)
        offset = p.integer("offset")
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = max(p.number("timeout") or 0.0, 0.0)
        allowed = p.json("allowed_updates")
        if isinstance(allowed, list):
            state.allowed_updates = [str(kind) for kind in allowed]
        if offset is not None and offset < 0:
            del state.updates[:offset]
        elif offset is not None:
            state.updates = [u for u in state.updates if u["update_id"] >= offset]
        state.poll_generation += 1
        generation = state.poll_generation
        state.notify()  # an older poll still waiting is answered with 409, as by Telegram

        def ready() -> bool:
            return bool(self._deliverable()) or state.poll_generation != generation

        if timeout > 0 and not ready():
            state.waiting_polls += 1
            state.notify()
            try:
                await state.changes.wait_until(ready, timeout)
            finally:
                state.waiting_polls -= 1
        if state.poll_generation != generation:
            raise ApiError(409, POLL_CONFLICT)
        return self._deliverable()[:limit]

    def _deliverable(self) -> list[JSON]:
        """Pending updates, dropping kinds excluded by allowed_updates as Telegram does."""
        state = self._state
        if state.allowed_updates:
            allowed = set(state.allowed_updates)
            state.updates = [u for u in state.updates if not set(u) - {"update_id"} - allowed]
        return state.updates

    async def _set_webhook(self, p: ApiParams) -> bool:
        state = self._state
        url = p.text("url") or ""
        if not url:
            return await self._delete_webhook(p)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise bad_request("bad webhook: can't parse URL") from None
        if parts.scheme != "https" or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if port is not None and port not in WEBHOOK_PORTS:
            raise bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
            )
        secret = p.text("secret_token") or ""
        if len(secret) > 256:
            raise bad_request("secret token is too long")
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]+", secret):
            raise bad_request("secret token contains unallowed characters")
        allowed = p.json("allowed_updates")
        if isinstance(allowed, list):
            state.allowed_updates = [str(kind) for kind in allowed]
        state.webhook_url = url
        state.webhook_secret = secret
        state.webhook_max_connections = min(max(p.integer("max_connections") or 40, 1), 100)
        state.webhook_ip_address = p.text("ip_address") or ""
        state.webhook_last_error = None
        if p.flag("drop_pending_updates"):
            state.updates.clear()
            self.poster.forget()
        self.poster.start()
        state.notify()
        return True

    async def _delete_webhook(self, p: ApiParams) -> bool:
        state = self._state
        state.webhook_url = ""
        state.webhook_secret = ""
        if p.flag("drop_pending_updates"):
            state.updates.clear()
            self.poster.forget()
        state.notify()
        return True

    async def _get_webhook_info(self, p: ApiParams) -> JSON:
        state = self._state
        info: JSON = {
            "url": state.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(state.updates),
        }
        if state.webhook_url:
            if state.webhook_ip_address:
                info["ip_address"] = state.webhook_ip_address
            if state.webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = state.webhook_last_error
            info["max_connections"] = state.webhook_max_connections
        if state.allowed_updates:
            info["allowed_updates"] = list(state.allowed_updates)
        return info

    # -- commands, menu button and other settings -----------------------------------------

    @staticmethod
    def _commands_key(p: ApiParams) -> tuple[str, str]:
        """Commands are kept per (scope, language), as Telegram resolves them."""
        scope = p.json("scope") or {"type": "default"}
        if not isinstance(scope, dict):
            raise bad_request("can't parse BotCommandScope JSON object")
        return (repr(sorted(scope.items())), p.text("language_code") or "")

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
        self._state.commands[self._commands_key(p)] = commands
        return True

    async def _get_my_commands(self, p: ApiParams) -> list[JSON]:
        return self._state.commands.get(self._commands_key(p), [])

    async def _delete_my_commands(self, p: ApiParams) -> bool:
        self._state.commands.pop(self._commands_key(p), None)
        return True

    async def _set_chat_menu_button(self, p: ApiParams) -> bool:
        if "chat_id" in p:
            self._state.find_chat(p)
        key = f"menu_button:{p.chat_ref() or 'default'}"
        self._state.settings[key] = p.json("menu_button") or {"type": "default"}
        return True

    async def _get_chat_menu_button(self, p: ApiParams) -> JSON:
        settings = self._state.settings
        chosen = settings.get(f"menu_button:{p.chat_ref() or 'default'}")
        return chosen or settings.get("menu_button:default") or {"type": "commands"}

    def _recorder(self, name: str) -> ApiMethod:
        async def record(p: ApiParams) -> bool:
            self._state.settings[name] = p.for_record()
            return True

        return record

    # -- callback queries, files and chats ------------------------------------------------

    async def _answer_callback_query(self, p: ApiParams) -> bool:
        state = self._state
        query_id = p.text("callback_query_id") or ""
        query = state.queries.get(query_id)
        if (
            query is None
            or query.answered
            or time.monotonic() - query.created > state.callback_query_ttl
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
        state.callback_answers.append(answer)
        if answer["text"]:
            kind = "alert" if answer["show_alert"] else "toast"
            user = display_name(state.users.get(query.user_id, {}))
            state.transcript.append(f"  ({kind} to {user}) {answer['text']}")
        state.notify()
        return True

    async def _get_file(self, p: ApiParams) -> JSON:
        stored = self._state.files.get(p.text("file_id") or "")
        if stored is None:
            raise bad_request(WRONG_FILE)
        return stored.as_file()

    async def _get_chat(self, p: ApiParams) -> JSON:
        gift_types = (
            "unlimited_gifts",
            "limited_gifts",
            "unique_gifts",
            "premium_subscription",
            "gifts_from_channels",
        )
        chat = copy.deepcopy(self._state.chats[self._state.find_chat(p)])
        chat["accent_color_id"] = 0
        chat["max_reaction_count"] = 11
        chat["accepted_gift_types"] = dict.fromkeys(gift_types, False)
        return chat

    async def _close(self, p: ApiParams) -> bool:
        return True

    async def _log_out(self, p: ApiParams) -> bool:
        return True
