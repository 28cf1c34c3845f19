"""`squadbot org load|show|schema`: the zone."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bot.commands.common import engine_for
from bot.settings import Settings
from migrations.runner import upgrade
from models.db import transaction


def cmd_org_load(settings: Settings, args: argparse.Namespace) -> int:
    from models.zone.load import load_and_apply
    from models.zone.reader import ZoneFileError

    engine = engine_for(settings)
    upgrade(engine)
    try:
        report = load_and_apply(engine, Path(args.file))
    except ZoneFileError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


def cmd_org_show(settings: Settings, args: argparse.Namespace) -> int:
    from models.zone.config import describe_org

    engine = engine_for(settings)
    upgrade(engine)
    with transaction(engine) as session:
        data = describe_org(session)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        for project in data.get("projects", []):
            print(f"{project.get('code')}: {project.get('name')} ({project.get('enterprise')})")
    return 0


def cmd_org_schema(_settings: Settings, _args: argparse.Namespace) -> int:
    from models.zone.json_schema import json_schema_text

    sys.stdout.write(json_schema_text())
    return 0


def register(sub: Any) -> None:
    org = sub.add_parser("org").add_subparsers(dest="org_command", required=True)
    load = org.add_parser("load", help="load the zone from a YAML file")
    load.add_argument("file")
    load.set_defaults(handler=cmd_org_load)
    show = org.add_parser("show", help="print projects, squads, people and categories")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_org_show)
    org.add_parser("schema", help="print the zone file's JSON Schema, for editors").set_defaults(
        handler=cmd_org_schema
    )
