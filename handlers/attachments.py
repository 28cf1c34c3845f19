"""Turning a Telegram message's photo, document or location into an attachment row."""

from __future__ import annotations

from datetime import datetime

from telegram import Message

from models.ticket import Attachment


def attachment_of(message: Message, now: datetime) -> Attachment | None:
    if message.photo:
        biggest = message.photo[-1]
        return Attachment(
            kind="photo",
            file_id=biggest.file_id,
            file_unique_id=biggest.file_unique_id,
            added_at=now,
        )
    if message.document is not None:
        doc = message.document
        return Attachment(
            kind="document",
            file_id=doc.file_id,
            file_unique_id=doc.file_unique_id,
            file_name=doc.file_name,
            mime_type=doc.mime_type,
            added_at=now,
        )
    if message.location is not None:
        return Attachment(
            kind="location",
            latitude=message.location.latitude,
            longitude=message.location.longitude,
            added_at=now,
        )
    return None
