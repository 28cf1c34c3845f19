"""The unit of work a handler runs in: one database transaction per update, opened before the
handlers run and committed after them by the update runner (like a middleware), so handlers
never open sessions themselves and an update's effects commit together with its inbox row."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from bot.i18n import normalise
from models.desk import Desk, DeskError
from models.outbox import Button, queue
from models.people import Actor, actor_for
from models.throttle import Guesses
from models.zone.config import ZoneConfig


@dataclass
class CallbackAnswer:
    query_id: str
    text: str | None
    alert: bool = False


@dataclass
class Work:
    desk: Desk
    user_id: int | None
    user_language: str | None
    chat_id: int | None
    actor: Actor | None = None
    answers: list[CallbackAnswer] = field(default_factory=list)
    failed: BaseException | None = None
    # wrong invite codes per account (the runner's, kept across updates); None: not counted
    guesses: Guesses | None = None

    @property
    def session(self) -> Session:
        return self.desk.session

    @property
    def zone(self) -> ZoneConfig:
        return self.desk.zone

    @property
    def locale(self) -> str:
        if self.actor is not None and self.actor.me.language:
            return self.actor.me.language
        if self.actor is None and self.user_language:
            return normalise(self.user_language)
        return self.zone.language

    def refresh_actor(self) -> Actor | None:
        self.actor = None if self.user_id is None else actor_for(self.session, self.user_id)
        return self.actor

    def say(
        self,
        key: str,
        params: dict[str, Any] | None = None,
        *,
        buttons: Sequence[Sequence[Button]] | None = None,
        chat_id: int | None = None,
        edit_of: int | None = None,
    ) -> int | None:
        """Answer in the current chat, through the outbox, in the reader's language (or
        rewrite an answer already given, `edit_of` its outbox row); the row's id."""
        target = chat_id if chat_id is not None else self.chat_id
        if target is None:
            return None
        return queue(
            self.session,
            self.desk.now,
            chat_id=target,
            template=key,
            locale=self.locale,
            params=params,
            buttons=buttons,
            edit_of=edit_of,
        )

    def refuse(self, error: DeskError) -> None:
        self.say(error.key, error.params)

    def answer(
        self, query_id: str, key: str | None = None, alert: bool = False, **params: Any
    ) -> None:
        from bot.i18n import t

        text = t(self.locale, key, **params) if key else None
        self.answers.append(CallbackAnswer(query_id, text, alert))


log = logging.getLogger(__name__)

_current: ContextVar[Work] = ContextVar("squadbot_work")


def work() -> Work:
    return _current.get()


def begin(w: Work) -> Any:
    return _current.set(w)


def end(token: Any) -> None:
    _current.reset(token)


async def remember_error(update: object, context: Any) -> None:
    """Handler errors are handed back to the update's unit of work, which rolls it back."""
    current = _current.get(None)
    if current is not None and context.error is not None:
        current.failed = context.error
    else:
        log.error("error outside an update: %s", context.error)
