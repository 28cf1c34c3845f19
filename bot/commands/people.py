"""`squadbot people`: who is bound to what, per squad and project, and who has not joined."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from bot.commands.common import open_database
from bot.commands.help import command_parser
from bot.settings import Settings
from models.clock import SystemClock
from models.db import transaction

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from models.roster import Seat, Unit

ROLE_NAMES = {"enterprise": "contact", "walk_in": "walk-in"}


def register(sub: Any) -> None:
    people = command_parser(
        sub,
        "people",
        "who is bound to what, per squad and project; who has not joined yet",
        "Per squad (lead, members), per project (contacts), then the managers, the admins "
        "and the walk-in enterprises: each person's key and name, whether their Telegram "
        "account is bound (joined), and until when an open invite names them. The last line "
        "counts who has joined.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    people.add_argument(
        "--not-joined", action="store_true", help="only the people who have not joined yet"
    )
    people.set_defaults(handler=cmd_people)


def heading(unit: Unit) -> str:
    if unit.kind == "squad":
        group = "group bound" if unit.group_bound else "no group bound"
        return f"squad {unit.code}  {unit.name}  ({group})"
    if unit.kind == "project":
        return f"project {unit.code}  {unit.name}  ({unit.enterprise}; squad {unit.squad or '-'})"
    if unit.kind == "walk_in":
        return "walk-in enterprises (no project: the intake squad)"
    return unit.kind


def line(seat: Seat, kind: str, tz: ZoneInfo) -> str:
    role = ROLE_NAMES.get("walk_in" if kind == "walk_in" else seat.role, seat.role)
    if seat.joined:
        state = "joined"
    elif seat.invited_until is not None:
        until = seat.invited_until.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        state = f"not joined (invite open until {until})"
    else:
        state = "not joined (no open invite)"
    top = "top, " if seat.top else ""
    return f"  {role:<8} {seat.key:<14} {seat.name}  {top}{state}"


def cmd_people(settings: Settings, args: argparse.Namespace) -> int:
    from models.roster import roster
    from models.zone.config import read_zone

    engine = open_database(settings, create=False)
    with transaction(engine) as session:
        tz = read_zone(session).tz
        found = roster(session, SystemClock().now())
    for unit in found.units:
        seats = [s for s in unit.seats if not (args.not_joined and s.joined)]
        if not seats and (args.not_joined or unit.kind == "walk_in"):
            continue
        print(heading(unit))
        for seat in seats:
            print(line(seat, unit.kind, tz))
        if not seats:
            print("  (nobody)")
    everyone = found.people
    joined = sum(everyone.values())
    print(f"{joined} of {len(everyone)} people joined; {len(everyone) - joined} not yet")
    return 0
