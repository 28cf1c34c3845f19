"""Tickets written straight into a zone database with chosen timestamps, for the figures'
tests: each test states a month of tickets and works out its figures by hand."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.org import Person, Project, Squad
from models.plumbing import AlertRecord
from models.ticket import Ticket, TicketEvent

SH = ZoneInfo("Asia/Shanghai")
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def sh(month: int, day: int, hour: int = 0, minute: int = 0, *, year: int = 2026) -> datetime:
    """A moment in Shanghai's time, as the aware UTC instant the database keeps."""
    return datetime(year, month, day, hour, minute, tzinfo=SH).astimezone(UTC)


@dataclass
class Book:
    """Writes tickets for the squads of the example zone, known by their codes."""

    engine: Engine
    squads: dict[str, int] = field(default_factory=dict)
    projects: dict[str, int] = field(default_factory=dict)  # squad code -> a project of it
    people: dict[str, int] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        with Session(self.engine) as session:
            for squad in session.exec(select(Squad)).all():
                assert squad.id is not None
                self.squads[squad.code] = squad.id
            for project in session.exec(select(Project).order_by(col(Project.code))).all():
                for code, sid in self.squads.items():
                    if project.squad_id == sid and project.id is not None:
                        self.projects.setdefault(code, project.id)
            for person in session.exec(select(Person)).all():
                assert person.id is not None
                self.people[person.key] = person.id

    def ticket(
        self,
        squad: str,
        filed: datetime,
        *,
        first: timedelta | None = None,
        resolved: timedelta | None = None,
        resolve_due: timedelta | None = None,
        response_in: timedelta = 10 * MIN,
        handling_in: timedelta | None = 2 * HOUR,
        state: str | None = None,
        rating: int | None = None,
        cycle: int = 0,
        owner: str | None = None,
        category: str = "water",
        summary: str | None = None,
        **extra: Any,
    ) -> int:
        """One ticket; times are offsets from `filed`. The state follows from what
        happened unless given: closed when rated, resolved when resolved, claimed when
        answered, else open."""
        if state is None:
            if resolved is not None:
                state = "closed" if rating is not None else "resolved"
            else:
                state = "claimed" if first is not None else "open"
        values: dict[str, Any] = {
            "number": f"{squad}-{next(self.numbers):04d}",
            "project_id": self.projects.get(squad),
            "squad_id": self.squads[squad],
            "enterprise_id": self.people["qian.hao"],
            "category_code": category,
            "description": f"{squad} 的问题",
            "state": state,
            "owner_id": self.people[owner] if owner else None,
            "cycle": cycle,
            "created_at": filed,
            "updated_at": filed,
            "first_response_at": filed + first if first is not None else None,
            "response_due": filed + response_in,
            "handling_due": filed + handling_in if handling_in is not None else None,
            "resolved_at": filed + resolved if resolved is not None else None,
            "resolve_due": None,
            "closed_at": filed + resolved if resolved is not None and state == "closed" else None,
            "rating": rating,
        }
        if resolved is not None:
            due = resolve_due if resolve_due is not None else handling_in
            values["resolve_due"] = filed + due if due is not None else None
        for name, value in extra.items():
            values[name] = filed + value if isinstance(value, timedelta) else value
        with Session(self.engine) as session:
            ticket = Ticket(**values)
            session.add(ticket)
            session.flush()
            assert ticket.id is not None
            if summary is not None and resolved is not None:
                session.add(
                    TicketEvent(
                        ticket_id=ticket.id,
                        at=filed + resolved,
                        action="resolved",
                        detail=f'{{"summary": "{summary}"}}',
                    )
                )
            session.commit()
            return ticket.id

    def alert(self, ticket_id: int, deadline: str, level: str, *, cycle: int = 0) -> None:
        with Session(self.engine) as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            session.add(
                AlertRecord(
                    ticket_id=ticket_id,
                    deadline=deadline,
                    level=level,
                    cycle=cycle,
                    due_at=ticket.created_at,
                    fired_at=ticket.created_at,
                )
            )
            session.commit()


