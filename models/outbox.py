"""Writing outgoing messages. Rows are added in the caller's transaction, so a message exists
exactly when the change that caused it was committed. Text is rendered at send time from a
catalog key, in the recipient's language, so the domain holds no wording."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from models.plumbing import OutboxMessage

Button = tuple[str, str]  # (catalog key or "=literal label", callback token)


def enqueue(
    session: Session,
    now: datetime,
    *,
    chat_id: int,
    template: str,
    locale: str,
    params: dict[str, Any] | None = None,
    buttons: Sequence[Sequence[Button]] | None = None,
    kind: str = "text",
    file_id: str | None = None,
    ticket_id: int | None = None,
    link_role: str | None = None,
    reply_to_outbox: int | None = None,
    edit_of: int | None = None,
    dedupe_key: str | None = None,
) -> OutboxMessage:
    row = OutboxMessage(
        created_at=now,
        chat_id=chat_id,
        kind=kind,
        template=template,
        params=json.dumps(params or {}, ensure_ascii=False, default=str),
        locale=locale,
        buttons=json.dumps([list(map(list, r)) for r in buttons], ensure_ascii=False)
        if buttons
        else None,
        file_id=file_id,
        ticket_id=ticket_id,
        link_role=link_role,
        reply_to_outbox=reply_to_outbox,
        edit_of=edit_of,
        dedupe_key=dedupe_key,
        next_attempt_at=now,
    )
    session.add(row)
    session.flush()
    return row


def enqueue_webhook(
    session: Session,
    now: datetime,
    *,
    target: dict[str, Any],
    template: str,
    params: dict[str, Any],
    locale: str,
    ticket_id: int | None,
    dedupe_key: str | None = None,
) -> OutboxMessage:
    row = OutboxMessage(
        created_at=now,
        channel="webhook",
        template=template,
        params=json.dumps(params, ensure_ascii=False, default=str),
        locale=locale,
        ticket_id=ticket_id,
        webhook=json.dumps(target, ensure_ascii=False),
        dedupe_key=dedupe_key,
        next_attempt_at=now,
    )
    session.add(row)
    session.flush()
    return row


def time_param(value: datetime | None) -> dict[str, str] | None:
    """A datetime the renderer shows in the zone's local time."""
    return None if value is None else {"time": value.isoformat()}


def category_param(code: str) -> dict[str, str]:
    return {"category": code}


def state_param(state: str) -> dict[str, str]:
    return {"state": state}


def text_key(key: str) -> dict[str, str]:
    return {"key": key}
