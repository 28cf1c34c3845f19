"""`squadbot org load|show|schema`: the zone."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.commands.common import open_database
from bot.commands.help import command_parser, subcommands
from bot.settings import Settings
from bot.startup import Failure
from models.db import transaction


def cmd_org_load(settings: Settings, args: argparse.Namespace) -> int:
    from models.zone.load import load_and_apply
    from models.zone.reader import ZoneFileError

    path = Path(args.file)
    if not path.is_file():
        raise Failure(f"{args.file}: {'is a folder' if path.is_dir() else 'no such file'}")
    engine = open_database(settings, create=True)
    try:
        report = load_and_apply(engine, path)
    except ZoneFileError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        raise Failure(f"{args.file}: {exc.strerror}") from None
    print("\n".join(report.lines()))
    return 0


def cmd_org_show(settings: Settings, args: argparse.Namespace) -> int:
    from models.zone.config import describe_org

    engine = open_database(settings, create=False, need_zone=True)
    with transaction(engine) as session:
        data = describe_org(session)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print("\n".join(org_text(data)))
    return 0


def _yes(flag: object, yes: str, no: str) -> str:
    return yes if flag else no


def _list(values: object) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) and values else "-"


def _width(codes: Iterable[str]) -> int:
    """A column wide enough for every code (ASCII), and two spaces."""
    return max((len(c) for c in codes), default=0) + 2


def org_text(data: dict[str, Any]) -> list[str]:
    """Everything `org show --json` holds, one section per kind, one entry per line or two."""
    zone = data["zone"]
    out = [f"zone {zone['code']}  {zone['name']}"]
    hooks = [
        f"{h['kind']} {h['url']}" + (f" (secret from {h['secret_env']})" if h["secret_env"] else "")
        for h in zone["webhooks"]
    ]
    for label, value in (
        ("time zone", zone["timezone"]),
        ("language", zone["language"]),
        ("intake squad", zone["intake_squad"]),
        ("clock", f"{zone['clock']} (working hours {_list(zone['working_hours'])})"),
        ("auto-close after", zone["auto_close_after"]),
        ("invites valid for", zone["invite_ttl"]),
        ("managers' chat", _yes(zone["managers_chat_bound"], "bound", "not bound")),
        ("alert webhooks", "; ".join(hooks) or "none"),
        ("morning digest", zone["schedule"]["digest"]),
        ("monthly ranking", zone["schedule"]["monthly_ranking"]),
        (
            "alert storms",
            f"more than {zone['alerts']['storm_threshold']} alerts of one level within"
            f" {zone['alerts']['storm_window']}: one digest",
        ),
    ):
        out.append(f"  {label + ':':<19}{value}")

    out += ["", f"projects ({len(data['projects'])})"]
    w = _width(p["code"] for p in data["projects"])
    for p in data["projects"]:
        out.append(f"  {p['code']:<{w}}{p['name']}  ({p['enterprise']})")
        out.append(
            f"  {'':<{w}}squad {p['squad'] or '-'}, ticket prefix {p['prefix']}, "
            f"contacts {_list(p['contacts'])}"
        )

    out += ["", f"squads ({len(data['squads'])})"]
    w = _width(s["code"] for s in data["squads"])
    for s in data["squads"]:
        intake = "  [intake: enterprises without a project]" if s["intake"] else ""
        out.append(f"  {s['code']:<{w}}{s['name']}{intake}")
        out.append(
            f"  {'':<{w}}lead {_list(s['lead'])}; members {_list(s['members'])}; "
            f"projects {_list(s['projects'])}; "
            f"group {_yes(s['group_bound'], 'bound', 'not bound')}"
        )

    out += ["", f"people ({len(data['people'])})"]
    w = _width(p["key"] for p in data["people"])
    for p in data["people"]:
        out.append(
            f"  {p['key']:<{w}}{p['name']}, phone {p['phone'] or '-'}, "
            f"language {p['language'] or '-'}; roles {_list(p['roles'])}; "
            f"Telegram {_yes(p['telegram_bound'], 'bound', 'not bound')}; "
            f"{_yes(p['from_file'], 'from the zone file', 'not in the zone file')}"
        )

    out += ["", f"managers ({len(data['managers'])})"]
    w = _width(m["person"] for m in data["managers"])
    for m in data["managers"]:
        top = "  [top: supervision notices]" if m["top"] else ""
        out.append(f"  {m['person']:<{w}}{m['name']}{top}")

    out += ["", f"categories ({len(data['categories'])})"]
    w = _width(c["code"] for c in data["categories"])
    for c in data["categories"]:
        out.append(f"  {c['code']:<{w}}{c['zh']} / {c['en']}")

    out += [
        "",
        f"deadlines ({len(data['deadlines'])}): response / handling / plan, warning at, "
        "supervision after, clock",
    ]
    scopes = [
        ", ".join(x for x in (d["category"], d["urgency"]) if x) or "default"
        for d in data["deadlines"]
    ]
    w = _width(scopes)
    for scope, d in zip(scopes, data["deadlines"], strict=True):
        out.append(
            f"  {scope:<{w}}{d['response']} / {d['handling']} / {d['plan']}, "
            f"warning at {d['warn_at']}, supervision after {d['supervision_after']}, "
            f"clock {d['clock']}"
        )
    return out


def cmd_org_schema(_settings: Settings, _args: argparse.Namespace) -> int:
    from models.zone.json_schema import json_schema_text

    sys.stdout.write(json_schema_text())
    return 0


def register(sub: Any) -> None:
    group = command_parser(
        sub,
        "org",
        "the zone: load it from a file, show it, print the file's schema",
        "The zone: projects, squads, people, categories and deadlines, from a YAML zone file.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    org = subcommands(group, "org_command")
    load = command_parser(
        org,
        "load",
        "load the zone from a YAML file (idempotent; a bad file is refused whole)",
        "Check the zone file whole and apply it in one transaction: a bad file changes "
        "nothing. Loading the same file again changes nothing. Creates and migrates the "
        "database if needed.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    load.add_argument("file", metavar="ZONE_FILE", help="the zone file, e.g. examples/zone.yaml")
    load.set_defaults(handler=cmd_org_load)
    show = command_parser(
        org,
        "show",
        "print the loaded zone: projects, squads, people, categories, deadlines",
        "Print the zone loaded in the database (phone numbers masked). Refuses a database "
        "that does not exist or holds no zone.",
        settings=("SQUADBOT_DATABASE_URL",),
    )
    show.add_argument(
        "--json", action="store_true", help="print it as JSON (the same facts as the text)"
    )
    show.set_defaults(handler=cmd_org_show)
    command_parser(
        org,
        "schema",
        "print the zone file's JSON Schema, for editors",
        "Print the zone file's JSON Schema (the same as docs/zone.schema.json), for editors "
        "with the YAML language server. Needs no database.",
    ).set_defaults(handler=cmd_org_schema)
