"""`squadbot invite`: make a single-use, expiring invite (`--role ...`), list the open ones,
revoke one.

The rules an invite must meet are the domain's (`models.invites.check_invite`), the same the
chat's /invite goes through; here they are only worded for a terminal, naming the options.
A link needs the bot's username, settled before anything is written: an invite is either
written and printed, or not written at all."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from bot.commands.common import open_database
from bot.commands.help import command_parser
from bot.settings import Settings
from bot.startup import Failure, check_bot_api, proxy_for
from models.clock import SystemClock
from models.db import transaction

if TYPE_CHECKING:
    from models.invites import InviteRefused

ROLES = ("enterprise", "member", "lead", "manager", "admin", "group")
SETTINGS_READ = ("SQUADBOT_DATABASE_URL",)
LINK_SETTINGS = (
    "SQUADBOT_DATABASE_URL",
    "SQUADBOT_BOT_USERNAME",
    "SQUADBOT_TELEGRAM_TOKEN",
    "SQUADBOT_TELEGRAM_API_URL",
    "SQUADBOT_PROXY_URL",
)


def describe(refusal: InviteRefused) -> str:
    """A refusal in one English line, naming the command line's options."""
    from bot.i18n import t

    params = dict(refusal.params)
    if "field" in params:
        params["field"] = f"--{params['field']}"
    return t("en", refusal.key, **params)


def bot_username(settings: Settings) -> str:
    """For invite links: SQUADBOT_BOT_USERNAME, else asked from the Bot API; a Failure
    naming what to set when neither can be had (never another bot's name)."""
    if settings.bot_username:
        return settings.bot_username.removeprefix("@")
    if settings.telegram_token is None:
        raise Failure(
            "invite: the link needs the bot's username: set SQUADBOT_BOT_USERNAME (or "
            "SQUADBOT_TELEGRAM_TOKEN, to ask the Bot API for it); no invite was written"
        )
    proxy = proxy_for(settings.telegram_api_url, settings.proxy_url)
    # a Failure here names what to fix, and nothing has been written yet
    me = asyncio.run(check_bot_api(settings.telegram_token, settings.telegram_api_url, proxy))
    return me.username


def cmd_invite(settings: Settings, args: argparse.Namespace) -> int:
    from models.invites import InviteRefused, check_invite, create_invite
    from models.zone.config import read_zone

    if not args.role:
        raise Failure(
            "invite: --role is required to make an invite (or: invite list, invite revoke CODE)"
        )
    engine = open_database(settings, create=False, need_zone=True)
    where = {"squad_code": args.squad, "project_code": args.project, "person_key": args.person}
    try:
        with transaction(engine) as session:  # checked first: a bad invite asks no API
            check_invite(session, role=args.role, **where)
        # asked before the invite is made: a failure leaves no unused invite behind
        username = None if args.role == "group" else bot_username(settings)
        with transaction(engine) as session:
            zone = read_zone(session)
            invite = create_invite(
                session, SystemClock().now(), role=args.role, ttl=zone.invite_ttl, **where
            )
    except InviteRefused as refusal:
        raise Failure(f"invite: {describe(refusal)}") from None
    local = invite.expires_at.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M")
    if username is None:
        print(f"send in the squad's group, as its lead: /bind {invite.code}  (valid until {local})")
    else:
        print(f"https://t.me/{username}?start={invite.code}  (valid until {local})")
    print(invite.code)
    return 0


def _no_options(args: argparse.Namespace) -> None:
    given = [f"--{name}" for name in ("role", "squad", "project", "person") if getattr(args, name)]
    if given:
        raise Failure(f"invite: 'invite {args.invite_command}' takes no {', '.join(given)}")


def cmd_invite_list(settings: Settings, args: argparse.Namespace) -> int:
    from models.invites import open_invites
    from models.zone.config import read_zone

    _no_options(args)
    engine = open_database(settings, create=False)
    with transaction(engine) as session:
        zone = read_zone(session)
        found = open_invites(session, SystemClock().now())
    rows = [("CODE", "ROLE", "SQUAD/PROJECT", "PERSON", f"EXPIRES ({zone.tz.key})", "")]
    for item in found:
        person = item.person or ("(walk-in)" if item.role == "enterprise" else "-")
        rows.append(
            (
                item.code,
                item.role,
                item.squad or item.project or "-",
                person,
                item.expires_at.astimezone(zone.tz).strftime("%Y-%m-%d %H:%M"),
                f"no longer valid: {describe(item.problem)}" if item.problem else "",
            )
        )
    if found:
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[5]]).rstrip())
    print(f"{len(found)} open invite(s)")
    return 0


def cmd_invite_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from models.invites import revoke_invite

    _no_options(args)
    engine = open_database(settings, create=False)
    with transaction(engine) as session:
        outcome, invite = revoke_invite(session, SystemClock().now(), args.code)
    if outcome == "unknown":
        raise Failure(f"invite: no invite {args.code!r} (see `squadbot invite list`)")
    if outcome == "used" and invite is not None and invite.used_at is not None:
        raise Failure(
            f"invite: {args.code} was already used ({invite.used_at:%Y-%m-%d %H:%M} UTC); "
            "revoking it changes nothing: take the person out of the zone file to take the "
            "role away"
        )
    if outcome == "expired":
        raise Failure(f"invite: {args.code} has already expired")
    print(f"invite {args.code} revoked: the code is now unknown to the bot")
    return 0


def register(sub: Any) -> None:
    inv = command_parser(
        sub,
        "invite",
        "make a single-use, expiring invite; list or revoke open ones",
        "Make a single-use, expiring invite: a link https://t.me/<bot>?start=<code> (or, for "
        "--role group, the /bind command the squad lead sends in the group), and the bare code "
        "on the last line. An invite binds a Telegram account to the role the zone file gives "
        "a person: --person names a member or the lead of --squad, a contact of --project, a "
        "manager or an admin of the file; an enterprise invite with neither --project nor "
        "--person is a walk-in for the intake squad. `invite list` shows the open invites, "
        "`invite revoke CODE` withdraws one. Refuses a database that does not exist or holds "
        "no zone.",
        settings=LINK_SETTINGS,
    )
    inv.add_argument(
        "--role",
        choices=ROLES,
        help="who the invite is for; `group` binds a squad's Telegram group",
    )
    inv.add_argument("--project", metavar="CODE", help="the project (for --role enterprise)")
    inv.add_argument(
        "--squad", metavar="CODE", help="the squad (for --role member, lead and group)"
    )
    inv.add_argument("--person", metavar="KEY", help="the person's key in the zone file")
    inv.set_defaults(handler=cmd_invite)
    actions = inv.add_subparsers(
        dest="invite_command",
        metavar="{list,revoke}",
        title="other commands",
        help="without one, --role makes an invite; each has its own --help",
    )
    command_parser(
        actions,
        "list",
        "unused, unexpired invites, with their expiry in zone time",
        "List the invites nobody has used yet and that have not expired: code, role, squad "
        "or project, person, expiry in the zone's time, and why one would be refused now "
        "(its person has left the zone file, say).",
        settings=SETTINGS_READ,
    ).set_defaults(handler=cmd_invite_list)
    revoke = command_parser(
        actions,
        "revoke",
        "withdraw an unused invite",
        "Withdraw an unused invite: its code is unknown to the bot from then on.",
        settings=SETTINGS_READ,
    )
    revoke.add_argument("code", help="the invite's code, as `invite list` prints it")
    revoke.set_defaults(handler=cmd_invite_revoke)
