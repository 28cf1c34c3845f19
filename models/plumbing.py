"""Rows for everything that enters or leaves the process: the inbox of raw updates, the
outbox of messages to send, the alert ledger, and invite codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, SmallInteger, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.db import UtcDateTime


class InboxUpdate(SQLModel, table=True):
    """One update as Telegram sent it, stored before it is confirmed. Telegram may start
    update ids again from a random number after a week without updates, so the id alone
    does not identify an update: a redelivery is the same id with the same body (digest)."""

    __table_args__ = (UniqueConstraint("update_id", "digest"),)
    id: int | None = Field(default=None, primary_key=True)
    update_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    digest: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    processed_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True)
    )
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # set when the update is given up on (it cannot be parsed, or its handling failed the
    # same way every time); `squadbot inbox retry` clears it
    dead_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    # the chat it came from (None: no chat, or stored before 0010): a chat's updates are
    # handled in order, by one process at a time
    chat_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # the process handling it, and until when unless renewed (models/leases.py)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class OutboxMessage(SQLModel, table=True):
    """One message to send. The dispatcher sends, among the chats whose first pending row
    is due (`next_attempt_at`: a hold after a 429, a retry's backoff, pacing), the highest
    `priority` first (models.outbox.LANES), then the oldest; never a chat's second row before
    its first. `ix_outbox_head` finds each chat's first pending row from the index alone."""

    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_head", "state", "channel", "chat_id", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    channel: str = "telegram"
    chat_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    kind: str = "text"
    template: str
    params: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    locale: str = "zh-CN"
    buttons: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    file_id: str | None = None
    # a file written for this message (a chart, a ledger), sent as an upload when there is
    # no file_id; the row owns it, and it is removed once the message is sent
    local_path: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reply_to_outbox: int | None = None
    edit_of: int | None = None
    ticket_id: int | None = Field(default=None, index=True)
    link_role: str | None = None
    webhook: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    dedupe_key: str | None = Field(default=None, unique=True, max_length=120)
    state: str = "pending"
    # the lane (models.outbox.Lane): higher goes first among chats ready to send
    priority: int = Field(
        default=1, sa_column=Column(SmallInteger, nullable=False, server_default="1")
    )
    attempts: int = 0
    # not before this time: when it was queued, or until a hold or a retry's backoff ends
    next_attempt_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_error: str | None = None
    # the process sending it, and until when unless renewed (models/leases.py): while a
    # chat's first row is leased, no other process sends that chat anything
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class AlertRecord(SQLModel, table=True):
    """The alert ledger: one row per ticket, deadline, level and cycle, so nothing fires twice.
    The unique key's index, ticket first, is also how a ticket's rows are found."""

    __table_args__ = (UniqueConstraint("ticket_id", "deadline", "level", "cycle"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    deadline: str
    level: str
    cycle: int = 0
    due_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    fired_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ScheduledRun(SQLModel, table=True):
    """The ledger of calendar jobs (the morning digest, the monthly ranking): one row per job
    and period, inserted in the same transaction as what the job sends, so a restart or a
    second process finds the row and sends nothing twice."""

    key: str = Field(primary_key=True, max_length=64)  # e.g. digest:2026-11-24
    ran_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Invite(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=32)
    role: str
    squad_id: int | None = Field(default=None, foreign_key="squad.id")
    project_id: int | None = Field(default=None, foreign_key="project.id")
    person_key: str | None = None
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    used_by: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