@dataclass(frozen=True)
class November:
    """The month the figures' tests work out by hand (see tests/test_figures.py)."""

    ids: dict[str, int]


def november(book: Book) -> November:
    """PV: P1-P7 filed in November (plus O1 filed in the last minute of October, resolved
    in November, and D1 filed at the first instant of December); HV: H1-H4; EV: none."""
    t = book.ticket
    ids = {
        # kept both promises, rated 5
        "P1": t("PV", sh(11, 3, 10), first=5 * MIN, resolved=HOUR, rating=5, owner="zhou.jun"),
        # late reply, late resolution, rated 3; the ledger has its alerts
        "P2": t("PV", sh(11, 3, 11), first=15 * MIN, resolved=3 * HOUR, rating=3, owner="zhou.jun"),
        # waited 3 hours on the enterprise: the resumed deadline is 5 h after filing
        "P3": t(
            "PV",
            sh(11, 4, 9),
            first=2 * MIN,
            resolved=4 * HOUR,
            resolve_due=5 * HOUR,
            handling_in=5 * HOUR,
            rating=4,
            owner="xu.hui",
        ),
        # an approved extension moved handling from 2 h to 6 h; awaiting confirmation
        "P4": t(
            "PV",
            sh(11, 5, 9),
            first=3 * MIN,
            resolved=5 * HOUR,
            handling_in=6 * HOUR,
            owner="xu.hui",
            summary="临时供水已接通",
        ),
        # a plan agreed in 20 h (due in 24 h), its target (20 Nov) passed unresolved
        "P5": t(
            "PV",
            sh(11, 6, 9),
            first=MIN,
            handling_in=None,
            plan_required=True,
            plan_due=20 * HOUR,
            plan_agreed_at=20 * HOUR,
            plan_agreed_due=24 * HOUR,
            plan_target=sh(11, 20, 18) - sh(11, 6, 9),
            owner="wu.gang",
        ),
        # reworked after a poor rating: fresh handling from 24 h, due at 26 h, done at 30 h
        "P6": t(
            "PV",
            sh(11, 7, 9),
            first=5 * MIN,
            resolved=30 * HOUR,
            resolve_due=26 * HOUR,
            rating=2,
            cycle=1,
            owner="zhou.jun",
        ),
        # ten minutes before midnight on the 30th: November's, answered and resolved in
        # December (reply late at 15 min, resolved at 01:00 within its 2 h)
        "P7": t("PV", sh(11, 30, 23, 50), first=15 * MIN, resolved=70 * MIN, owner="zhou.jun"),
        # the last minute of October, resolved in November
        "O1": t("PV", sh(10, 31, 23, 59), first=5 * MIN, resolved=31 * MIN, rating=5),
        # the first instant of December, nobody answered
        "D1": t("PV", sh(12, 1, 0, 0)),
        # nobody claimed it: both promises missed, the ledger escalated it
        "H1": t("HV", sh(11, 10, 9)),
        # waiting on the enterprise with an hour left: handling not decided
        "H2": t(
            "HV",
            sh(11, 11, 9),
            first=5 * MIN,
            state="waiting",
            handling_remaining_s=3600,
            owner="hu.bin",
        ),
        # paused only after its deadline had passed: handling missed
        "H3": t(
            "HV",
            sh(11, 12, 9),
            first=5 * MIN,
            state="waiting",
            handling_remaining_s=0,
            owner="hu.bin",
        ),
        # kept both, rated 5; closed itself (an auto-close row in the ledger is no alert)
        "H4": t("HV", sh(11, 13, 9), first=8 * MIN, resolved=HOUR, rating=5, owner="guo.tao"),
    }
    book.alert(ids["P2"], "response", "warning")
    book.alert(ids["P2"], "response", "breach")
    book.alert(ids["P2"], "handling", "breach")
    for deadline, level in (
        ("response", "warning"),
        ("response", "breach"),
        ("handling", "warning"),
        ("handling", "breach"),
        ("handling", "supervision"),
    ):
        book.alert(ids["H1"], deadline, level)
    book.alert(ids["H4"], "auto_close", "breach")
    return November(ids)
