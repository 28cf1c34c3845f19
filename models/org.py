"""The zone's organisation: projects, squads, people, their roles, categories and SLA rules.
Loaded from the zone file; people become reachable once they bind Telegram via an invite."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


class Role(StrEnum):
    ENTERPRISE = "enterprise"
    MEMBER = "member"
    LEAD = "lead"
    MANAGER = "manager"
    ADMIN = "admin"


# The zone's own people; they never also speak for an enterprise.
STAFF_ROLES: tuple[str, ...] = (Role.LEAD, Role.MEMBER, Role.MANAGER, Role.ADMIN)


class Squad(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=32)
    name: str
    is_intake: bool = False
    group_chat_id: int | None = Field(default=None, sa_column=Column(BigInteger, index=True))
    active: bool = True


class Project(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=32)
    name: str
    enterprise: str
    number_prefix: str = Field(max_length=8)
    squad_id: int | None = Field(default=None, foreign_key="squad.id")
    active: bool = True


class Person(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=64)
    name: str
    phone: str | None = None
    telegram_user_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, unique=True, nullable=True)
    )
    language: str | None = None
    from_file: bool = False


class Membership(SQLModel, table=True):
    """A person's role; enterprise roles point at a project, squad roles at a squad."""

    __table_args__ = (UniqueConstraint("person_id", "role", "squad_id", "project_id"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    role: str
    squad_id: int | None = Field(default=None, foreign_key="squad.id", index=True)
    project_id: int | None = Field(default=None, foreign_key="project.id")
    is_top: bool = False
    source: str = "file"
    active: bool = True


class Category(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=32)
    name_zh: str
    name_en: str
    position: int = 0
    active: bool = True


class SlaRule(SQLModel, table=True):
    """Targets for a (category, urgency) pair; NULL means 'any'."""

    __table_args__ = (UniqueConstraint("category_code", "urgency"),)
    id: int | None = Field(default=None, primary_key=True)
    category_code: str | None = None
    urgency: str | None = None
    response_s: int
    handling_s: int
    plan_s: int
    warn_ratio: float = 0.8
    supervision_s: int = 3600
    clock: str | None = Field(default=None, max_length=20)


class ZoneSetting(SQLModel, table=True):
    key: str = Field(primary_key=True, max_length=64)
    value: str
