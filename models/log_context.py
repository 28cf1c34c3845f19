"""What a log line is about: the update being handled, the chat, the ticket. Set where they
are known (the inbox runner for an update and its chat, the dispatcher for a message's chat
and ticket, the desk whenever a ticket's history gets a row) and written by the JSON log
format (SQUADBOT_LOG_FORMAT=json, bot/logs.py) into every line logged meanwhile. Context
variables, so each asyncio task (the dispatcher sends each message in its own) and each
worker thread carries its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

update_id: ContextVar[int | None] = ContextVar("squadbot_update_id", default=None)
chat: ContextVar[int | None] = ContextVar("squadbot_chat", default=None)
ticket: ContextVar[str | None] = ContextVar("squadbot_ticket", default=None)

_FIELDS: dict[str, ContextVar[Any]] = {"update_id": update_id, "chat": chat, "ticket": ticket}
# inside an `about` scope: only there may the work name its ticket
_scoped: ContextVar[bool] = ContextVar("squadbot_log_scope", default=False)


@contextmanager
def about(**values: Any) -> Iterator[None]:
    """Lines logged inside are about these (update_id=, chat=, ticket=) and nothing else;
    every field is put back as it was on the way out, a ticket named inside too."""
    tokens: list[tuple[ContextVar[Any], Token[Any]]] = [
        (var, var.set(values.get(name))) for name, var in _FIELDS.items()
    ]
    tokens.append((_scoped, _scoped.set(True)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def about_ticket(number: str | None) -> None:
    """The ticket the current work is about, until the enclosing `about` ends. Outside one
    (a worker thread that goes on to other work) nothing is set, so nothing goes stale."""
    if number and _scoped.get():
        ticket.set(number)


def current() -> dict[str, Any]:
    """The fields known now, for a log line."""
    found = {name: var.get() for name, var in _FIELDS.items()}
    return {name: value for name, value in found.items() if value is not None}
